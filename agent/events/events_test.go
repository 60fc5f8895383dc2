package events

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"cimid/store"
)

func newLog(t *testing.T) *Log {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Hour)
}

func TestRecordListAndStream(t *testing.T) {
	l := newLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	machines := l.Subscribe(ctx, "machines/")
	l.Record(Event{Resource: "machines/a", Type: TypeState, State: "STARTED"})
	l.Record(Event{Resource: "volumes/v", Type: TypeModel, Change: "create"})
	l.Record(Event{Resource: "machines/a", Type: TypeState, State: "STOPPED", Previous: "STARTED"})

	got, err := l.List("machines/a")
	if err != nil || len(got) != 2 || got[0].State != "STARTED" || got[1].State != "STOPPED" || got[0].Severity != SeverityLow {
		t.Fatalf("List = %+v, %v", got, err)
	}
	if all, _ := l.List(""); len(all) != 3 {
		t.Fatalf("%d events in all, want 3", len(all))
	}
	for _, want := range []string{"STARTED", "STOPPED"} {
		select {
		case e := <-machines:
			if e.State != want || e.Resource != "machines/a" {
				t.Fatalf("streamed %+v, want state %s", e, want)
			}
		case <-time.After(time.Second):
			t.Fatal("no event streamed")
		}
	}
	select {
	case e := <-machines:
		t.Fatalf("the stream for machines/ delivered %+v", e)
	default:
	}
	e, err := l.Get(got[1].ID)
	if err != nil || e.Previous != "STARTED" {
		t.Fatalf("Get = %+v, %v", e, err)
	}
}

func TestPruneKeepsTheWindow(t *testing.T) {
	l := newLog(t)
	now := time.Now()
	l.now = func() time.Time { return now }
	l.Record(Event{Resource: "machines/a", Type: TypeState, Time: now.Add(-2 * time.Hour)})
	l.Record(Event{Resource: "machines/a", Type: TypeState, Time: now.Add(-time.Minute)})
	if err := l.Prune(); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.List("machines/a"); len(got) != 1 {
		t.Fatalf("%d events after pruning, want 1", len(got))
	}
}
