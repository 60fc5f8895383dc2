package domstats

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"cimid/hypervisor"
)

type stubSource struct {
	mu      sync.Mutex
	pingErr error
	pings   int
	calls   int
}

func (s *stubSource) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pings++
	return s.pingErr
}

func (s *stubSource) AllDomainStats(context.Context) ([]hypervisor.DomainStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return []hypervisor.DomainStats{{Name: "d", CPUTimeNs: uint64(s.calls)}}, nil
}

// TestSubscribersShareReadings polls on a hand-driven clock: one bulk call
// per reading however many subscribers there are, the interval is the
// shortest period asked for, and a subscriber with a longer period gets
// the reading nearest to its period.
func TestSubscribersShareReadings(t *testing.T) {
	src := &stubSource{}
	p := New(src)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return clock }
	var fast, slow []time.Time
	p.Subscribe(10*time.Second, func(s Snapshot) { slow = append(slow, s.At) })
	p.Subscribe(4*time.Second, func(s Snapshot) { fast = append(fast, s.At) })
	if got := p.Interval(); got != 4*time.Second {
		t.Fatalf("interval %v, want the shortest period, 4s", got)
	}
	for range 10 { // readings at 0, 4, ... 36 s
		p.poll(t.Context(), p.Interval())
		clock = clock.Add(4 * time.Second)
	}
	if src.calls != 10 || len(fast) != 10 {
		t.Fatalf("%d bulk calls and %d readings for the 4 s subscriber after 10 polls, want 10 and 10", src.calls, len(fast))
	}
	// 10 s is 2.5 readings: due once 8 s (10 s less half an interval) passed.
	var gaps []time.Duration
	for i := 1; i < len(slow); i++ {
		gaps = append(gaps, slow[i].Sub(slow[i-1]))
	}
	if len(slow) != 5 || gaps[0] != 8*time.Second {
		t.Fatalf("the 10 s subscriber got readings %v apart, want 8 s (nearest tick)", gaps)
	}
}

// TestUnansweredCheck makes no bulk call while the hypervisor does not
// answer, and tells the subscribers so.
func TestUnansweredCheck(t *testing.T) {
	src := &stubSource{pingErr: hypervisor.ErrUnavailable}
	p := New(src)
	var got []Snapshot
	p.Subscribe(time.Second, func(s Snapshot) { got = append(got, s) })
	p.poll(t.Context(), time.Second)
	if src.calls != 0 {
		t.Fatal("bulk statistics called while the hypervisor does not answer")
	}
	if len(got) != 1 || got[0].Up || !errors.Is(got[0].Err, hypervisor.ErrUnavailable) || got[0].Stats != nil {
		t.Fatalf("readings %+v, want one not up with the check's error", got)
	}

	// A reading cut short by the stop is not handed out: it says nothing
	// about the hypervisor.
	src.pingErr = nil
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p.poll(ctx, time.Second)
	if len(got) != 1 {
		t.Fatalf("a reading made after the stop was handed out: %+v", got[1:])
	}
}

func TestRunWithoutSubscribers(t *testing.T) {
	src := &stubSource{}
	done := make(chan struct{})
	go func() { New(src).Run(t.Context()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run without subscribers did not return")
	}
	if src.pings != 0 || src.calls != 0 {
		t.Fatal("a poller nobody subscribed to read the hypervisor")
	}
}
