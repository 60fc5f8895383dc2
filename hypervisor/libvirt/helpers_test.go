package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"cimid/hypervisor"
)

// eventTimeout bounds every wait for an event in tests.
const eventTimeout = 20 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openDriver opens uri and closes the driver when the test ends.
func openDriver(t *testing.T, uri string) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := Open(ctx, uri, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", uri, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

var nameSeq atomic.Int64

// uniqueName returns a domain name no other test of this process uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

// waitEvent reads events until one for domain of the given kind arrives. It
// returns the events skipped on the way.
func waitEvent(t *testing.T, events <-chan hypervisor.Event, match func(hypervisor.Event) bool, what string) []hypervisor.Event {
	t.Helper()
	timeout := time.NewTimer(eventTimeout)
	defer timeout.Stop()
	var skipped []hypervisor.Event
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event channel closed while waiting for %s", what)
			}
			if match(ev) {
				return skipped
			}
			skipped = append(skipped, ev)
		case <-timeout.C:
			t.Fatalf("no %s within %s; saw %v", what, eventTimeout, skipped)
		}
	}
}

func domainEvent(name string, kind hypervisor.EventKind) func(hypervisor.Event) bool {
	return func(ev hypervisor.Event) bool { return ev.Domain == name && ev.Kind == kind }
}

func isReconnected(ev hypervisor.Event) bool { return ev.Reconnected }

func mustStatus(t *testing.T, d *Driver, name string) hypervisor.DomainStatus {
	t.Helper()
	st, err := d.DomainStatus(t.Context(), name)
	if err != nil {
		t.Fatalf("DomainStatus(%s): %v", name, err)
	}
	return st
}

func wantState(t *testing.T, d *Driver, name string, want hypervisor.State) hypervisor.DomainStatus {
	t.Helper()
	st := mustStatus(t, d, name)
	if st.State != want {
		t.Fatalf("%s is %s, want %s", name, st.State, want)
	}
	return st
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErrorIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want an error wrapping %q", what, err, target)
	}
}
