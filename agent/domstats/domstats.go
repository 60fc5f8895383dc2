// Package domstats reads the hypervisor on one schedule for everyone who
// needs its counters: each period it checks that the hypervisor answers and,
// when it does, reads the statistics of every running domain in one bulk
// call. Each reading goes to the subscribers whose own period is due, so
// that the Meters and the Prometheus metrics share one call instead of
// making their own.
package domstats

import (
	"context"
	"sync"
	"time"

	"cimid/hypervisor"
)

// Source is what the poller reads.
type Source interface {
	Ping(ctx context.Context) error
	AllDomainStats(ctx context.Context) ([]hypervisor.DomainStats, error)
}

// Snapshot is one reading.
type Snapshot struct {
	At time.Time // when the reading ended
	// Up tells whether the hypervisor answered the check. When it did not,
	// no bulk call was made and Err says why.
	Up bool
	// Err is why the check or the bulk call failed; Stats is nil then.
	Err error
	// Stats holds every running or paused domain of the host, this
	// agent's and others'. Subscribers share it and must not change it.
	Stats []hypervisor.DomainStats
	// Took is how long the bulk call took; 0 when it was not made.
	Took time.Duration
}

// Timeouts of the two calls of a reading.
const (
	pingTimeout  = 5 * time.Second
	statsTimeout = 10 * time.Second
)

type subscriber struct {
	every time.Duration
	fn    func(Snapshot)
	last  time.Time // when it was last given a reading
}

// Poller makes the readings and hands them out.
type Poller struct {
	src Source
	now func() time.Time

	mu   sync.Mutex
	subs []*subscriber
}

// New makes a poller of src. It reads nothing until Run.
func New(src Source) *Poller {
	return &Poller{src: src, now: time.Now}
}

// Subscribe asks for a reading about every period; fn is called on the
// poller's goroutine, one subscriber after another in the order they
// subscribed, so it should return quickly. Subscribe before Run.
func (p *Poller) Subscribe(every time.Duration, fn func(Snapshot)) {
	if every <= 0 {
		panic("domstats: Subscribe with a period <= 0")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subs = append(p.subs, &subscriber{every: every, fn: fn})
}

// Interval is the period of the readings: the shortest any subscriber
// asked for; 0 without subscribers.
func (p *Poller) Interval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d time.Duration
	for _, s := range p.subs {
		if d == 0 || s.every < d {
			d = s.every
		}
	}
	return d
}

// Run reads now and then every Interval until ctx ends. Without
// subscribers it returns at once.
func (p *Poller) Run(ctx context.Context) {
	interval := p.Interval()
	if interval == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.poll(ctx, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil { // both were ready: stopping wins
				return
			}
		}
	}
}

// poll makes one reading and gives it to every subscriber that is due. A
// subscriber whose period is longer than the interval is due at the tick
// nearest to its period, so that its readings come neither early nor
// late by more than half an interval.
func (p *Poller) poll(ctx context.Context, interval time.Duration) {
	snap, ok := p.read(ctx)
	if !ok {
		return
	}
	p.mu.Lock()
	var due []*subscriber
	for _, s := range p.subs {
		if s.last.IsZero() || snap.At.Sub(s.last) >= s.every-interval/2 {
			s.last = snap.At
			due = append(due, s)
		}
	}
	p.mu.Unlock()
	for _, s := range due {
		s.fn(snap)
	}
}

// read checks the hypervisor and, when it answers, makes the bulk call.
// It is false when ctx ended meanwhile: a reading cut short by a stop says
// nothing about the hypervisor.
func (p *Poller) read(ctx context.Context) (Snapshot, bool) {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err := p.src.Ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return Snapshot{}, false
	}
	if err != nil {
		return Snapshot{At: p.now(), Err: err}, true
	}
	start := p.now()
	sctx, cancel := context.WithTimeout(ctx, statsTimeout)
	stats, err := p.src.AllDomainStats(sctx)
	cancel()
	if ctx.Err() != nil {
		return Snapshot{}, false
	}
	end := p.now()
	snap := Snapshot{At: end, Up: true, Took: end.Sub(start), Stats: stats, Err: err}
	if err != nil {
		snap.Stats = nil
	}
	return snap, true
}
