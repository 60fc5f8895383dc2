package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPutGetListDelete(t *testing.T) {
	db := openTemp(t)
	err := db.Update(func(tx *Tx) error {
		if err := tx.Put("jobs", "b", []byte("2")); err != nil {
			return err
		}
		return tx.Put("jobs", "a", []byte("1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.Get("jobs", "a")
	if err != nil || string(v) != "1" {
		t.Fatalf("get a = %q, %v", v, err)
	}
	recs, err := db.List("jobs")
	if err != nil || len(recs) != 2 || recs[0].ID != "a" || recs[1].ID != "b" {
		t.Fatalf("list = %+v, %v", recs, err)
	}
	if _, err := db.Get("machines", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing kind: %v", err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Delete("jobs", "a") }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get("jobs", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record still readable: %v", err)
	}
}

func TestFailedUpdateRollsBack(t *testing.T) {
	db := openTemp(t)
	boom := errors.New("boom")
	err := db.Update(func(tx *Tx) error {
		if err := tx.Put("jobs", "a", []byte("1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if _, err := db.Get("jobs", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write of a failed transaction is visible: %v", err)
	}
}

func TestValuesAreCopies(t *testing.T) {
	db := openTemp(t)
	if err := db.Update(func(tx *Tx) error { return tx.Put("k", "a", []byte("abc")) }); err != nil {
		t.Fatal(err)
	}
	v, _ := db.Get("k", "a")
	v[0] = 'X'
	again, _ := db.Get("k", "a")
	if string(again) != "abc" {
		t.Fatalf("stored value changed through a returned slice: %q", again)
	}
}

func TestInstanceIDIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := db.InstanceID(func() string { return "first" })
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id2, _ := db.InstanceID(func() string { return "second" })
	if id1 != "first" || id2 != "first" {
		t.Fatalf("instance ids %q then %q", id1, id2)
	}
}

func TestMigrationsRunInOrderOnce(t *testing.T) {
	db := openTemp(t)
	var ran []int
	list := append([]migration{}, migrations...)
	for _, to := range []int{2, 3} {
		to := to
		list = append(list, migration{To: to, Name: "test", Apply: func(tx *bolt.Tx) error {
			ran = append(ran, to)
			return nil
		}})
	}
	if err := db.migrate(list); err != nil {
		t.Fatal(err)
	}
	if err := db.migrate(list); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 2 || ran[0] != 2 || ran[1] != 3 {
		t.Fatalf("migrations ran %v, want [2 3] once", ran)
	}
	if v, _ := db.SchemaVersion(); v != 3 {
		t.Fatalf("schema version %d, want 3", v)
	}
	// An agent that only knows version 1 must refuse the newer file.
	if err := db.migrate(migrations); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("older agent on newer file: %v", err)
	}
}

func TestMigrationListIsContiguous(t *testing.T) {
	for i, m := range migrations {
		if m.To != i+1 {
			t.Fatalf("migration %d (%s) has To=%d", i, m.Name, m.To)
		}
	}
}

func TestCorruptFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, []byte("this is not a bbolt file, not at all; padding padding padding"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("opened a corrupt file without error")
	}
	b, _ := os.ReadFile(path)
	if string(b[:4]) != "this" {
		t.Fatal("corrupt file was overwritten")
	}
}

func TestScanAndDeletePrefix(t *testing.T) {
	db := openTemp(t)
	err := db.Update(func(tx *Tx) error {
		for _, id := range []string{"a/1", "a/2", "a/3", "b/1", "ab/1"} {
			if err := tx.Put("s", id, []byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *Tx) error {
		recs, _ := tx.Scan("s", "a/")
		if len(recs) != 3 || recs[0].ID != "a/1" || recs[2].ID != "a/3" {
			t.Fatalf("scan a/: %+v", recs)
		}
		return nil
	})
	db.Update(func(tx *Tx) error {
		n, err := tx.DeletePrefix("s", "a/", "a/3")
		if n != 2 || err != nil {
			t.Fatalf("delete prefix: %d %v", n, err)
		}
		return nil
	})
	recs, _ := db.List("s")
	if len(recs) != 3 {
		t.Fatalf("after delete: %+v", recs)
	}
}

// A bbolt file with one unreadable meta page would open on the other one,
// one transaction back, and be rewritten at the next commit: it is refused
// and left as it is.
func TestDamagedMetaPageIsRefused(t *testing.T) {
	for _, page := range []int64{0, 1} {
		path := filepath.Join(t.TempDir(), "state.db")
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *Tx) error { return tx.Put("k", "1", []byte("v")) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		garbage := bytes.Repeat([]byte("garbage!"), os.Getpagesize()/8)
		if _, err := f.WriteAt(garbage, page*int64(os.Getpagesize())); err != nil {
			t.Fatal(err)
		}
		f.Close()
		before, _ := os.ReadFile(path)
		_, err = Open(path)
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "mv "+path) {
			t.Fatalf("meta page %d garbled: Open says %v", page, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("meta page %d garbled: the file was changed", page)
		}
	}
}

func TestForEachWalksRecordsInOrder(t *testing.T) {
	db := openTemp(t)
	err := db.Update(func(tx *Tx) error {
		for _, id := range []string{"c", "a", "b"} {
			if err := tx.Put("jobs", id, []byte("v"+id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	stop := errors.New("stop")
	err = db.View(func(tx *Tx) error {
		if err := tx.ForEach("nothing", func(id, v []byte) error { return errors.New("called for a missing kind") }); err != nil {
			return err
		}
		return tx.ForEach("jobs", func(id, v []byte) error {
			seen = append(seen, string(id)+"="+string(v))
			if string(id) == "b" {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) || strings.Join(seen, " ") != "a=va b=vb" {
		t.Fatalf("walk: %v, %v", seen, err)
	}
}
