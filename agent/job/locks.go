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
	changed chan struct{} // closed and replaced on every release
}

func newLockTable() *lockTable {
	return &lockTable{held: map[string]bool{}, changed: make(chan struct{})}
}

// acquire blocks until every key is free, then holds them all. The returned
// function releases them.
func (l *lockTable) acquire(ctx context.Context, keys []string) (func(), error) {
	keys = uniqueSorted(keys)
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
			l.mu.Unlock()
			return func() { l.release(keys) }, nil
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
