package job

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"cimid/store"
)

// A resumable Job whose locks are free is stored RUNNING with its intent;
// one that must wait for its locks, or a kind that is not resumable, is
// stored QUEUED first.
func TestSubmitStoresRunningWhenTheJobCanStart(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	var mu sync.Mutex
	var transitions []string
	r.SetTransitionHook(func(rec Record, state string, stored bool) {
		mu.Lock()
		defer mu.Unlock()
		if state == Running {
			transitions = append(transitions, state+map[bool]string{true: " after", false: " before"}[stored])
		}
	})
	release := make(chan struct{})
	started := make(chan string, 10)
	hold := func(ctx context.Context, x *Exec) error {
		started <- x.Record().ID
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.Register("resumable", Kind{Run: hold, Resumable: true})
	r.Register("oneshot", Kind{Run: hold})
	r.Start(context.Background())

	a, err := r.Submit(Record{Kind: "resumable", Target: "m/1", Locks: []string{"m/1"}}, nil)
	if err != nil || a.State != Running {
		t.Fatalf("first Job on a free resource: %+v %v", a, err)
	}
	if got, _ := r.Get(a.ID); got.State != Running {
		t.Fatalf("stored as %s", got.State)
	}
	<-started
	mu.Lock()
	if !slices.Equal(transitions, []string{"RUNNING before", "RUNNING after"}) {
		t.Fatalf("transition hook calls: %v", transitions)
	}
	mu.Unlock()
	b, _ := r.Submit(Record{Kind: "resumable", Target: "m/1", Locks: []string{"m/1"}}, nil)
	c, _ := r.Submit(Record{Kind: "oneshot", Target: "m/2", Locks: []string{"m/2"}}, nil)
	if b.State != Queued || c.State != Queued {
		t.Fatalf("a Job behind a lock is %s, a one-shot Job %s", b.State, c.State)
	}
	<-started // c runs
	close(release)
	for _, id := range []string{a.ID, b.ID, c.ID} {
		if got := waitFinal(t, r, id); got.State != Success {
			t.Fatalf("job %+v", got)
		}
	}
}

// Tickets on a common key are granted in the order they were asked for,
// whoever asks for fewer keys; tickets on other keys go ahead.
func TestLocksGoInTheOrderAsked(t *testing.T) {
	l := newLockTable()
	first := l.request([]string{"b"})
	if !first.held() {
		t.Fatal("a free key was not granted")
	}
	wide := l.request([]string{"a", "b"}) // waits for b
	narrow := l.request([]string{"a"})    // a is free, but wide asked first
	other := l.request([]string{"c"})
	dup := l.request([]string{"c", "c"})
	if wide.held() || narrow.held() {
		t.Fatal("a ticket overtook an earlier one on a common key")
	}
	if !other.held() || dup.held() {
		t.Fatal("a ticket on an unrelated key was held back, or a held key granted twice")
	}
	l.release(first)
	if !wide.held() || narrow.held() {
		t.Fatal("the earlier ticket did not get the released key first")
	}
	l.release(wide)
	if !narrow.held() {
		t.Fatal("the later ticket did not get the key once it was free")
	}
	l.release(narrow)
	l.release(other)
	if !dup.held() {
		t.Fatal("a ticket with a repeated key was not granted")
	}
	l.release(dup)
}

// A ticket that gives up, waiting or holding, lets the later ones go.
func TestCancelledTicketGivesWay(t *testing.T) {
	l := newLockTable()
	held := l.request([]string{"a"})
	blocked := l.request([]string{"a", "b"})
	behind := l.request([]string{"b"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.wait(ctx, blocked); err == nil {
		t.Fatal("wait returned no error for an ended context")
	}
	if !behind.held() {
		t.Fatal("a withdrawn ticket still held back a later one")
	}
	l.cancel(held)
	again := l.request([]string{"a"})
	if !again.held() {
		t.Fatal("a cancelled holder kept its key")
	}
	release, err := l.wait(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	release()
	l.release(behind)
	if len(l.held) != 0 || len(l.queue) != 0 {
		t.Fatalf("left held %v, queue %d", l.held, len(l.queue))
	}
}

// Succeed stores the handler's last change with the Job's end; a change
// that fails leaves the Job to fail and undo.
func TestSucceedStoresTheChangeWithTheEnd(t *testing.T) {
	r, db := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	var ended []Record
	var mu sync.Mutex
	r.onEnd = func(rec Record) { mu.Lock(); ended = append(ended, rec); mu.Unlock() }
	var undone bool
	r.Register("fold", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		x.OnUndo("step", func(context.Context) error { undone = true; return nil })
		x.Affect("things/extra")
		x.SetMessage("folded")
		var p struct{ Fail bool }
		if err := x.Params(&p); err != nil {
			return err
		}
		return x.Succeed(func(tx *store.Tx) error {
			got, err := tx.Get(Bucket, x.Record().ID)
			if err != nil || len(got) == 0 {
				return errors.New("the Job is not readable in the transaction")
			}
			if err := tx.Put("things", x.Record().ID, []byte("done")); err != nil {
				return err
			}
			if p.Fail {
				return errors.New("refused")
			}
			return nil
		})
	}})
	r.Start(context.Background())
	ok, _ := r.Submit(Record{Kind: "fold", Target: "things/1"}, nil)
	got := waitFinal(t, r, ok.ID)
	if got.State != Success || got.StatusMessage != "folded" || got.Progress != 100 || !slices.Contains(got.Affected, "things/extra") {
		t.Fatalf("job = %+v", got)
	}
	if v, _ := db.Get("things", ok.ID); string(v) != "done" {
		t.Fatal("the change was not stored")
	}
	if undone {
		t.Fatal("a Job that succeeded was undone")
	}
	bad, _ := r.Submit(Record{Kind: "fold", Target: "things/2", Params: []byte(`{"Fail":true}`)}, nil)
	got = waitFinal(t, r, bad.ID)
	if got.State != Failed || got.StatusMessage != "refused" || !undone {
		t.Fatalf("failed change: job = %+v, undone %v", got, undone)
	}
	if _, err := db.Get("things", bad.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a refused change was stored")
	}
	// OnEnd hears of each Job once, after the handler returned
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(ended)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnEnd heard of %d Jobs", n)
		}
	}
}

func TestWaitReturnsWhenTheJobEnds(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	release := make(chan struct{})
	r.Register("hold", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		<-release
		return nil
	}})
	r.Start(context.Background())
	rec, _ := r.Submit(Record{Kind: "hold", Target: "t/1"}, nil)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if got, err := r.Wait(short, rec.ID); err != nil || got.State != Running {
		t.Fatalf("a wait that ran out: %+v %v", got, err)
	}
	done := make(chan Record)
	go func() {
		got, _ := r.Wait(context.Background(), rec.ID)
		done <- got
	}()
	close(release)
	select {
	case got := <-done:
		if got.State != Success {
			t.Fatalf("the wait returned %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not return when the Job ended")
	}
	if got, err := r.Wait(context.Background(), rec.ID); err != nil || got.State != Success {
		t.Fatalf("a wait on an ended Job: %+v %v", got, err)
	}
	if _, err := r.Wait(context.Background(), "nothing"); err == nil {
		t.Fatal("a wait on no Job succeeded")
	}
}

// A stop that reaches a Job stored RUNNING before its goroutine started
// still stops it.
func TestStopRightAfterSubmit(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "s.db"))
	ran := make(chan struct{}, 1)
	r.Register("slow", Kind{Resumable: true, Cancellable: true, Run: func(ctx context.Context, x *Exec) error {
		ran <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}})
	r.Start(context.Background())
	rec, _ := r.Submit(Record{Kind: "slow", Target: "t/1"}, nil)
	if _, err := r.Stop(rec.ID); err != nil {
		t.Fatal(err)
	}
	if got := waitFinal(t, r, rec.ID); got.State != Stopped {
		t.Fatalf("job = %+v", got)
	}
}
