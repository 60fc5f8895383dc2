package resource

import (
	"net/http"
	"reflect"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/store"
)

// Backend is what the kinds of one resource package share: the store, the
// Job runner and the clock.
type Backend struct {
	DB   *store.DB
	Jobs *job.Runner
	Now  func() time.Time
}

// Kind serves a store kind whose records change only through the API and
// at once: it lists and reads them from the store, and records every
// create, update and delete as a finished Job written in the transaction
// that makes the change. T is the record type, D its CIMI document (a
// cimi type that embeds cimi.Common; a PUT body is one).
type Kind[T, D any] struct {
	Backend
	Kind      string // the store kind, also the collection's path
	Type      string // the resource type name, e.g. "MachineConfiguration"
	MemberKey string // the collection's member attribute
	Doc       func(api.URLs, T) *D
	Meta      func(*T) *Meta
	// InUse, when set, refuses a delete (with a Conflict) while something
	// refers to the record.
	InUse func(tx *store.Tx, rec T) error
}

// Routes are the kind's collection and member endpoints: create answers
// the POST and remove the DELETE (k.Delete where the delete is made at
// once).
func (k Kind[T, D]) Routes(create, remove api.HandlerFunc) []api.Route {
	p := "/" + k.Kind
	return []api.Route{
		{Method: http.MethodGet, Path: p, Handler: k.List},
		{Method: http.MethodPost, Path: p, Handler: create},
		{Method: http.MethodGet, Path: p + "/{id}", Handler: k.Get},
		{Method: http.MethodPut, Path: p + "/{id}", Handler: k.Update},
		{Method: http.MethodDelete, Path: p + "/{id}", Handler: remove},
	}
}

// Seed writes the records the provider defines that the store does not
// hold yet, created now.
func (k Kind[T, D]) Seed(recs []T) error {
	now := k.Now()
	return k.DB.Update(func(tx *store.Tx) error {
		for _, rec := range recs {
			m := k.Meta(&rec)
			if _, err := tx.Get(k.Kind, m.ID); err == nil {
				continue
			}
			m.Created, m.Updated = now, now
			if err := records.Put(tx, k.Kind, m.ID, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// List answers the collection.
func (k Kind[T, D]) List(rq *api.Request) (api.Reply, error) {
	recs, err := records.ViewAll[T](k.DB, k.Kind)
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, r := range recs {
		members[i] = k.Doc(rq.URLs, r)
	}
	return api.Reply{Body: Collection(rq.URLs, k.Type, k.Kind, k.MemberKey, members, true)}, nil
}

// Get answers one record.
func (k Kind[T, D]) Get(rq *api.Request) (api.Reply, error) {
	rec, err := records.View[T](k.DB, k.Kind, rq.Vars["id"], k.Type)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: k.Doc(rq.URLs, rec)}, nil
}

// Create makes a record at once: build makes it, with the id chosen for
// it, in the transaction that writes it (so that what it refers to is
// checked there). It answers 201 with the record's document.
func (k Kind[T, D]) Create(rq *api.Request, build func(tx *store.Tx, id string) (T, error)) (api.Reply, error) {
	id := job.NewID()
	path := k.Kind + "/" + id
	var rec T
	j, err := k.Jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create " + k.Type, Target: k.Kind, Affected: []string{k.Kind, path}},
		func(tx *store.Tx) (err error) {
			if rec, err = build(tx, id); err != nil {
				return err
			}
			return records.Put(tx, k.Kind, id, rec)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: k.Doc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

// Update answers a PUT of the common attributes.
func (k Kind[T, D]) Update(rq *api.Request) (api.Reply, error) {
	var doc D
	if err := rq.Decode(&doc, k.Type); err != nil {
		return api.Reply{}, err
	}
	body := commonOf(&doc)
	selected, err := UpdateSelection(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return Edited(k.Jobs, k.Kind+"/"+id, func(tx *store.Tx) error {
		return records.Edit(tx, k.Kind, id, k.Type, func(rec *T) error {
			return ApplyUpdate(k.Meta(rec), body, selected, k.Now())
		})
	})
}

// Delete removes a record at once, unless InUse refuses.
func (k Kind[T, D]) Delete(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := k.Kind + "/" + id
	j, err := k.Jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete " + k.Type, Target: path}, func(tx *store.Tx) error {
		rec, err := records.Get[T](tx, k.Kind, id, k.Type)
		if err != nil {
			return err
		}
		if k.InUse != nil {
			if err := k.InUse(tx, rec); err != nil {
				return err
			}
		}
		return tx.Delete(k.Kind, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}

// commonOf returns the common attributes of a CIMI document.
func commonOf(doc any) cimi.Common {
	f := reflect.ValueOf(doc).Elem().FieldByName("Common")
	if !f.IsValid() {
		return cimi.Common{}
	}
	c, _ := f.Interface().(cimi.Common)
	return c
}
