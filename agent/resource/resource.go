// Package resource holds what the agent's resource services share about a
// CIMI resource: the attributes every record carries (Meta) and how they
// are rendered and edited, references to other resources given in a
// request, and Kind, which serves the kinds whose records change only
// through the API and at once (user-defined configurations, templates,
// credentials), each change recorded as a finished Job in the transaction
// that makes it. A resource package keeps what is its own: validation, how
// a record maps to its CIMI document, and what refers to a record.
package resource

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/store"
)

// Meta is what every record shares: the common attributes of its CIMI
// document. Record types embed it.
type Meta struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
}

// NewMeta starts a record's shared attributes from a create request.
func NewMeta(id, name, description string, props map[string]string, now time.Time) Meta {
	if len(props) == 0 {
		props = nil
	}
	return Meta{ID: id, Name: strings.TrimSpace(name), Description: description, Properties: props, Created: now, Updated: now}
}

// CommonDoc renders the shared attributes of the record at path.
func CommonDoc(urls api.URLs, typeName, path string, m Meta) cimi.Common {
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

// Collection renders a list of member documents; with canAdd it offers
// the add operation.
func Collection(urls api.URLs, typeName, path, memberKey string, members []any, canAdd bool) *cimi.Collection {
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

// RefID resolves an href given in a request to the id of a resource in
// the named collection, refusing hrefs that point elsewhere.
func RefID(urls api.URLs, href, collection, what string) (string, error) {
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

// Referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func Referenced(err error) error {
	if errdefs.Is(err, errdefs.NotFound) {
		return errdefs.Invalidf("%v", err)
	}
	return err
}

// Lookup reads the record of kind that href, given in a request, names;
// an href that names no such record is a bad request.
func Lookup[T any](tx *store.Tx, urls api.URLs, href, kind, what string) (T, error) {
	var zero T
	id, err := RefID(urls, href, kind, what)
	if err != nil {
		return zero, err
	}
	rec, err := records.Get[T](tx, kind, id, what)
	if err != nil {
		return zero, Referenced(err)
	}
	return rec, nil
}

// Submit starts a Job with params, writing prepare's intent with it.
func Submit(jobs *job.Runner, rec job.Record, params any, prepare func(tx *store.Tx) error) (job.Record, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return job.Record{}, fmt.Errorf("encode job parameters: %w", err)
	}
	rec.Params = b
	return jobs.Submit(rec, prepare)
}
