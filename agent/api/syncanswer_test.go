package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/job"
)

// thingService makes "things" with a Job each: the Job names the thing
// "made", fails when asked to, or waits for release.
type thingService struct {
	jobs    *job.Runner
	mu      sync.Mutex
	names   map[string]string
	release chan struct{}
}

func (t *thingService) Routes() []Route {
	doc := func(rq *Request, id, name string) *cimi.MachineImage {
		return &cimi.MachineImage{Common: cimi.Common{ResourceURI: cimi.TypeURI("MachineImage"), ID: rq.URLs.Abs("things/" + id), Name: name}}
	}
	return []Route{
		{Method: http.MethodPost, Path: "/things", Handler: func(rq *Request) (Reply, error) {
			id := job.NewID()
			t.mu.Lock()
			t.names[id] = "pending"
			t.mu.Unlock()
			j, err := t.jobs.Submit(job.Record{Kind: "make", Target: "things/" + id, Locks: []string{"things/" + id},
				Params: json.RawMessage(`"` + rq.URL.Query().Get("how") + `:` + id + `"`)}, nil)
			if err != nil {
				return Reply{}, err
			}
			return Reply{Status: http.StatusAccepted, Body: doc(rq, id, "pending"), Location: "things/" + id, JobID: j.ID}, nil
		}},
		{Method: http.MethodGet, Path: "/things/{id}", Handler: func(rq *Request) (Reply, error) {
			t.mu.Lock()
			defer t.mu.Unlock()
			return Reply{Body: doc(rq, rq.Vars["id"], t.names[rq.Vars["id"]])}, nil
		}},
		// poke answers with the Job it is given, as a stop of a Job does:
		// a Job the request acts on, not one it started.
		{Method: http.MethodPost, Path: "/things/poke", Handler: func(rq *Request) (Reply, error) {
			return Reply{Status: http.StatusAccepted, JobID: rq.URL.Query().Get("job"), ActsOnJob: true}, nil
		}},
		{Method: http.MethodDelete, Path: "/things/{id}", Handler: func(rq *Request) (Reply, error) {
			j, err := t.jobs.Submit(job.Record{Kind: "make", Target: "things/" + rq.Vars["id"],
				Params: json.RawMessage(`"` + rq.URL.Query().Get("how") + `:"`)}, nil)
			if err != nil {
				return Reply{}, err
			}
			return Reply{Status: http.StatusAccepted, JobID: j.ID}, nil
		}},
	}
}

func (t *thingService) run(ctx context.Context, x *job.Exec) error {
	var p string
	if err := x.Params(&p); err != nil {
		return err
	}
	how, id, _ := strings.Cut(p, ":")
	switch how {
	case "fail":
		return errors.New("no room for things")
	case "slow":
		select {
		case <-t.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.mu.Lock()
	if id != "" {
		t.names[id] = "made"
	}
	t.mu.Unlock()
	return nil
}

func TestSynchronousAnswer(t *testing.T) {
	things := &thingService{names: map[string]string{}, release: make(chan struct{})}
	runner, log := startRunner(t, map[string]job.Kind{"make": {Resumable: true, Run: things.run}}, func() { close(things.release) })
	things.jobs = runner
	s := NewServer(log, things.Routes())
	s.AnswerWhenDone(runner)

	// Without the preference, a change is answered at once with 202.
	r := serve(s, "POST", "/cimi/things", "{}")
	if r.Code != http.StatusAccepted || r.Header().Get("Preference-Applied") != "" || !strings.Contains(r.Body.String(), "pending") {
		t.Fatalf("POST without Prefer: %d %v %s", r.Code, r.Header(), r.Body)
	}

	// A create that succeeds in time: 201, the resource as it is now.
	r = serve(s, "POST", "/cimi/things", "{}", "Prefer", "wait=10")
	loc, jobURI := r.Header().Get("Location"), r.Header().Get("CIMI-Job-URI")
	if r.Code != http.StatusCreated || loc == "" || jobURI == "" || r.Header().Get("Preference-Applied") != "wait=10" ||
		r.Header().Get("ETag") == "" || r.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("POST with Prefer: wait=10: %d %v %s", r.Code, r.Header(), r.Body)
	}
	var made map[string]any
	if err := json.Unmarshal(r.Body.Bytes(), &made); err != nil || made["name"] != "made" || made["id"] != loc {
		t.Fatalf("201 body: %s (%v)", r.Body, err)
	}
	if j, _ := runner.Get(jobURI[strings.LastIndex(jobURI, "/")+1:]); j.State != job.Success {
		t.Fatalf("the Job of a 201 is %s", j.State)
	}
	// The query options that shape a representation shape the 201's.
	r = serve(s, "POST", "/cimi/things?$select=description", "{}", "Prefer", "wait=10")
	var selected map[string]any
	if err := json.Unmarshal(r.Body.Bytes(), &selected); r.Code != http.StatusCreated || err != nil || selected["id"] == nil || selected["name"] != nil {
		t.Fatalf("POST ?$select=description with Prefer: %d %s", r.Code, r.Body)
	}
	// A request that acts on a Job it did not start is never made
	// synchronous by that Job's end.
	done := jobURI[strings.LastIndex(jobURI, "/")+1:]
	if r := serve(s, "POST", "/cimi/things/poke?job="+done, "{}", "Prefer", "wait=10"); r.Code != http.StatusAccepted {
		t.Fatalf("a request acting on a succeeded Job: %d %v", r.Code, r.Header())
	}
	// In XML too.
	r = serve(s, "POST", "/cimi/things?$format=xml", "{}", "Prefer", "wait=10")
	if r.Code != http.StatusCreated || !strings.HasPrefix(r.Header().Get("Content-Type"), "application/xml") || !strings.Contains(r.Body.String(), "<name>made</name>") {
		t.Fatalf("POST ?$format=xml with Prefer: %d %v %s", r.Code, r.Header(), r.Body)
	}

	// A change without a resource to show: 200 and no body.
	r = serve(s, "DELETE", "/cimi/things/x", "", "Prefer", "wait=10")
	if r.Code != http.StatusOK || r.Body.Len() != 0 || r.Header().Get("CIMI-Job-URI") == "" {
		t.Fatalf("DELETE with Prefer: %d %v %s", r.Code, r.Header(), r.Body)
	}

	// A Job that fails gets the 202; the Job says why.
	r = serve(s, "POST", "/cimi/things?how=fail", "{}", "Prefer", "wait=10")
	if r.Code != http.StatusAccepted || r.Header().Get("Preference-Applied") != "wait=10" {
		t.Fatalf("failing create with Prefer: %d %v %s", r.Code, r.Header(), r.Body)
	}
	jobURI = r.Header().Get("CIMI-Job-URI")
	if j, _ := runner.Get(jobURI[strings.LastIndex(jobURI, "/")+1:]); j.State != job.Failed {
		t.Fatalf("the Job of the failed create is %s", j.State)
	}

	// A Job that outlasts the wait gets the 202 once the wait is over.
	start := time.Now()
	r = serve(s, "POST", "/cimi/things?how=slow", "{}", "Prefer", "wait=1")
	if r.Code != http.StatusAccepted || time.Since(start) < time.Second || !strings.Contains(r.Body.String(), "pending") {
		t.Fatalf("slow create with Prefer: wait=1: %d after %v: %s", r.Code, time.Since(start), r.Body)
	}
}
