package authn

import (
	"sync"
	"time"
)

// Limiter slows down clients that fail authentication repeatedly: the
// first few failures from one address cost nothing, each further one
// within the window doubles the delay before the refusal is answered, up
// to a ceiling. The count is forgotten after a quiet window.
type Limiter struct {
	Free   int           // failures answered at once
	Base   time.Duration // delay of the first slowed failure
	Max    time.Duration // ceiling
	Window time.Duration // failures older than this are forgotten
	Now    func() time.Time

	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

// NewLimiter returns a Limiter with the agent's defaults: 3 free
// failures, then 250 ms doubling up to 8 s, forgotten after 10 minutes.
func NewLimiter() *Limiter {
	return &Limiter{Free: 3, Base: 250 * time.Millisecond, Max: 8 * time.Second, Window: 10 * time.Minute, Now: time.Now}
}

// Fail records a failure from key and returns how long to wait before
// answering it.
func (l *Limiter) Fail(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	if l.m == nil {
		l.m = map[string]*failures{}
	}
	if len(l.m) > 10000 {
		for k, f := range l.m {
			if now.Sub(f.last) > l.Window {
				delete(l.m, k)
			}
		}
	}
	f := l.m[key]
	if f == nil || now.Sub(f.last) > l.Window {
		f = &failures{}
		l.m[key] = f
	}
	f.n++
	f.last = now
	if f.n <= l.Free {
		return 0
	}
	d := l.Base
	for i := l.Free + 1; i < f.n && d < l.Max; i++ {
		d *= 2
	}
	return min(d, l.Max)
}

// Failures returns the current count for key.
func (l *Limiter) Failures(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.m[key]; f != nil && l.Now().Sub(f.last) <= l.Window {
		return f.n
	}
	return 0
}
