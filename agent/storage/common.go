package storage

import (
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/agent/resource"
	"cimid/store"
)

// commonDoc renders the shared attributes of a record.
func commonDoc(urls api.URLs, typeName, path string, m meta) cimi.Common {
	return resource.CommonDoc(urls, typeName, path, m)
}

// newMeta starts a record's shared attributes from a create request.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	return resource.NewMeta(id, name, description, props, now)
}

// backend is how this package's kinds are served.
func (s *Service) backend() resource.Backend {
	return resource.Backend{DB: s.db, Jobs: s.jobs, Now: func() time.Time { return s.now() }}
}

// syncUpdate performs a PUT whose change is immediate, recording a finished
// Job for it.
func (s *Service) syncUpdate(path string, apply func(tx *store.Tx) error) (api.Reply, error) {
	return resource.Edited(s.jobs, path, apply)
}

// collection renders a list of member documents.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, canAdd bool) *cimi.Collection {
	return resource.Collection(urls, typeName, path, memberKey, members, canAdd)
}

// refID resolves an href given in a request to the id of a resource in the
// named collection, refusing hrefs that point elsewhere.
func refID(urls api.URLs, href, collection, what string) (string, error) {
	return resource.RefID(urls, href, collection, what)
}

// referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func referenced(err error) error { return resource.Referenced(err) }

// submit starts a Job with params, writing prepare's intent with it.
func (s *Service) submit(rec job.Record, params any, prepare func(tx *store.Tx) error) (job.Record, error) {
	return resource.Submit(s.jobs, rec, params, prepare)
}

// boolPtr returns a pointer to b, for optional boolean attributes.
func boolPtr(b bool) *bool { return &b }
