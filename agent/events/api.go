package events

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
)

// Service serves EventLogs, their Events and the live stream.
type Service struct {
	Log *Log
}

// LogPath is the path of a resource's EventLog, e.g. "machines/<id>" →
// "eventLogs/machines.<id>".
func LogPath(resource string) string {
	return "eventLogs/" + strings.ReplaceAll(resource, "/", ".")
}

func resourceOfLog(id string) string { return strings.ReplaceAll(id, ".", "/") }

// Collections implements api.Service.
func (s *Service) Collections() []string { return []string{"eventLogs"} }

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/eventLogs", Handler: s.listLogs},
		{Method: http.MethodGet, Path: "/eventLogs/{log}", Handler: s.getLog},
		{Method: http.MethodGet, Path: "/eventLogs/{log}/events", Handler: s.listEvents},
		{Method: http.MethodGet, Path: "/eventLogs/{log}/events/{event}", Handler: s.getEvent},
		{Method: http.MethodGet, Path: "/events/stream", Stream: http.HandlerFunc(s.stream)},
	}
}

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata {
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "EventLog"}, TypeURI: cimi.TypeURI("EventLog"),
			Attributes: []cimi.AttributeMeta{{Name: "targetResource", Required: true}, {Name: "events", Required: true}, {Name: "summary"}},
			Capabilities: []cimi.Capability{{Name: "Linked", URI: cimi.CapabilityURI("EventLog", "Linked"), Value: "false",
				Description: fmt.Sprintf("a resource's log outlives it; events are kept %d hours", int(s.Log.Retention().Hours()))}}},
		{Common: cimi.Common{Name: "Event"}, TypeURI: cimi.TypeURI("Event"),
			Attributes: []cimi.AttributeMeta{{Name: "timestamp", Required: true}, {Name: "type", Required: true}, {Name: "content"}, {Name: "outcome"}, {Name: "severity"}}},
	}
}

func (s *Service) logDoc(urls api.URLs, resource string, evs []Event) *cimi.EventLog {
	path := LogPath(resource)
	d := &cimi.EventLog{
		Common:         cimi.Common{ResourceURI: cimi.TypeURI("EventLog"), ID: urls.Abs(path), Name: resource},
		TargetResource: cimi.NewRef(urls.Abs(resource)),
		Events:         cimi.NewRef(urls.Abs(path + "/events")),
		Persistence:    "weekly",
		Summary:        &cimi.EventSummary{},
	}
	for _, e := range evs {
		switch e.Severity {
		case SeverityMedium:
			d.Summary.Medium++
		case SeverityHigh:
			d.Summary.High++
		case SeverityCritical:
			d.Summary.Critical++
		default:
			d.Summary.Low++
		}
		if d.Created == nil || e.Time.Before(*d.Created) {
			d.Created = cimi.TimePtr(e.Time)
		}
		d.Updated = cimi.TimePtr(e.Time)
		if e.ResName != "" {
			d.Description = "events of " + e.ResType + " " + e.ResName
		}
	}
	return d
}

func eventDoc(urls api.URLs, e Event) *cimi.Event {
	return &cimi.Event{
		Common:    cimi.Common{ResourceURI: cimi.TypeURI("Event"), ID: urls.Abs(LogPath(e.Resource) + "/events/" + e.ID), Created: cimi.TimePtr(e.Time), Updated: cimi.TimePtr(e.Time)},
		Timestamp: cimi.TimePtr(e.Time),
		Type:      cimi.Namespace + "/event/" + e.Type,
		Content: &cimi.EventContent{ResName: e.ResName, Resource: cimi.NewRef(urls.Abs(e.Resource)), ResType: e.ResType,
			State: e.State, Previous: e.Previous, Change: e.Change, Detail: e.Detail},
		Outcome:  e.Outcome,
		Severity: e.Severity,
	}
}

func (s *Service) listLogs(rq *api.Request) (api.Reply, error) {
	all, err := s.Log.List("")
	if err != nil {
		return api.Reply{}, err
	}
	byResource := map[string][]Event{}
	var order []string
	for _, e := range all {
		if _, seen := byResource[e.Resource]; !seen {
			order = append(order, e.Resource)
		}
		byResource[e.Resource] = append(byResource[e.Resource], e)
	}
	coll := &cimi.Collection{ResourceURI: cimi.TypeURI("EventLogCollection"), ID: rq.URLs.Abs("eventLogs"), Count: len(order), MemberKey: "eventLogs"}
	for _, r := range order {
		coll.Members = append(coll.Members, s.logDoc(rq.URLs, r, byResource[r]))
	}
	return api.Reply{Body: coll}, nil
}

func (s *Service) getLog(rq *api.Request) (api.Reply, error) {
	resource := resourceOfLog(rq.Vars["log"])
	evs, err := s.Log.List(resource)
	if err != nil {
		return api.Reply{}, err
	}
	if len(evs) == 0 {
		return api.Reply{}, errdefs.NotFoundf("no EventLog %s: no events recorded for %s", rq.Vars["log"], resource)
	}
	return api.Reply{Body: s.logDoc(rq.URLs, resource, evs)}, nil
}

func (s *Service) listEvents(rq *api.Request) (api.Reply, error) {
	resource := resourceOfLog(rq.Vars["log"])
	evs, err := s.Log.List(resource)
	if err != nil {
		return api.Reply{}, err
	}
	coll := &cimi.Collection{ResourceURI: cimi.TypeURI("EventCollection"), ID: rq.URLs.Abs(LogPath(resource) + "/events"), Count: len(evs), MemberKey: "events"}
	for _, e := range evs {
		coll.Members = append(coll.Members, eventDoc(rq.URLs, e))
	}
	return api.Reply{Body: coll}, nil
}

func (s *Service) getEvent(rq *api.Request) (api.Reply, error) {
	e, err := s.Log.Get(rq.Vars["event"])
	if err != nil || LogPath(e.Resource) != "eventLogs/"+rq.Vars["log"] {
		return api.Reply{}, errdefs.NotFoundf("no event %s in EventLog %s", rq.Vars["event"], rq.Vars["log"])
	}
	return api.Reply{Body: eventDoc(rq.URLs, e)}, nil
}

// stream serves new events as Server-Sent Events, each a JSON CIMI Event,
// optionally only those of resources under ?resource=PATH.
func (s *Service) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	urls := api.URLsFor(r)
	prefix := ""
	if res := r.URL.Query().Get("resource"); res != "" {
		if p, ok := urls.Path(res); ok {
			prefix = p
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("CIMI-Specification-Version", cimi.SpecVersion)
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": cimid event stream\n\n")
	flusher.Flush()
	ch := s.Log.Subscribe(r.Context(), prefix)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return
			}
			b, err := json.Marshal(eventDoc(urls, e))
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
			flusher.Flush()
		case <-keepalive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}
