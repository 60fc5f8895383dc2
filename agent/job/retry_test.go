package job

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errGone = errors.New("connection to the hypervisor lost")

// outage is a dependency that is down until back is closed.
type outage struct {
	back  chan struct{}
	waits atomic.Int32
}

func (o *outage) policy(maxWait time.Duration) OutagePolicy {
	return OutagePolicy{
		Transient: func(err error) bool { return errors.Is(err, errGone) },
		Wait: func(ctx context.Context) error {
			o.waits.Add(1)
			select {
			case <-o.back:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		MaxWait: maxWait,
	}
}

func TestResumableJobWaitsOutAnOutage(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "o.db"))
	o := &outage{back: make(chan struct{})}
	r.SetOutagePolicy(o.policy(10 * time.Second))
	var runs atomic.Int32
	var mu sync.Mutex
	var undone []string
	r.Register("flaky", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		n := runs.Add(1)
		x.OnUndo(fmt.Sprintf("step of run %d", n), func(context.Context) error {
			mu.Lock()
			undone = append(undone, fmt.Sprintf("run %d", n))
			mu.Unlock()
			return nil
		})
		if n == 1 {
			if x.Resumed() {
				return errors.New("first run already marked resumed")
			}
			return fmt.Errorf("define domain: %w", errGone)
		}
		if !x.Resumed() {
			return errors.New("rerun not marked resumed")
		}
		return nil
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Submit(Record{Kind: "flaky", Target: "things/1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// While the dependency is away the Job stays RUNNING and says why.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := r.Get(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.Final() {
			t.Fatalf("job ended during the outage: %+v", cur)
		}
		if cur.State == Running && strings.Contains(cur.StatusMessage, "waiting for the hypervisor") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never reported waiting: %+v", cur)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(o.back)
	got := waitFinal(t, r, rec.ID)
	if got.State != Success || runs.Load() != 2 || got.Resumed != 1 {
		t.Fatalf("job = %+v after %d runs", got, runs.Load())
	}
	if len(undone) != 0 {
		t.Fatalf("undo ran on success: %v", undone)
	}
}

func TestOutageLongerThanTheWaitFailsAndUndoesEveryAttempt(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "o.db"))
	o := &outage{back: make(chan struct{})}
	r.SetOutagePolicy(o.policy(50 * time.Millisecond))
	var runs atomic.Int32
	var mu sync.Mutex
	var undone []string
	r.Register("flaky", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		n := runs.Add(1)
		x.OnUndo("step", func(context.Context) error {
			mu.Lock()
			undone = append(undone, fmt.Sprintf("run %d", n))
			mu.Unlock()
			return nil
		})
		return fmt.Errorf("start domain: %w", errGone)
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Submit(Record{Kind: "flaky", Target: "things/1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitFinal(t, r, rec.ID)
	if got.State != Failed || !strings.Contains(got.StatusMessage, "did not come back") || runs.Load() != 1 {
		t.Fatalf("job = %+v after %d runs", got, runs.Load())
	}
	if len(undone) != 1 {
		t.Fatalf("undone = %v", undone)
	}
}

func TestOutagePolicyLeavesOtherFailuresAlone(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "o.db"))
	o := &outage{back: make(chan struct{})}
	close(o.back)
	r.SetOutagePolicy(o.policy(time.Second))
	var resumableRuns, plainRuns atomic.Int32
	r.Register("broken", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		resumableRuns.Add(1)
		return errors.New("disk full")
	}})
	r.Register("plain", Kind{Run: func(ctx context.Context, x *Exec) error {
		plainRuns.Add(1)
		return errGone
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, err := r.Submit(Record{Kind: "broken", Target: "things/1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Submit(Record{Kind: "plain", Target: "things/2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFinal(t, r, a.ID); got.State != Failed || resumableRuns.Load() != 1 {
		t.Fatalf("non-transient failure: %+v after %d runs", got, resumableRuns.Load())
	}
	if got := waitFinal(t, r, b.ID); got.State != Failed || plainRuns.Load() != 1 {
		t.Fatalf("non-resumable kind: %+v after %d runs", got, plainRuns.Load())
	}
	if o.waits.Load() != 0 {
		t.Fatalf("waited %d times for failures that are not outages", o.waits.Load())
	}
}

func TestOutageRetriesAreBounded(t *testing.T) {
	r, _ := newTestRunner(t, filepath.Join(t.TempDir(), "o.db"))
	o := &outage{back: make(chan struct{})}
	close(o.back)
	p := o.policy(time.Second)
	p.MaxRetries = 2
	r.SetOutagePolicy(p)
	var runs atomic.Int32
	r.Register("hopeless", Kind{Resumable: true, Run: func(ctx context.Context, x *Exec) error {
		runs.Add(1)
		return errGone
	}})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Submit(Record{Kind: "hopeless", Target: "things/1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := waitFinal(t, r, rec.ID); got.State != Failed || runs.Load() != 3 {
		t.Fatalf("job = %+v after %d runs, want 3", got, runs.Load())
	}
}
