package resource

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

// writable are the attributes a PUT may change on every resource.
var writable = []string{"name", "description", "properties"}

// Selected reads the attributes $select names on a PUT. names is nil when
// it names none; present tells whether the request has a $select at all.
func Selected(rq *api.Request) (names []string, present bool) {
	v, present := rq.URL.Query()["$select"]
	if !present {
		return nil, false
	}
	for _, part := range strings.Split(strings.Join(v, ","), ",") {
		if p := strings.TrimSpace(part); p != "" {
			names = append(names, p)
		}
	}
	return names, true
}

// UpdateSelection reads and checks the $select of a PUT, before anything
// is read or changed: nil asks for a full update; any $select, even one
// naming nothing, a partial one of the attributes it names. Names other
// than the common writable attributes and extra are refused.
func UpdateSelection(rq *api.Request, extra ...string) ([]string, error) {
	names, present := Selected(rq)
	if !present {
		return nil, nil
	}
	if err := CheckSelected(names, extra...); err != nil {
		return nil, err
	}
	return append([]string{}, names...), nil
}

// CheckSelected refuses $select names other than the common writable
// attributes and extra (those writable on one type only).
func CheckSelected(selected []string, extra ...string) error {
	allowed := append(slices.Clone(writable), extra...)
	for _, a := range selected {
		if !slices.Contains(allowed, a) {
			return errdefs.Invalidf("$select names %q, which cannot be updated (writable: %s)", a, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// ApplyUpdate applies a PUT body's writable common attributes to m. With
// selected nil every one changes; otherwise only those it names, and the
// body carrying others is an error, as the standard says for partial
// updates. Names outside the common ones are left to the caller. A name
// is kept without the space around it, as on create.
func ApplyUpdate(m *Meta, body cimi.Common, selected []string, now time.Time) error {
	body.Name = strings.TrimSpace(body.Name)
	if selected == nil {
		m.Name, m.Description, m.Properties = body.Name, body.Description, body.Properties
	} else {
		if body.Name != "" && !slices.Contains(selected, "name") || body.Description != "" && !slices.Contains(selected, "description") ||
			len(body.Properties) > 0 && !slices.Contains(selected, "properties") {
			return errdefs.Invalidf("the body carries attributes that $select does not name")
		}
		if slices.Contains(selected, "name") {
			m.Name = body.Name
		}
		if slices.Contains(selected, "description") {
			m.Description = body.Description
		}
		if slices.Contains(selected, "properties") {
			m.Properties = body.Properties
		}
	}
	if len(m.Properties) == 0 {
		m.Properties = nil
	}
	m.Updated = now
	return nil
}

// Edited records a PUT of the resource at path whose change apply makes at
// once, as a finished Job, and answers 200.
func Edited(jobs *job.Runner, path string, apply func(tx *store.Tx) error) (api.Reply, error) {
	rec, err := jobs.Done(job.Record{Kind: "edit", Action: cimi.RelEdit, Name: "edit " + path, Target: path}, apply)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: rec.ID, Location: path}, nil
}
