package job

import (
	"context"
	"sort"
	"sync"
)

// lockTable grants exclusive use of resource paths. A Job takes all its
// locks at once or waits, so two Jobs can never deadlock on each other.
type lockTable struct {
	mu      sync.Mutex
	held    map[string]bool
	waiting map[string]int // Jobs waiting for each key
	changed chan struct{}  // closed and replaced on every release
}

func newLockTable() *lockTable {
	return &lockTable{held: map[string]bool{}, waiting: map[string]int{}, changed: make(chan struct{})}
}

// tryAcquire holds every key at once when none is held or waited for, and
// returns the function that releases them; it returns nil otherwise. A
// Job that waits keeps its turn.
func (l *lockTable) tryAcquire(keys []string) func() {
	keys = uniqueSorted(keys)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if l.held[k] || l.waiting[k] > 0 {
			return nil
		}
	}
	for _, k := range keys {
		l.held[k] = true
	}
	return func() { l.release(keys) }
}

// acquire blocks until every key is free, then holds them all. The returned
// function releases them.
func (l *lockTable) acquire(ctx context.Context, keys []string) (func(), error) {
	keys = uniqueSorted(keys)
	waiting := false
	defer func() {
		if waiting {
			l.mu.Lock()
			l.unwait(keys)
			l.mu.Unlock()
		}
	}()
	for {
		l.mu.Lock()
		free := true
		for _, k := range keys {
			if l.held[k] {
				free = false
				break
			}
		}
		if free {
			for _, k := range keys {
				l.held[k] = true
			}
			if waiting {
				l.unwait(keys)
				waiting = false
			}
			l.mu.Unlock()
			return func() { l.release(keys) }, nil
		}
		if !waiting {
			for _, k := range keys {
				l.waiting[k]++
			}
			waiting = true
		}
		wait := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-wait:
		}
	}
}

// unwait forgets one waiter of keys; l.mu is held.
func (l *lockTable) unwait(keys []string) {
	for _, k := range keys {
		if l.waiting[k]--; l.waiting[k] <= 0 {
			delete(l.waiting, k)
		}
	}
}

func (l *lockTable) release(keys []string) {
	l.mu.Lock()
	for _, k := range keys {
		delete(l.held, k)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func uniqueSorted(keys []string) []string {
	out := append([]string(nil), keys...)
	sort.Strings(out)
	n := 0
	for i, k := range out {
		if i == 0 || k != out[i-1] {
			out[n] = k
			n++
		}
	}
	return out[:n]
}
