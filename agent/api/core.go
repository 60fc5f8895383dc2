package api

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
)

// Service is a group of resources the agent serves.
type Service interface {
	// Routes are the service's endpoints below /cimi.
	Routes() []Route
	// Collections are the CloudEntryPoint keys (and paths) it implements.
	Collections() []string
	// Metadata describes its resource types.
	Metadata() []cimi.ResourceMetadata
}

// Core serves the CloudEntryPoint, the Job collection and ResourceMetadata.
type Core struct {
	Name     string // shown as the entry point's name
	Created  time.Time
	Jobs     *job.Runner
	Services []Service
	// HostCapabilities are added to the CloudEntryPoint's ResourceMetadata.
	HostCapabilities []cimi.Capability
}

// Routes implements Service.
func (c *Core) Routes() []Route {
	return []Route{
		{Method: http.MethodGet, Path: "/cloudEntryPoint", Handler: c.getEntryPoint},
		{Method: http.MethodGet, Path: "/", Handler: c.getEntryPoint},
		{Method: http.MethodGet, Path: "/jobs", Handler: c.listJobs},
		{Method: http.MethodGet, Path: "/jobs/{id}", Handler: c.getJob},
		{Method: http.MethodDelete, Path: "/jobs/{id}", Handler: c.deleteJob},
		{Method: http.MethodPost, Path: "/jobs/{id}/stop", Handler: c.stopJob},
		{Method: http.MethodGet, Path: "/resourceMetadata", Handler: c.listMetadata},
		{Method: http.MethodGet, Path: "/resourceMetadata/{name}", Handler: c.getMetadata},
	}
}

// Collections implements Service.
func (c *Core) Collections() []string { return []string{"jobs", "resourceMetadata"} }

// Metadata implements Service.
func (c *Core) Metadata() []cimi.ResourceMetadata {
	query := []cimi.Capability{
		{Name: "FormatParameter", URI: cimi.CapabilityURI("CloudEntryPoint", "FormatParameter"), Value: "true"},
	}
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "CloudEntryPoint"}, TypeURI: cimi.TypeURI("CloudEntryPoint"),
			Attributes:   requiredAttrs("baseURI"),
			Capabilities: append(query, c.HostCapabilities...)},
		{Common: cimi.Common{Name: "Job"}, TypeURI: cimi.TypeURI("Job"),
			Attributes: requiredAttrs("state", "targetResource", "action", "progress"),
			Capabilities: []cimi.Capability{{Name: "JobRetention", URI: cimi.CapabilityURI("Job", "JobRetention"),
				Value: strconv.Itoa(int(c.Jobs.Retention() / time.Minute)), Description: "minutes a finished Job is kept"},
				{Name: "WaitPreference", URI: cimi.ExtNamespace + "/capability/Job/WaitPreference",
					Value:       strconv.Itoa(int(MaxJobWait / time.Second)),
					Description: "with the header Prefer: wait=N (RFC 7240), a GET of a Job answers once the Job has ended, or after N seconds (at most this many); a change whose Job succeeds within N seconds is answered 201 Created with the new resource, or 200 OK, instead of 202 Accepted"}},
			Actions: []cimi.ActionMeta{{Name: "stop", URI: cimi.ActionURI("stop"), Method: "POST",
				Description: "cancel a queued or running Job", InputMessage: "application/json"}}},
		{Common: cimi.Common{Name: "ResourceMetadata"}, TypeURI: cimi.TypeURI("ResourceMetadata"),
			Attributes: requiredAttrs("typeURI", "name")},
	}
}

func requiredAttrs(names ...string) []cimi.AttributeMeta {
	out := make([]cimi.AttributeMeta, len(names))
	for i, n := range names {
		out[i] = cimi.AttributeMeta{Name: n, Required: true}
	}
	return out
}

func (c *Core) getEntryPoint(rq *Request) (Reply, error) {
	cep := &cimi.CloudEntryPoint{
		Common: cimi.Common{
			ResourceURI: cimi.TypeURI("CloudEntryPoint"),
			ID:          rq.URLs.Abs("cloudEntryPoint"),
			Name:        c.Name,
			Description: "CIMI endpoint of one KVM host",
			Created:     cimi.TimePtr(c.Created),
			Updated:     cimi.TimePtr(c.Created),
		},
		BaseURI: rq.URLs.Base(),
	}
	v := reflect.ValueOf(cep).Elem()
	for _, key := range c.allCollections() {
		if f := fieldByJSONName(v, key); f.IsValid() {
			f.Set(reflect.ValueOf(cimi.NewRef(rq.URLs.Abs(key))))
		}
	}
	return Reply{Body: cep}, nil
}

func (c *Core) allCollections() []string {
	keys := c.Collections()
	for _, s := range c.Services {
		keys = append(keys, s.Collections()...)
	}
	return keys
}

func fieldByJSONName(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if strings.Split(t.Field(i).Tag.Get("json"), ",")[0] == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

func (c *Core) allMetadata() []cimi.ResourceMetadata {
	list := c.Metadata()
	for _, s := range c.Services {
		list = append(list, s.Metadata()...)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

func (c *Core) metadataDoc(rq *Request, m cimi.ResourceMetadata) *cimi.ResourceMetadata {
	m.ResourceURI = cimi.TypeURI("ResourceMetadata")
	m.ID = rq.URLs.Abs("resourceMetadata/" + m.Name)
	return &m
}

func (c *Core) listMetadata(rq *Request) (Reply, error) {
	list := c.allMetadata()
	coll := &cimi.Collection{
		ResourceURI: cimi.TypeURI("ResourceMetadataCollection"),
		ID:          rq.URLs.Abs("resourceMetadata"),
		Count:       len(list),
		MemberKey:   "resourceMetadata",
	}
	for _, m := range list {
		coll.Members = append(coll.Members, c.metadataDoc(rq, m))
	}
	return Reply{Body: coll}, nil
}

func (c *Core) getMetadata(rq *Request) (Reply, error) {
	for _, m := range c.allMetadata() {
		if m.Name == rq.Vars["name"] {
			return Reply{Body: c.metadataDoc(rq, m)}, nil
		}
	}
	return Reply{}, errdefs.NotFoundf("no ResourceMetadata for %q", rq.Vars["name"])
}

// JobDoc renders a stored Job.
func JobDoc(urls URLs, runner *job.Runner, rec job.Record) *cimi.Job {
	d := &cimi.Job{
		Common: cimi.Common{
			ResourceURI: cimi.TypeURI("Job"),
			ID:          urls.Abs("jobs/" + rec.ID),
			Name:        rec.Name,
			Created:     cimi.TimePtr(rec.Created),
			Updated:     cimi.TimePtr(rec.Updated),
		},
		State:              rec.State,
		TargetResource:     cimi.NewRef(urls.Abs(rec.Target)),
		Action:             rec.Action,
		ReturnCode:         rec.ReturnCode,
		Progress:           rec.Progress,
		StatusMessage:      rec.StatusMessage,
		TimeOfStatusChange: cimi.TimePtr(rec.TimeOfStatusChange),
	}
	for _, p := range rec.Affected {
		d.AffectedResources = append(d.AffectedResources, cimi.Ref{Href: urls.Abs(p)})
	}
	if runner.Cancellable(rec) {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("stop"), Href: d.ID + "/stop"})
	}
	if rec.Final() {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

func (c *Core) listJobs(rq *Request) (Reply, error) {
	recs, err := c.Jobs.List()
	if err != nil {
		return Reply{}, err
	}
	coll := &cimi.Collection{
		ResourceURI: cimi.TypeURI("JobCollection"),
		ID:          rq.URLs.Abs("jobs"),
		Count:       len(recs),
		MemberKey:   "jobs",
	}
	for _, rec := range recs {
		coll.Members = append(coll.Members, JobDoc(rq.URLs, c.Jobs, rec))
	}
	return Reply{Body: coll}, nil
}

// MaxJobWait bounds the wait a GET of a Job may ask for.
const MaxJobWait = 60 * time.Second

// getJob answers with the Job; with Prefer: wait=N, once the Job has ended
// or N seconds have passed, whichever comes first.
func (c *Core) getJob(rq *Request) (Reply, error) {
	wait, ok := preferredWait(rq.Header.Values("Prefer"))
	if !ok {
		rec, err := c.Jobs.Get(rq.Vars["id"])
		if err != nil {
			return Reply{}, err
		}
		return Reply{Body: JobDoc(rq.URLs, c.Jobs, rec)}, nil
	}
	wait = min(wait, MaxJobWait)
	ctx, cancel := context.WithTimeout(rq.Context(), wait)
	defer cancel()
	rec, err := c.Jobs.Wait(ctx, rq.Vars["id"])
	if err != nil {
		return Reply{}, err
	}
	return Reply{Body: JobDoc(rq.URLs, c.Jobs, rec), PreferenceApplied: "wait=" + strconv.Itoa(int(wait/time.Second))}, nil
}

// preferredWait reads the wait preference of RFC 7240 (Prefer: wait=N,
// N in seconds) from the Prefer header values; preferences it does not
// understand are ignored, as the RFC asks.
func preferredWait(values []string) (time.Duration, bool) {
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			token, _, _ := strings.Cut(pref, ";")
			name, val, _ := strings.Cut(token, "=")
			if !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n < 0 {
				continue
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

func (c *Core) stopJob(rq *Request) (Reply, error) {
	if _, err := rq.DecodeAction("stop"); err != nil && !emptyBody(err) {
		return Reply{}, err
	}
	rec, err := c.Jobs.Stop(rq.Vars["id"])
	if err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusAccepted, JobID: rec.ID, Location: "jobs/" + rec.ID, ActsOnJob: true}, nil
}

func (c *Core) deleteJob(rq *Request) (Reply, error) {
	if err := c.Jobs.Delete(rq.Vars["id"]); err != nil {
		return Reply{}, err
	}
	return Reply{Status: http.StatusOK}, nil
}

// emptyBody tells whether a decode failed only because there was no body,
// which actions without parameters tolerate.
func emptyBody(err error) bool {
	return errors.Is(err, cimi.ErrEmptyBody)
}
