package compute

import (
	"cimid/agent/records"
	"path/filepath"
	"testing"

	"cimid/store"
)

func TestDecodeCacheFollowsTheStore(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(id, state string) {
		t.Helper()
		if err := db.Update(func(tx *store.Tx) error {
			return records.Put(tx, kindMachines, id, machineRecord{meta: meta{ID: id}, State: state})
		}); err != nil {
			t.Fatal(err)
		}
	}
	var c decodeCache[machineRecord]
	renders := 0
	list := func(base string) ([]machineRecord, [][]byte) {
		t.Helper()
		var out []machineRecord
		var docs [][]byte
		err := db.View(func(tx *store.Tx) (err error) {
			out, docs, err = c.listJSON(tx, kindMachines, base, func(m machineRecord) ([]byte, error) {
				renders++
				return []byte(base + m.ID + " " + m.State), nil
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, docs
	}
	put("a", "STOPPED")
	put("b", "STOPPED")
	if got, docs := list("x/"); len(got) != 2 || got[0].State != "STOPPED" || string(docs[1]) != "x/b STOPPED" || renders != 2 {
		t.Fatalf("first listing: %+v %q after %d renders", got, docs, renders)
	}
	if _, docs := list("x/"); string(docs[0]) != "x/a STOPPED" || renders != 2 {
		t.Fatalf("a listing of unchanged records rendered again (%d renders): %q", renders, docs)
	}
	put("a", "STARTED")
	db.Update(func(tx *store.Tx) error { return tx.Delete(kindMachines, "b") })
	got, docs := list("x/")
	if len(got) != 1 || got[0].ID != "a" || got[0].State != "STARTED" || string(docs[0]) != "x/a STARTED" || renders != 3 {
		t.Fatalf("after a change and a delete: %+v %q after %d renders", got, docs, renders)
	}
	if len(c.entries) != 1 {
		t.Fatalf("the cache keeps %d entries, want 1", len(c.entries))
	}
	if _, docs := list("y/"); string(docs[0]) != "y/a STARTED" || renders != 4 {
		t.Fatalf("another base URI: %q after %d renders", docs, renders)
	}
}
