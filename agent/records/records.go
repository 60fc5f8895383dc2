// Package records stores the agent's resource records as JSON in the
// store: typed reads and writes by kind and id, and "does not exist" as
// the API's NotFound. Each resource package keeps its own record types.
package records

import (
	"encoding/json"
	"errors"
	"fmt"

	"cimid/agent/errdefs"
	"cimid/store"
)

// Get reads kind/id into a T; a missing record is errdefs.NotFound naming
// what it is (e.g. "Machine").
func Get[T any](tx *store.Tx, kind, id, what string) (T, error) {
	var rec T
	b, err := tx.Get(kind, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return rec, errdefs.NotFoundf("%s %s does not exist", what, id)
		}
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode %s %s: %w", what, id, err)
	}
	return rec, nil
}

// Put writes rec as kind/id.
func Put(tx *store.Tx, kind, id string, rec any) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", kind, id, err)
	}
	return tx.Put(kind, id, b)
}

// List reads every record of kind, in id order.
func List[T any](tx *store.Tx, kind string) ([]T, error) {
	recs, err := tx.List(kind)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s/%s: %w", kind, r.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Find returns the first record of kind, in id order, that match accepts;
// found is false when none does.
func Find[T any](tx *store.Tx, kind string, match func(T) bool) (rec T, found bool, err error) {
	recs, err := List[T](tx, kind)
	if err != nil {
		return rec, false, err
	}
	for _, r := range recs {
		if match(r) {
			return r, true, nil
		}
	}
	return rec, false, nil
}

// Edit changes one record within tx: fn changes it and it is written back
// unless fn fails.
func Edit[T any](tx *store.Tx, kind, id, what string, fn func(*T) error) error {
	rec, err := Get[T](tx, kind, id, what)
	if err != nil {
		return err
	}
	if err := fn(&rec); err != nil {
		return err
	}
	return Put(tx, kind, id, rec)
}

// View reads one record in its own transaction.
func View[T any](db *store.DB, kind, id, what string) (T, error) {
	var rec T
	err := db.View(func(tx *store.Tx) (err error) {
		rec, err = Get[T](tx, kind, id, what)
		return err
	})
	return rec, err
}

// ViewAll reads every record of kind, in id order, in its own transaction.
func ViewAll[T any](db *store.DB, kind string) ([]T, error) {
	var recs []T
	err := db.View(func(tx *store.Tx) (err error) {
		recs, err = List[T](tx, kind)
		return err
	})
	return recs, err
}

// Update changes one record in its own transaction.
func Update[T any](db *store.DB, kind, id, what string, fn func(*T) error) error {
	return db.Update(func(tx *store.Tx) error { return Edit(tx, kind, id, what, fn) })
}
