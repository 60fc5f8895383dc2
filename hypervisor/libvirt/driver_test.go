package libvirt

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// Fast tests on libvirt's in-process test driver. Its state is shared by all
// connections of the process, so every test uses names of its own.
const testURI = "test:///default"

func testSpec(name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{
		Name:      name,
		Type:      hypervisor.DomainQEMU,
		VCPUs:     1,
		MemoryKiB: 64 * 1024,
		Metadata: hypervisor.Metadata{
			Instance:     "instance-1",
			MachineID:    "machine-" + name,
			DesiredState: "STOPPED",
		},
	}
}

func TestOpenUnreachable(t *testing.T) {
	_, err := Open(t.Context(), "qemu+unix:///system?socket=/nonexistent/libvirt-sock", testLogger(t))
	wantErrorIs(t, "Open on a missing socket", err, hypervisor.ErrUnavailable)
	if !strings.Contains(err.Error(), "/nonexistent/libvirt-sock") {
		t.Errorf("error %q does not name the socket", err)
	}
}

func TestPing(t *testing.T) {
	d := openDriver(t, testURI)
	must(t, "Ping", d.Ping(t.Context()))
}

func TestDomainLifecycle(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-life-")

	must(t, "define", d.DefineDomain(ctx, testSpec(name)))
	st := wantState(t, d, name, hypervisor.StateShutoff)
	if st.UUID == "" || st.Name != name || st.HasManagedSave {
		t.Fatalf("status after define: %+v", st)
	}

	must(t, "start", d.Start(ctx, name))
	wantState(t, d, name, hypervisor.StateRunning)
	must(t, "start a running domain", d.Start(ctx, name))

	must(t, "pause", d.Pause(ctx, name))
	wantState(t, d, name, hypervisor.StatePaused)
	must(t, "resume", d.Resume(ctx, name))
	wantState(t, d, name, hypervisor.StateRunning)

	must(t, "managed save", d.ManagedSave(ctx, name))
	if st := wantState(t, d, name, hypervisor.StateShutoff); !st.HasManagedSave {
		t.Fatal("no managed save image after ManagedSave")
	}
	must(t, "start from managed save", d.Start(ctx, name))
	if st := wantState(t, d, name, hypervisor.StateRunning); st.HasManagedSave {
		t.Fatal("managed save image still there after restore")
	}

	must(t, "reboot", d.Reboot(ctx, name))
	must(t, "reset", d.Reset(ctx, name))
	must(t, "destroy", d.Destroy(ctx, name))
	wantState(t, d, name, hypervisor.StateShutoff)
	must(t, "destroy a stopped domain", d.Destroy(ctx, name))
	must(t, "shut down a stopped domain", d.Shutdown(ctx, name))

	must(t, "undefine", d.UndefineDomain(ctx, name))
	_, err := d.DomainStatus(ctx, name)
	wantErrorIs(t, "status after undefine", err, hypervisor.ErrNotFound)
	must(t, "undefine a missing domain", d.UndefineDomain(ctx, name))
}

func TestUndefineRemovesManagedSave(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-save-")
	must(t, "define", d.DefineDomain(ctx, testSpec(name)))
	must(t, "start", d.Start(ctx, name))
	must(t, "managed save", d.ManagedSave(ctx, name))
	must(t, "undefine", d.UndefineDomain(ctx, name))
	_, err := d.DomainStatus(ctx, name)
	wantErrorIs(t, "status after undefine", err, hypervisor.ErrNotFound)
}

func TestShutdown(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-shutdown-")
	must(t, "define", d.DefineDomain(ctx, testSpec(name)))
	must(t, "start", d.Start(ctx, name))
	must(t, "shutdown", d.Shutdown(ctx, name))
	wantState(t, d, name, hypervisor.StateShutoff)
	must(t, "undefine", d.UndefineDomain(ctx, name))
}

func TestNotFound(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-missing-")
	ops := map[string]func(context.Context, string) error{
		"Start": d.Start, "Shutdown": d.Shutdown, "Destroy": d.Destroy, "Reboot": d.Reboot,
		"Reset": d.Reset, "Pause": d.Pause, "Resume": d.Resume, "ManagedSave": d.ManagedSave,
		"RefreshPool": d.RefreshPool,
		"SetMetadata": func(ctx context.Context, name string) error {
			return d.SetMetadata(ctx, name, hypervisor.Metadata{})
		},
	}
	for op, fn := range ops {
		err := fn(ctx, name)
		wantErrorIs(t, op, err, hypervisor.ErrNotFound)
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name %s", op, err, name)
		}
	}
	_, err := d.ListPoolVolumes(ctx, name)
	wantErrorIs(t, "ListPoolVolumes", err, hypervisor.ErrNotFound)
}

func TestMetadataRoundTrip(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-md-")
	spec := testSpec(name)
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), name) })

	assertMetadata(t, d, name, spec.Metadata)

	stopping := hypervisor.Metadata{
		Instance:           "instance-1",
		MachineID:          spec.Metadata.MachineID,
		DesiredState:       "STOPPED",
		StopDeadline:       time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC),
		ForceAfterDeadline: true,
	}
	must(t, "set metadata (stopped)", d.SetMetadata(ctx, name, stopping))
	assertMetadata(t, d, name, stopping)

	must(t, "start", d.Start(ctx, name))
	running := stopping
	running.DesiredState, running.StopDeadline, running.ForceAfterDeadline = "STARTED", time.Time{}, false
	must(t, "set metadata (running)", d.SetMetadata(ctx, name, running))
	assertMetadata(t, d, name, running)

	// The persistent definition must carry it too.
	must(t, "destroy", d.Destroy(ctx, name))
	assertMetadata(t, d, name, running)
}

func assertMetadata(t *testing.T, d *Driver, name string, want hypervisor.Metadata) {
	t.Helper()
	st := mustStatus(t, d, name)
	if st.Metadata == nil {
		t.Fatalf("%s: no metadata", name)
	}
	if !sameMetadata(*st.Metadata, want) {
		t.Fatalf("%s: metadata %+v, want %+v", name, *st.Metadata, want)
	}
}

func sameMetadata(a, b hypervisor.Metadata) bool {
	return a.Instance == b.Instance && a.MachineID == b.MachineID && a.DesiredState == b.DesiredState &&
		a.StopDeadline.Equal(b.StopDeadline) && a.ForceAfterDeadline == b.ForceAfterDeadline
}

func TestForeignDomainHasNoMetadata(t *testing.T) {
	d := openDriver(t, testURI)
	// "test" is the domain the test driver starts with; cimid did not define it.
	st := mustStatus(t, d, "test")
	if st.Metadata != nil {
		t.Fatalf("foreign domain has metadata %+v", *st.Metadata)
	}
}

func TestRedefineKeepsUUID(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-uuid-")
	spec := testSpec(name)
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), name) })
	first := mustStatus(t, d, name).UUID

	spec.MemoryKiB *= 2
	spec.Metadata.DesiredState = "STARTED"
	must(t, "redefine", d.DefineDomain(ctx, spec))
	st := mustStatus(t, d, name)
	if st.UUID != first {
		t.Fatalf("UUID changed from %s to %s", first, st.UUID)
	}
	if st.Metadata == nil || st.Metadata.DesiredState != "STARTED" {
		t.Fatalf("metadata after redefine: %+v", st.Metadata)
	}
}

func TestDefineWithUUID(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-fixed-"))
	spec.UUID = "5b2e0f0e-7d1c-4f51-9a55-0d6d0c1e2f3a"
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })
	if got := mustStatus(t, d, spec.Name).UUID; got != spec.UUID {
		t.Fatalf("UUID %s, want %s", got, spec.UUID)
	}
}

func TestDefineRejectsInvalidSpec(t *testing.T) {
	d := openDriver(t, testURI)
	spec := testSpec(uniqueName("unit-bad-"))
	spec.Type = "xen"
	if err := d.DefineDomain(t.Context(), spec); err == nil {
		t.Fatal("defined a domain of type xen")
	}
}

func TestListDomains(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	a, b := uniqueName("unit-list-a-"), uniqueName("unit-list-b-")
	for _, name := range []string{a, b} {
		must(t, "define", d.DefineDomain(ctx, testSpec(name)))
		t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), name) })
	}
	must(t, "start", d.Start(ctx, b))
	t.Cleanup(func() { _ = d.Destroy(context.Background(), b) })

	list, err := d.ListDomains(ctx)
	must(t, "list", err)
	byName := map[string]hypervisor.DomainStatus{}
	for _, st := range list {
		byName[st.Name] = st
	}
	if st := byName[a]; st.State != hypervisor.StateShutoff || st.Metadata == nil {
		t.Errorf("%s listed as %+v", a, st)
	}
	if st := byName[b]; st.State != hypervisor.StateRunning || st.Metadata == nil {
		t.Errorf("%s listed as %+v", b, st)
	}
	if st, ok := byName["test"]; !ok || st.Metadata != nil {
		t.Errorf("foreign domain test listed as %+v (present: %t)", st, ok)
	}
}

func TestLifecycleEvents(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-events-")
	events := d.Events()

	steps := []struct {
		op   func() error
		want hypervisor.EventKind
	}{
		{func() error { return d.DefineDomain(ctx, testSpec(name)) }, hypervisor.EventDefined},
		{func() error { return d.Start(ctx, name) }, hypervisor.EventStarted},
		{func() error { return d.Pause(ctx, name) }, hypervisor.EventSuspended},
		{func() error { return d.Resume(ctx, name) }, hypervisor.EventResumed},
		{func() error { return d.Destroy(ctx, name) }, hypervisor.EventStopped},
		{func() error { return d.UndefineDomain(ctx, name) }, hypervisor.EventUndefined},
	}
	for _, step := range steps {
		must(t, "operation", step.op())
		waitEvent(t, events, domainEvent(name, step.want), "event "+kindName(step.want))
	}
}

func kindName(k hypervisor.EventKind) string {
	names := map[hypervisor.EventKind]string{
		hypervisor.EventDefined: "defined", hypervisor.EventUndefined: "undefined",
		hypervisor.EventStarted: "started", hypervisor.EventSuspended: "suspended",
		hypervisor.EventResumed: "resumed", hypervisor.EventStopped: "stopped",
		hypervisor.EventShutdown: "shutdown", hypervisor.EventCrashed: "crashed",
		hypervisor.EventPMSuspended: "pmsuspended",
	}
	if n, ok := names[k]; ok {
		return n
	}
	return "other"
}

// TestReconnectAfterLoss drives the reconnection machinery by declaring the
// session lost the way the close callback does.
func TestReconnectAfterLoss(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	old := d.session()

	old.closedBy.Store(int32(libvirt.CONNECT_CLOSE_REASON_ERROR))
	d.nudge()
	waitEvent(t, d.Events(), isReconnected, "reconnected event")

	if d.session() == old {
		t.Fatal("session not replaced")
	}
	must(t, "ping after reconnect", d.Ping(ctx))

	name := uniqueName("unit-reconnect-")
	must(t, "define after reconnect", d.DefineDomain(ctx, testSpec(name)))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), name) })
	waitEvent(t, d.Events(), domainEvent(name, hypervisor.EventDefined), "defined event after reconnect")
}

func TestDisconnectedCallsFailFast(t *testing.T) {
	d := openDriver(t, testURI)
	d.mu.Lock()
	s := d.current
	d.current = nil
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.current = s
		d.mu.Unlock()
	}()

	start := time.Now()
	err := d.Ping(t.Context())
	wantErrorIs(t, "Ping while disconnected", err, hypervisor.ErrUnavailable)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("Ping while disconnected took %s", elapsed)
	}
}

func TestCanceledContext(t *testing.T) {
	d := openDriver(t, testURI)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a canceled context: %v", err)
	}
	if _, err := d.ListDomains(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListDomains with a canceled context: %v", err)
	}
}

func TestClose(t *testing.T) {
	d := openDriver(t, testURI)
	must(t, "close", d.Close())
	must(t, "second close", d.Close())
	if _, ok := <-d.Events(); ok {
		t.Fatal("event channel open after Close")
	}
	wantErrorIs(t, "Ping after Close", d.Ping(t.Context()), hypervisor.ErrUnavailable)
}

func TestPools(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	name := uniqueName("unit-pool-")
	dir := t.TempDir() + "/pool/images"

	must(t, "ensure pool", d.EnsurePool(ctx, name, dir))
	must(t, "ensure pool again", d.EnsurePool(ctx, name, dir))
	if err := d.EnsurePool(ctx, name, t.TempDir()); err == nil {
		t.Fatal("EnsurePool accepted another directory for an existing pool")
	}
	must(t, "refresh", d.RefreshPool(ctx, name))
	vols, err := d.ListPoolVolumes(ctx, name)
	must(t, "list volumes", err)
	if len(vols) != 0 {
		t.Fatalf("new pool has volumes %v", vols)
	}

	vols, err = d.ListPoolVolumes(ctx, "default-pool")
	must(t, "list volumes of default-pool", err)
	if !slices.IsSortedFunc(vols, func(a, b hypervisor.PoolVolume) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatalf("volumes not sorted: %v", vols)
	}
}
