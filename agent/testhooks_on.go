//go:build testhooks

package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor"
)

// testServices adds, in test builds only, a "sleep" operation whose Job
// runs for a requested time: it lets tests observe Jobs that are running
// when the agent is killed. It also puts the Job runner's transitions
// through the failpoints, when there are any.
func (a *Agent) testServices() []api.Service {
	if d, ok := a.drv.(*failpointDriver); ok {
		a.jobs.SetTransitionHook(d.fp.jobTransition)
	}
	a.jobs.Register("test.sleep", job.Kind{Cancellable: true, Run: func(ctx context.Context, x *job.Exec) error {
		var p struct{ Seconds float64 }
		if err := x.Params(&p); err != nil {
			return err
		}
		end := time.Now().Add(time.Duration(p.Seconds * float64(time.Second)))
		for time.Now().Before(end) {
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(50 * time.Millisecond):
			}
			x.Progress(int(100 - 100*time.Until(end).Seconds()/p.Seconds))
		}
		return nil
	}})
	// A resumable variant sleeps until an absolute time written at submit,
	// so that a run resumed after a restart ends when the first would have.
	a.jobs.Register("test.sleep.resumable", job.Kind{Resumable: true, Run: func(ctx context.Context, x *job.Exec) error {
		var p struct{ Until time.Time }
		if err := x.Params(&p); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Until(p.Until)):
			return nil
		}
	}})
	return []api.Service{&sleepService{jobs: a.jobs}}
}

type sleepService struct{ jobs *job.Runner }

func (s *sleepService) Collections() []string             { return nil }
func (s *sleepService) Metadata() []cimi.ResourceMetadata { return nil }
func (s *sleepService) Routes() []api.Route {
	return []api.Route{{Method: http.MethodPost, Path: "/test/sleep", Handler: s.sleep}}
}

func (s *sleepService) sleep(rq *api.Request) (api.Reply, error) {
	var body struct {
		Seconds   float64 `json:"seconds"`
		Resumable bool    `json:"resumable"`
	}
	raw, err := rq.Body()
	if err != nil {
		return api.Reply{}, err
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Seconds <= 0 {
		return api.Reply{}, errdefs.Invalidf("body must be {\"seconds\": N, \"resumable\": BOOL} with N > 0")
	}
	kind := "test.sleep"
	params, _ := json.Marshal(map[string]float64{"Seconds": body.Seconds})
	if body.Resumable {
		kind = "test.sleep.resumable"
		params, _ = json.Marshal(map[string]time.Time{"Until": time.Now().Add(time.Duration(body.Seconds * float64(time.Second)))})
	}
	rec, err := s.jobs.Submit(job.Record{Kind: kind, Action: cimi.ActionURI("sleep"), Name: "sleep", Target: "test/sleep", Params: params}, nil)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: rec.ID, Location: "jobs/" + rec.ID}, nil
}

// wrapDriverForTests puts the driver behind the failpoints the environment
// arms (failpoint.go). A bad failpoint is a broken test: the agent says so
// and exits.
func wrapDriverForTests(drv hypervisor.Driver, log *slog.Logger) hypervisor.Driver {
	fp, err := newFailpoints(log)
	if err != nil {
		log.Error("failpoints", "err", err)
		os.Exit(2)
	}
	if fp == nil {
		return drv
	}
	return &failpointDriver{Driver: drv, fp: fp}
}
