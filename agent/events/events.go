// Package events keeps the agent's event history: every state change of a
// resource, every Job outcome and every change observed outside the API.
// Events are stored per resource (its EventLog), pruned after a retention
// window, and fanned out to live subscribers (the Server-Sent Events stream).
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"cimid/store"
)

// Bucket is the store kind holding events; keys sort by time.
const Bucket = "events"

// Types of events, as CIMI names them.
const (
	TypeState  = "state"  // a resource changed state
	TypeModel  = "model"  // a resource was created, updated or deleted
	TypeAlarm  = "alarm"  // something went wrong
	TypeAccess = "access" // someone acted on a resource
)

// Severities, as CIMI names them.
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Event is one recorded occurrence.
type Event struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Resource string    `json:"resource"` // resource path, e.g. "machines/<id>"
	ResName  string    `json:"resName,omitempty"`
	ResType  string    `json:"resType,omitempty"` // CIMI type name, e.g. "Machine"
	Type     string    `json:"type"`
	State    string    `json:"state,omitempty"`
	Previous string    `json:"previous,omitempty"`
	Change   string    `json:"change,omitempty"` // create, update, delete (model events)
	Detail   string    `json:"detail,omitempty"`
	Outcome  string    `json:"outcome,omitempty"` // Success, Failure, Status, ...
	Severity string    `json:"severity"`
	// Origin tells who caused it: "api" (a Job) or "outside" (observed).
	Origin string `json:"origin,omitempty"`
}

// Log records events. It is safe for concurrent use.
type Log struct {
	db     *store.DB
	log    *slog.Logger
	now    func() time.Time
	retain time.Duration

	mu   sync.Mutex
	seq  uint64
	subs map[chan Event]string // subscriber -> resource prefix filter
}

// New makes a Log over db keeping events for retain (default 7 days).
func New(db *store.DB, log *slog.Logger, retain time.Duration) *Log {
	if retain == 0 {
		retain = 7 * 24 * time.Hour
	}
	return &Log{db: db, log: log, now: time.Now, retain: retain, subs: map[chan Event]string{}}
}

// Retention is how long events are kept.
func (l *Log) Retention() time.Duration { return l.retain }

// Record stores e and hands it to live subscribers. Recording never fails
// the caller: an event that cannot be stored is logged.
func (l *Log) Record(e Event) {
	e = l.stamp(e)
	b, err := json.Marshal(e)
	if err == nil {
		err = l.db.Update(func(tx *store.Tx) error { return tx.Put(Bucket, e.ID, b) })
	}
	if err != nil {
		l.log.Error("record event", "resource", e.Resource, "err", err)
	}
	l.publish(e)
}

// Stage writes e in tx, so that it is stored together with the change it
// tells of, and returns the function that hands it to live subscribers,
// for the caller to run once tx has committed.
func (l *Log) Stage(tx *store.Tx, e Event) (publish func(), err error) {
	e = l.stamp(e)
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if err := tx.Put(Bucket, e.ID, b); err != nil {
		return nil, fmt.Errorf("store event: %w", err)
	}
	return func() { l.publish(e) }, nil
}

// stamp gives e its id, time and default severity.
func (l *Log) stamp(e Event) Event {
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	if e.Severity == "" {
		e.Severity = SeverityLow
	}
	e.ID = fmt.Sprintf("%019d-%06d", e.Time.UnixNano(), seq%1000000)
	return e
}

// publish hands e to the live subscribers whose filter it matches.
func (l *Log) publish(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch, prefix := range l.subs {
		if prefix != "" && !strings.HasPrefix(e.Resource, prefix) {
			continue
		}
		select {
		case ch <- e:
		default: // a slow subscriber misses events rather than stalling the agent
		}
	}
}

// Subscribe returns a channel of new events for resources whose path starts
// with prefix ("" for all) until ctx ends.
func (l *Log) Subscribe(ctx context.Context, prefix string) <-chan Event {
	ch := make(chan Event, 256)
	l.mu.Lock()
	l.subs[ch] = prefix
	l.mu.Unlock()
	go func() {
		<-ctx.Done()
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
		close(ch)
	}()
	return ch
}

// List returns the stored events of one resource (all when resource is
// empty), oldest first.
func (l *Log) List(resource string) ([]Event, error) {
	recs, err := l.db.List(Bucket)
	if err != nil {
		return nil, err
	}
	var out []Event
	for _, r := range recs {
		var e Event
		if err := json.Unmarshal(r.Value, &e); err != nil {
			continue
		}
		if resource == "" || e.Resource == resource {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns one event.
func (l *Log) Get(id string) (Event, error) {
	b, err := l.db.Get(Bucket, id)
	if err != nil {
		return Event{}, err
	}
	var e Event
	err = json.Unmarshal(b, &e)
	return e, err
}

// Prune deletes events older than the retention window.
func (l *Log) Prune() error {
	cutoff := fmt.Sprintf("%019d", l.now().Add(-l.retain).UnixNano())
	recs, err := l.db.List(Bucket)
	if err != nil {
		return err
	}
	return l.db.Update(func(tx *store.Tx) error {
		for _, r := range recs {
			if r.ID >= cutoff {
				break
			}
			if err := tx.Delete(Bucket, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// Run prunes periodically until ctx ends.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := l.Prune(); err != nil {
			l.log.Error("prune events", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
