package job

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"cimid/store"
)

func newTestRunner(t *testing.T, path string) (*Runner, *store.DB) {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewRunner(db, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{}), db
}

func waitFinal(t *testing.T, r *Runner, id string) Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rec, err := r.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Final() {
			return rec
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("job %s did not finish", id)
	return Record{}
}

func TestSuccessAndPrepareInOneTransaction(t *testing.T) {
	r, db := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	r.Register("ok", Kind{Run: func(ctx context.Context, x *Exec) error {
		x.Progress(50)
		x.Affect("things/2")
		x.SetMessage("all good")
		return nil
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Submit(Record{Kind: "ok", Target: "things/1"}, func(tx *store.Tx) error {
		return tx.Put("things", "1", []byte("intent"))
	})
	if err != nil {
		t.Fatal(err)
	}
	got := waitFinal(t, r, rec.ID)
	if got.State != Success || got.Progress != 100 || got.StatusMessage != "all good" || len(got.Affected) != 2 {
		t.Fatalf("job = %+v", got)
	}
	if v, _ := db.Get("things", "1"); string(v) != "intent" {
		t.Fatal("prepare's write missing")
	}
	// a failing prepare stores nothing
	_, err = r.Submit(Record{Kind: "ok", Target: "things/3"}, func(tx *store.Tx) error {
		_ = tx.Put("things", "3", []byte("x"))
		return errors.New("refused")
	})
	if err == nil {
		t.Fatal("submit succeeded despite prepare error")
	}
	if jobs, _ := r.List(); len(jobs) != 1 {
		t.Fatalf("%d jobs stored, want 1", len(jobs))
	}
	if _, err := db.Get("things", "3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("prepare's write of a refused job was kept")
	}
}

func TestFailureRunsUndoInReverse(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	var order []string
	r.Register("bad", Kind{Run: func(ctx context.Context, x *Exec) error {
		x.OnUndo("first", func(context.Context) error { order = append(order, "first"); return nil })
		x.OnUndo("second", func(context.Context) error { order = append(order, "second"); return nil })
		return errors.New("disk on fire")
	}})
	r.Start(context.Background())
	rec, _ := r.Submit(Record{Kind: "bad", Target: "t/1"}, nil)
	got := waitFinal(t, r, rec.ID)
	if got.State != Failed || got.StatusMessage != "disk on fire" || got.Progress != 100 || got.ReturnCode == 0 {
		t.Fatalf("job = %+v", got)
	}
	if len(order) != 2 || order[0] != "second" || order[1] != "first" {
		t.Fatalf("undo order %v", order)
	}
}

func TestStopRunningJob(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	started := make(chan struct{})
	var undone atomic.Bool
	r.Register("slow", Kind{Cancellable: true, Run: func(ctx context.Context, x *Exec) error {
		x.OnUndo("step", func(context.Context) error { undone.Store(true); return nil })
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	r.Register("stubborn", Kind{Run: func(ctx context.Context, x *Exec) error { <-ctx.Done(); return ctx.Err() }})
	r.Start(context.Background())
	rec, _ := r.Submit(Record{Kind: "slow", Target: "t/1"}, nil)
	<-started
	st, err := r.Stop(rec.ID)
	if err != nil || st.State != Stopping {
		t.Fatalf("stop: %+v %v", st, err)
	}
	got := waitFinal(t, r, rec.ID)
	if got.State != Stopped || !undone.Load() {
		t.Fatalf("job = %+v, undone=%v", got, undone.Load())
	}
	if _, err := r.Stop(rec.ID); err == nil {
		t.Fatal("stopping a finished job succeeded")
	}
}

func TestLocksSerialiseJobsOnOneResource(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	var inside, maxInside atomic.Int32
	r.Register("busy", Kind{Run: func(ctx context.Context, x *Exec) error {
		n := inside.Add(1)
		if n > maxInside.Load() {
			maxInside.Store(n)
		}
		time.Sleep(20 * time.Millisecond)
		inside.Add(-1)
		return nil
	}})
	r.Start(context.Background())
	var ids []string
	for i := 0; i < 5; i++ {
		rec, err := r.Submit(Record{Kind: "busy", Target: "m/1", Locks: []string{"m/1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	for _, id := range ids {
		if got := waitFinal(t, r, id); got.State != Success {
			t.Fatalf("job %+v", got)
		}
	}
	if maxInside.Load() != 1 {
		t.Fatalf("%d jobs ran at once on one locked resource", maxInside.Load())
	}
}

func TestRecoveryRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	r1, _ := newTestRunner(t, path)
	block := func(ctx context.Context, x *Exec) error { <-ctx.Done(); return ctx.Err() }
	r1.Register("resumable", Kind{Run: block, Resumable: true})
	r1.Register("oneshot", Kind{Run: block})
	r1.Register("cancellable", Kind{Run: block, Cancellable: true})
	r1.Start(context.Background())
	a, _ := r1.Submit(Record{Kind: "resumable", Target: "t/a"}, nil)
	b, _ := r1.Submit(Record{Kind: "oneshot", Target: "t/b"}, nil)
	c, _ := r1.Submit(Record{Kind: "cancellable", Target: "t/c"}, nil)
	for _, id := range []string{a.ID, b.ID, c.ID} {
		for {
			rec, _ := r1.Get(id)
			if rec.State == Running {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Mark c as STOPPING in the store as if the stop request came just before a crash.
	r1.update(c.ID, func(rec *Record) { rec.State = Stopping })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	r1.Shutdown(ctx) // the jobs stay RUNNING in the store, like after a kill
	for _, id := range []string{a.ID, b.ID} {
		if rec, _ := r1.Get(id); rec.State != Running {
			t.Fatalf("shutdown changed job state to %s", rec.State)
		}
	}
	r1.db.Close()

	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r2 := NewRunner(db, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	var resumed atomic.Bool
	var cleaned []string
	r2.Register("resumable", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		resumed.Store(x.Resumed())
		return nil
	}})
	cleanup := func(ctx context.Context, rec Record) error { cleaned = append(cleaned, rec.Target); return nil }
	r2.Register("oneshot", Kind{Run: block, Cleanup: cleanup})
	r2.Register("cancellable", Kind{Run: block, Cancellable: true, Cleanup: cleanup})
	if err := r2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := waitFinal(t, r2, a.ID); got.State != Success || !resumed.Load() {
		t.Fatalf("resumable job: %+v resumed=%v", got, resumed.Load())
	}
	if got, _ := r2.Get(b.ID); got.State != Failed || got.ReturnCode != CodeInterrupted {
		t.Fatalf("interrupted one-shot job: %+v", got)
	}
	if got, _ := r2.Get(c.ID); got.State != Stopped {
		t.Fatalf("stopping job after restart: %+v", got)
	}
	if len(cleaned) != 2 {
		t.Fatalf("cleanups ran for %v", cleaned)
	}
}

func TestPruneRemovesOldFinishedJobs(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	r := NewRunner(db, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Retention: time.Hour, Now: func() time.Time { return now }})
	r.Register("ok", Kind{Run: func(context.Context, *Exec) error { return nil }})
	r.Start(context.Background())
	rec, _ := r.Submit(Record{Kind: "ok", Target: "t/1"}, nil)
	waitFinal(t, r, rec.ID)
	now = now.Add(2 * time.Hour)
	r.prune()
	if _, err := r.Get(rec.ID); err == nil {
		t.Fatal("old finished job was kept")
	}
}
