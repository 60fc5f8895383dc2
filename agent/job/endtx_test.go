package job

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"cimid/store"
)

// EndTx's writes are stored in the transaction that ends the Job, for
// Jobs that run and for changes recorded as finished Jobs, and what it
// returns runs once per Job after the commit.
func TestEndTxWritesWithTheJobsEnd(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var afters atomic.Int32
	r := NewRunner(db, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		EndTx: func(tx *store.Tx, rec Record) (func(), error) {
			if !rec.Final() {
				t.Errorf("EndTx saw the Job %s", rec.State)
			}
			if err := tx.Put("ends", rec.ID, []byte(rec.State)); err != nil {
				return nil, err
			}
			return func() {
				if v, err := db.Get("ends", rec.ID); err != nil || string(v) != rec.State {
					t.Errorf("after ran before the end was stored: %q %v", v, err)
				}
				afters.Add(1)
			}, nil
		},
	})
	r.Register("ok", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error { return nil }})
	r.Register("folded", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		return x.Succeed(func(tx *store.Tx) error { return tx.Put("things", "1", []byte("x")) })
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, kind := range []string{"ok", "folded"} {
		rec, err := r.Submit(Record{Kind: kind, Target: "things/1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFinal(t, r, rec.ID)
		ids = append(ids, rec.ID)
	}
	done, err := r.Done(Record{Kind: "edit", Target: "things/2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, done.ID)
	for _, id := range ids {
		if v, err := db.Get("ends", id); err != nil || string(v) != Success {
			t.Errorf("end of %s: %q %v", id, v, err)
		}
	}
	// A waiter may see the end stored a moment before after has run.
	for deadline := time.Now().Add(5 * time.Second); afters.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := afters.Load(); n != 3 {
		t.Errorf("after ran %d times for 3 Jobs", n)
	}
}
