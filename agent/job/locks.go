package job

import (
	"context"
	"sort"
	"sync"
)

// lockTable grants exclusive use of resource paths. A Job takes all its
// locks at once or waits, so two Jobs can never deadlock on each other.
// Jobs that want a common path get it in the order they asked for it: a
// Job never overtakes an earlier one it conflicts with, though Jobs on
// other paths go ahead.
type lockTable struct {
	mu    sync.Mutex
	held  map[string]bool
	queue []*lockTicket // waiting, in the order they asked
}

// lockTicket is one Job's place in the lock table.
type lockTicket struct {
	keys    []string
	granted chan struct{} // closed once the keys are held
}

func newLockTable() *lockTable {
	return &lockTable{held: map[string]bool{}}
}

// request asks for keys; the ticket holds them at once when they are free
// and no earlier ticket waits for one of them.
func (l *lockTable) request(keys []string) *lockTicket {
	t := &lockTicket{keys: uniqueSorted(keys), granted: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, t)
	l.grant()
	l.mu.Unlock()
	return t
}

// held reports whether t holds its keys.
func (t *lockTicket) held() bool {
	select {
	case <-t.granted:
		return true
	default:
		return false
	}
}

// wait blocks until t holds its keys and returns the function that
// releases them. When ctx ends first, t gives up its place.
func (l *lockTable) wait(ctx context.Context, t *lockTicket) (func(), error) {
	select {
	case <-t.granted:
		return func() { l.release(t) }, nil
	case <-ctx.Done():
		l.cancel(t)
		return nil, context.Cause(ctx)
	}
}

// cancel gives up t: its keys when it holds them, its place otherwise.
func (l *lockTable) cancel(t *lockTicket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.held() {
		l.free(t)
		return
	}
	for i, w := range l.queue {
		if w == t {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			break
		}
	}
	l.grant() // t may have kept later tickets waiting
}

func (l *lockTable) release(t *lockTicket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free(t)
}

// free drops t's keys and lets waiting tickets have them; l.mu is held.
func (l *lockTable) free(t *lockTicket) {
	for _, k := range t.keys {
		delete(l.held, k)
	}
	l.grant()
}

// grant hands their keys to the waiting tickets that can have them, in
// order: a ticket waits while one of its keys is held or wanted by an
// earlier waiting ticket. l.mu is held.
func (l *lockTable) grant() {
	wanted := map[string]bool{}
	waiting := l.queue[:0]
	for _, t := range l.queue {
		free := true
		for _, k := range t.keys {
			if l.held[k] || wanted[k] {
				free = false
				break
			}
		}
		if free {
			for _, k := range t.keys {
				l.held[k] = true
			}
			close(t.granted)
			continue
		}
		for _, k := range t.keys {
			wanted[k] = true
		}
		waiting = append(waiting, t)
	}
	clear(l.queue[len(waiting):])
	l.queue = waiting
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
