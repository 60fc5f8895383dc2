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
	list := func() []machineRecord {
		t.Helper()
		var out []machineRecord
		if err := db.View(func(tx *store.Tx) (err error) { out, err = c.list(tx, kindMachines); return err }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	put("a", "STOPPED")
	put("b", "STOPPED")
	if got := list(); len(got) != 2 || got[0].State != "STOPPED" {
		t.Fatalf("first listing: %+v", got)
	}
	put("a", "STARTED")
	db.Update(func(tx *store.Tx) error { return tx.Delete(kindMachines, "b") })
	got := list()
	if len(got) != 1 || got[0].ID != "a" || got[0].State != "STARTED" {
		t.Fatalf("after a change and a delete: %+v", got)
	}
	if len(c.entries) != 1 {
		t.Fatalf("the cache keeps %d entries, want 1", len(c.entries))
	}
}
