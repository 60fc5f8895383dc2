package storage

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

// commonDoc renders the shared attributes of a record.
func commonDoc(urls api.URLs, typeName, path string, m meta) cimi.Common {
	return cimi.Common{
		ResourceURI: cimi.TypeURI(typeName),
		ID:          urls.Abs(path),
		Name:        m.Name,
		Description: m.Description,
		Created:     cimi.TimePtr(m.Created),
		Updated:     cimi.TimePtr(m.Updated),
		Properties:  cimi.Properties(m.Properties),
	}
}

// newMeta starts a record's shared attributes from a create request.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	if len(props) == 0 {
		props = nil
	}
	return meta{ID: id, Name: strings.TrimSpace(name), Description: description, Properties: props, Created: now, Updated: now}
}

// writable are the attributes a PUT may change on every resource of this
// package; extra names attributes writable on one type only.
var writable = []string{"name", "description", "properties"}

// selectedAttrs parses $select on a PUT; nil means a full update. Names
// outside the common writable ones and extra are refused.
func selectedAttrs(rq *api.Request, extra ...string) ([]string, error) {
	v, ok := rq.URL.Query()["$select"]
	if !ok {
		return nil, nil
	}
	allowed := append(append([]string(nil), writable...), extra...)
	out := []string{}
	for _, part := range strings.Split(strings.Join(v, ","), ",") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		if !contains(allowed, p) {
			return nil, errdefs.Invalidf("$select names %q, which cannot be updated (writable: %s)", p, strings.Join(allowed, ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// applyUpdate applies a PUT body's writable common attributes to m. With
// selected (from $select) only those attributes change; others in the body
// are an error, as the standard says for partial updates.
func applyUpdate(m *meta, body cimi.Common, selected []string, now time.Time) error {
	if selected == nil {
		m.Name, m.Description, m.Properties = body.Name, body.Description, body.Properties
	} else {
		if body.Name != "" && !contains(selected, "name") || body.Description != "" && !contains(selected, "description") ||
			len(body.Properties) > 0 && !contains(selected, "properties") {
			return errdefs.Invalidf("the body carries attributes that $select does not name")
		}
		if contains(selected, "name") {
			m.Name = body.Name
		}
		if contains(selected, "description") {
			m.Description = body.Description
		}
		if contains(selected, "properties") {
			m.Properties = body.Properties
		}
	}
	if len(m.Properties) == 0 {
		m.Properties = nil
	}
	m.Updated = now
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// syncUpdate performs a PUT whose change is immediate, recording a finished
// Job for it.
func (s *Service) syncUpdate(path string, apply func(tx *store.Tx) error) (api.Reply, error) {
	rec, err := s.jobs.Done(job.Record{Kind: "edit", Action: cimi.RelEdit, Name: "edit " + path, Target: path}, apply)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: rec.ID, Location: path}, nil
}

// collection renders a list of member documents.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, canAdd bool) *cimi.Collection {
	c := &cimi.Collection{
		ResourceURI: cimi.TypeURI(typeName + "Collection"),
		ID:          urls.Abs(path),
		Count:       len(members),
		MemberKey:   memberKey,
		Members:     members,
	}
	if canAdd {
		c.Operations = []cimi.Operation{{Rel: cimi.RelAdd, Href: urls.Abs(path)}}
	}
	return c
}

// refID resolves an href given in a request to the id of a resource in the
// named collection, refusing hrefs that point elsewhere.
func refID(urls api.URLs, href, collection, what string) (string, error) {
	path, ok := urls.Path(href)
	if !ok {
		return "", errdefs.Invalidf("%s reference %q does not point into this provider", what, href)
	}
	id, found := strings.CutPrefix(path, collection+"/")
	if !found || id == "" || strings.Contains(id, "/") {
		return "", errdefs.Invalidf("%s reference %q is not a %s href (expected %s)", what, href, what, urls.Abs(collection+"/ID"))
	}
	return id, nil
}

// referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func referenced(err error) error {
	if errdefs.Is(err, errdefs.NotFound) {
		return errdefs.Invalidf("%v", err)
	}
	return err
}

// submit starts a Job with params, writing prepare's intent with it.
func (s *Service) submit(rec job.Record, params any, prepare func(tx *store.Tx) error) (job.Record, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return job.Record{}, fmt.Errorf("encode job parameters: %w", err)
	}
	rec.Params = b
	return s.jobs.Submit(rec, prepare)
}

// boolPtr returns a pointer to b, for optional boolean attributes.
func boolPtr(b bool) *bool { return &b }
