package libvirt

import (
	"sync"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// maxPendingEvents bounds the backlog of undelivered events. A consumer that
// falls this far behind gets one resynchronisation event in place of the
// backlog: it has to re-read everything anyway, and memory stays bounded.
const maxPendingEvents = 4096

// eventQueue decouples libvirt callbacks, which must never block, from the
// consumer of the Events channel. push never blocks; a goroutine moves queued
// events to the channel at the consumer's pace.
type eventQueue struct {
	out  chan hypervisor.Event
	wake chan struct{} // capacity 1: "pending is not empty"
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending []hypervisor.Event
	closed  bool
}

func newEventQueue() *eventQueue {
	q := &eventQueue{
		out:  make(chan hypervisor.Event),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go q.run()
	return q
}

// push queues ev for delivery; it is safe to call from libvirt callbacks.
func (q *eventQueue) push(ev hypervisor.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if len(q.pending) >= maxPendingEvents {
		q.pending = append(q.pending[:0], hypervisor.Event{Reconnected: true})
	}
	q.pending = append(q.pending, ev)
	q.mu.Unlock()

	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close stops delivery and closes the output channel; queued events are
// dropped.
func (q *eventQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.pending = nil
	q.mu.Unlock()
	close(q.stop)
	<-q.done
}

func (q *eventQueue) run() {
	defer close(q.done)
	defer close(q.out)
	for {
		ev, ok := q.next()
		if !ok {
			select {
			case <-q.wake:
				continue
			case <-q.stop:
				return
			}
		}
		select {
		case q.out <- ev:
		case <-q.stop:
			return
		}
	}
}

func (q *eventQueue) next() (hypervisor.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return hypervisor.Event{}, false
	}
	ev := q.pending[0]
	q.pending[0] = hypervisor.Event{}
	q.pending = q.pending[1:]
	return ev, true
}

// eventKind maps a libvirt lifecycle event type to the hypervisor vocabulary.
func eventKind(t libvirt.DomainEventType) hypervisor.EventKind {
	switch t {
	case libvirt.DOMAIN_EVENT_DEFINED:
		return hypervisor.EventDefined
	case libvirt.DOMAIN_EVENT_UNDEFINED:
		return hypervisor.EventUndefined
	case libvirt.DOMAIN_EVENT_STARTED:
		return hypervisor.EventStarted
	case libvirt.DOMAIN_EVENT_SUSPENDED:
		return hypervisor.EventSuspended
	case libvirt.DOMAIN_EVENT_RESUMED:
		return hypervisor.EventResumed
	case libvirt.DOMAIN_EVENT_STOPPED:
		return hypervisor.EventStopped
	case libvirt.DOMAIN_EVENT_SHUTDOWN:
		return hypervisor.EventShutdown
	case libvirt.DOMAIN_EVENT_CRASHED:
		return hypervisor.EventCrashed
	case libvirt.DOMAIN_EVENT_PMSUSPENDED:
		return hypervisor.EventPMSuspended
	default:
		return hypervisor.EventOther
	}
}
