package fake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cimid/hypervisor"
)

func newDriver(t *testing.T) *Driver {
	d := New()
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func spec(name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{
		Name:      name,
		Type:      hypervisor.DomainQEMU,
		VCPUs:     2,
		MemoryKiB: 256 * 1024,
		Disks:     []hypervisor.Disk{{Path: "/images/" + name + ".qcow2", Format: "qcow2", Target: "vda"}},
		Metadata:  hypervisor.Metadata{Instance: "i", MachineID: name, DesiredState: "STARTED"},
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantState(t *testing.T, d *Driver, name string, want hypervisor.State) hypervisor.DomainStatus {
	t.Helper()
	st, err := d.DomainStatus(t.Context(), name)
	must(t, "status", err)
	if st.State != want {
		t.Fatalf("%s is %s, want %s", name, st.State, want)
	}
	return st
}

// expectEvents reads len(want) events and compares them with want.
func expectEvents(t *testing.T, d *Driver, want ...hypervisor.Event) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-d.Events():
			if got != w {
				t.Fatalf("event %d: %+v, want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d: none, want %+v", i, w)
		}
	}
}

func ev(name string, kind hypervisor.EventKind) hypervisor.Event {
	return hypervisor.Event{Domain: name, Kind: kind}
}

func TestLifecycle(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("a")))
	st := wantState(t, d, "a", hypervisor.StateShutoff)
	if st.UUID == "" || st.Metadata == nil || st.Metadata.MachineID != "a" {
		t.Fatalf("status %+v", st)
	}
	must(t, "start", d.Start(ctx, "a"))
	must(t, "start again", d.Start(ctx, "a"))
	must(t, "pause", d.Pause(ctx, "a"))
	wantState(t, d, "a", hypervisor.StatePaused)
	must(t, "resume", d.Resume(ctx, "a"))
	must(t, "managed save", d.ManagedSave(ctx, "a"))
	if st := wantState(t, d, "a", hypervisor.StateShutoff); !st.HasManagedSave {
		t.Fatal("no managed save")
	}
	must(t, "restore", d.Start(ctx, "a"))
	if st := wantState(t, d, "a", hypervisor.StateRunning); st.HasManagedSave {
		t.Fatal("managed save left after restore")
	}
	must(t, "reboot", d.Reboot(ctx, "a"))
	must(t, "reset", d.Reset(ctx, "a"))
	must(t, "shutdown", d.Shutdown(ctx, "a"))
	wantState(t, d, "a", hypervisor.StateShutoff)
	if err := d.Pause(ctx, "a"); err == nil {
		t.Error("paused a stopped domain")
	}
	must(t, "undefine", d.UndefineDomain(ctx, "a"))
	_, err := d.DomainStatus(ctx, "a")
	if !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("status after undefine: %v", err)
	}
	must(t, "undefine again", d.UndefineDomain(ctx, "a"))

	expectEvents(t, d,
		ev("a", hypervisor.EventDefined), ev("a", hypervisor.EventStarted),
		ev("a", hypervisor.EventSuspended), ev("a", hypervisor.EventResumed),
		ev("a", hypervisor.EventStopped), ev("a", hypervisor.EventStarted),
		ev("a", hypervisor.EventShutdown), ev("a", hypervisor.EventStopped),
		ev("a", hypervisor.EventUndefined))

	info, ok := d.Domain("a")
	if ok {
		t.Fatalf("undefined domain still inspectable: %+v", info)
	}
}

func TestCounters(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("c")))
	must(t, "start", d.Start(ctx, "c"))
	must(t, "reboot", d.Reboot(ctx, "c"))
	must(t, "reset", d.Reset(ctx, "c"))
	info, _ := d.Domain("c")
	if info.Boots != 1 || info.Reboots != 1 || info.Resets != 1 || len(info.LiveDisks) != 1 {
		t.Fatalf("info %+v", info)
	}
}

func TestShutdownDelayAndIgnoredACPI(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	d.SetShutdownDelay(50 * time.Millisecond)
	d.SetIgnoresACPI("deaf", true)
	for _, name := range []string{"slow", "deaf"} {
		must(t, "define", d.DefineDomain(ctx, spec(name)))
		must(t, "start", d.Start(ctx, name))
		must(t, "shutdown", d.Shutdown(ctx, name))
		wantState(t, d, name, hypervisor.StateRunning)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st := wantState(t, d, "slow", hypervisor.StateRunning); st.State == hypervisor.StateRunning; {
		if time.Now().After(deadline) {
			t.Fatal("slow guest never powered off")
		}
		time.Sleep(10 * time.Millisecond)
		st, _ = d.DomainStatus(ctx, "slow")
	}
	time.Sleep(100 * time.Millisecond)
	wantState(t, d, "deaf", hypervisor.StateRunning)
	if info, _ := d.Domain("deaf"); info.ShutdownRequests != 1 {
		t.Errorf("shutdown requests %d", info.ShutdownRequests)
	}
	must(t, "destroy", d.Destroy(ctx, "deaf"))
	wantState(t, d, "deaf", hypervisor.StateShutoff)

	// A delayed power-off does not hit the next boot.
	must(t, "start", d.Start(ctx, "slow"))
	must(t, "shutdown", d.Shutdown(ctx, "slow"))
	must(t, "destroy", d.Destroy(ctx, "slow"))
	must(t, "start again", d.Start(ctx, "slow"))
	time.Sleep(150 * time.Millisecond)
	wantState(t, d, "slow", hypervisor.StateRunning)
}

func TestGuestActions(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("g")))
	must(t, "start", d.Start(ctx, "g"))
	must(t, "guest power off", d.GuestPowerOff("g"))
	wantState(t, d, "g", hypervisor.StateShutoff)
	must(t, "start", d.Start(ctx, "g"))
	must(t, "crash", d.Crash("g"))
	wantState(t, d, "g", hypervisor.StateShutoff)
	expectEvents(t, d, ev("g", hypervisor.EventDefined), ev("g", hypervisor.EventStarted),
		ev("g", hypervisor.EventShutdown), ev("g", hypervisor.EventStopped),
		ev("g", hypervisor.EventStarted), ev("g", hypervisor.EventCrashed), ev("g", hypervisor.EventStopped))
}

func TestTransientAfterUndefine(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("t")))
	must(t, "start", d.Start(ctx, "t"))
	must(t, "undefine", d.UndefineDomain(ctx, "t"))
	wantState(t, d, "t", hypervisor.StateRunning)
	if err := d.AttachDisk(ctx, "t", hypervisor.Disk{Path: "/x", Format: "raw", Target: "vdb"}, false); err == nil {
		t.Error("persistent-only attach to a transient domain accepted")
	}
	must(t, "destroy", d.Destroy(ctx, "t"))
	if _, err := d.DomainStatus(ctx, "t"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("transient domain after destroy: %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("u")))
	expectEvents(t, d, ev("u", hypervisor.EventDefined))

	d.SetUnavailable(true)
	for what, err := range map[string]error{
		"Ping":  d.Ping(ctx),
		"Start": d.Start(ctx, "u"),
		"DefineNetwork": d.DefineNetwork(ctx, hypervisor.NetworkSpec{
			Name: "n", Forward: "nat", Subnet: "10.0.0.0/24",
		}),
	} {
		if !errors.Is(err, hypervisor.ErrUnavailable) {
			t.Errorf("%s while down: %v", what, err)
		}
	}
	d.SetUnavailable(false)
	expectEvents(t, d, hypervisor.Event{Reconnected: true})
	wantState(t, d, "u", hypervisor.StateShutoff)
	if _, ok := d.Network("n"); ok {
		t.Error("network defined while down")
	}
}

func TestFailNext(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("f")))
	boom := errors.New("boom")
	d.FailNext("Start", boom)
	d.FailNext("Start", hypervisor.ErrUnavailable)
	if err := d.Start(ctx, "f"); !errors.Is(err, boom) {
		t.Fatalf("first start: %v", err)
	}
	if err := d.Start(ctx, "f"); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("second start: %v", err)
	}
	wantState(t, d, "f", hypervisor.StateShutoff)
	must(t, "third start", d.Start(ctx, "f"))

	defer func() {
		if recover() == nil {
			t.Error("FailNext accepted an unknown method")
		}
	}()
	d.FailNext("Strat", boom)
}

func TestDevices(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("dev")))
	must(t, "start", d.Start(ctx, "dev"))
	data := hypervisor.Disk{Path: "/images/data.qcow2", Format: "qcow2", Target: "vdb"}
	must(t, "attach live", d.AttachDisk(ctx, "dev", data, true))
	must(t, "attach again", d.AttachDisk(ctx, "dev", data, true))
	if err := d.AttachDisk(ctx, "dev", hypervisor.Disk{Path: "/other", Format: "raw", Target: "vdb"}, true); err == nil {
		t.Error("another image at vdb accepted")
	}
	must(t, "resize", d.ResizeDisk(ctx, "dev", "vdb", 1<<30))
	info, _ := d.Domain("dev")
	if len(info.Spec.Disks) != 2 || len(info.LiveDisks) != 2 || info.DiskSizes["vdb"] != 1<<30 {
		t.Fatalf("after attach: %+v", info)
	}
	must(t, "detach", d.DetachDisk(ctx, "dev", "vdb", true))
	if err := d.DetachDisk(ctx, "dev", "vdb", true); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("second detach: %v", err)
	}

	must(t, "attach NIC (config)", d.AttachNIC(ctx, "dev", hypervisor.NIC{Network: "n"}, false))
	nics, err := d.DomainNICs(ctx, "dev")
	must(t, "NICs", err)
	if len(nics) != 1 || nics[0].MAC == "" || nics[0].Model != "virtio" {
		t.Fatalf("NICs %+v", nics)
	}
	if info, _ := d.Domain("dev"); len(info.LiveNICs) != 0 {
		t.Fatalf("config-only NIC reached the guest: %+v", info.LiveNICs)
	}
	must(t, "detach NIC", d.DetachNIC(ctx, "dev", nics[0].MAC, false))
	if err := d.DetachNIC(ctx, "dev", nics[0].MAC, false); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("second NIC detach: %v", err)
	}
}

// TestImageLocking follows QEMU: two running domains open one image only
// when both disks are shareable (raw), or both read-only.
func TestImageLocking(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	shared := hypervisor.Disk{Path: "/images/shared.raw", Format: "raw", Target: "vdb", Shareable: true}
	exclusive := shared
	exclusive.Shareable = false
	for _, name := range []string{"a", "b", "c"} {
		must(t, "define "+name, d.DefineDomain(ctx, spec(name)))
	}
	must(t, "start a", d.Start(ctx, "a"))
	must(t, "start b", d.Start(ctx, "b"))

	must(t, "attach exclusive to a", d.AttachDisk(ctx, "a", exclusive, true))
	if err := d.AttachDisk(ctx, "b", exclusive, true); err == nil {
		t.Fatal("a second running domain opened an image another one has")
	}
	must(t, "detach from a", d.DetachDisk(ctx, "a", "vdb", true))
	must(t, "attach shared to a", d.AttachDisk(ctx, "a", shared, true))
	must(t, "attach shared to b", d.AttachDisk(ctx, "b", shared, true))
	if err := d.AttachDisk(ctx, "c", exclusive, false); err != nil {
		t.Fatalf("a stopped domain's definition may name any image: %v", err)
	}
	if err := d.Start(ctx, "c"); err == nil {
		t.Fatal("c started with, unshared, an image two running domains share")
	}
	wantState(t, d, "c", hypervisor.StateShutoff)
	must(t, "detach from c", d.DetachDisk(ctx, "c", "vdb", false))
	must(t, "attach shared to c", d.AttachDisk(ctx, "c", shared, false))
	must(t, "start c", d.Start(ctx, "c"))

	ro := hypervisor.Disk{Path: "/images/base.raw", Format: "raw", Target: "vdc", ReadOnly: true}
	must(t, "attach read-only to a", d.AttachDisk(ctx, "a", ro, true))
	must(t, "attach read-only to b", d.AttachDisk(ctx, "b", ro, true))

	bad := spec("d")
	bad.Disks = append(bad.Disks, hypervisor.Disk{Path: "/images/x.qcow2", Format: "qcow2", Target: "vdb", Shareable: true})
	if err := d.DefineDomain(ctx, bad); err == nil {
		t.Fatal("a shareable qcow2 disk was accepted")
	}
}

func TestSnapshots(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "define", d.DefineDomain(ctx, spec("s")))
	cold, err := d.CreateSnapshot(ctx, "s", "cold")
	must(t, "snapshot (stopped)", err)
	must(t, "start", d.Start(ctx, "s"))
	hot, err := d.CreateSnapshot(ctx, "s", "hot")
	must(t, "snapshot (running)", err)
	if cold.State != hypervisor.StateShutoff || cold.Running || hot.State != hypervisor.StateRunning || !hot.Running {
		t.Errorf("snapshots as taken: cold %+v, hot %+v", cold, hot)
	}
	if _, err := d.CreateSnapshot(ctx, "s", "hot"); err == nil {
		t.Error("duplicate snapshot name accepted")
	}
	list, err := d.ListSnapshots(ctx, "s")
	must(t, "list", err)
	if len(list) != 2 || list[0].Name != "cold" || list[0].Running || !list[1].Running {
		t.Fatalf("snapshots %+v", list)
	}
	md := spec("s").Metadata
	md.DesiredState = "STOPPED"
	must(t, "set metadata", d.SetMetadata(ctx, "s", md))
	must(t, "revert cold", d.RevertSnapshot(ctx, "s", "cold"))
	st := wantState(t, d, "s", hypervisor.StateShutoff)
	if st.Metadata == nil || st.Metadata.DesiredState != "STOPPED" {
		t.Fatalf("metadata reverted: %+v", st.Metadata)
	}
	must(t, "revert hot", d.RevertSnapshot(ctx, "s", "hot"))
	wantState(t, d, "s", hypervisor.StateRunning)
	must(t, "delete", d.DeleteSnapshot(ctx, "s", "cold"))
	if err := d.DeleteSnapshot(ctx, "s", "cold"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}

	raw := spec("r")
	raw.Disks[0].Format = "raw"
	must(t, "define raw", d.DefineDomain(ctx, raw))
	if _, err := d.CreateSnapshot(ctx, "r", "x"); err == nil {
		t.Error("snapshot of a raw disk accepted")
	}
}

func TestNetworks(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	nspec := hypervisor.NetworkSpec{
		Name: "net", Forward: "nat", Subnet: "10.1.2.0/24", DHCPStart: "10.1.2.10", DHCPEnd: "10.1.2.20",
		Metadata: hypervisor.NetworkMetadata{Instance: "i", NetworkID: "n1"},
	}
	if err := d.DefineNetwork(ctx, hypervisor.NetworkSpec{Name: "bad", Forward: "nat", Subnet: "10.1.2.3/24"}); err == nil {
		t.Error("subnet with host bits accepted")
	}

	withNIC := spec("vm")
	withNIC.NICs = []hypervisor.NIC{{Network: "net", MAC: "52:54:00:00:00:01"}}
	must(t, "define domain", d.DefineDomain(ctx, withNIC))
	if err := d.Start(ctx, "vm"); err == nil {
		t.Error("started a domain whose network does not exist")
	}
	must(t, "define network", d.DefineNetwork(ctx, nspec))
	must(t, "start domain", d.Start(ctx, "vm"))

	list, err := d.ListNetworks(ctx)
	must(t, "list", err)
	if len(list) != 1 || !list[0].Active || list[0].Bridge == "" || list[0].Metadata == nil || list[0].Metadata.NetworkID != "n1" {
		t.Fatalf("networks %+v", list)
	}
	lease := hypervisor.Lease{MAC: "52:54:00:00:00:01", IP: "10.1.2.10", Prefix: 24, Expiry: time.Now().Add(time.Hour)}
	must(t, "set leases", d.SetLeases("net", []hypervisor.Lease{lease}))
	leases, err := d.DHCPLeases(ctx, "net")
	must(t, "leases", err)
	if len(leases) != 1 || leases[0] != lease {
		t.Fatalf("leases %+v", leases)
	}

	host := hypervisor.DHCPHost{MAC: "52:54:00:00:00:02", IP: "10.1.2.5"}
	must(t, "add host", d.AddDHCPHost(ctx, "net", host))
	must(t, "add host again", d.AddDHCPHost(ctx, "net", host))
	if err := d.AddDHCPHost(ctx, "net", hypervisor.DHCPHost{MAC: host.MAC, IP: "10.1.2.6"}); err == nil {
		t.Error("second address for one MAC accepted")
	}
	must(t, "remove host", d.RemoveDHCPHost(ctx, "net", host))
	must(t, "remove host again", d.RemoveDHCPHost(ctx, "net", host))
	if info, _ := d.Network("net"); len(info.Spec.DHCPHosts) != 0 || !info.Autostart {
		t.Fatalf("network %+v", info)
	}

	must(t, "undefine", d.UndefineNetwork(ctx, "net"))
	must(t, "undefine again", d.UndefineNetwork(ctx, "net"))
	if _, err := d.DHCPLeases(ctx, "net"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("leases of a missing network: %v", err)
	}
}

func TestPools(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "pool", "images")
	must(t, "ensure", d.EnsurePool(ctx, "p", dir))
	must(t, "ensure again", d.EnsurePool(ctx, "p", dir))
	if err := d.EnsurePool(ctx, "p", t.TempDir()); err == nil {
		t.Error("another directory accepted for an existing pool")
	}
	must(t, "write", os.WriteFile(filepath.Join(dir, "b.qcow2"), nil, 0o644))
	must(t, "write", os.WriteFile(filepath.Join(dir, "a.raw"), nil, 0o644))
	must(t, "mkdir", os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(t, "refresh", d.RefreshPool(ctx, "p"))
	vols, err := d.ListPoolVolumes(ctx, "p")
	must(t, "list", err)
	if len(vols) != 2 || vols[0].Name != "a.raw" || vols[1].Path != filepath.Join(dir, "b.qcow2") {
		t.Fatalf("volumes %+v", vols)
	}
	if _, err := d.ListPoolVolumes(ctx, "nope"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("missing pool: %v", err)
	}
}

func TestStats(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	for _, name := range []string{"b", "a", "off"} {
		must(t, "define", d.DefineDomain(ctx, spec(name)))
	}
	must(t, "start", d.Start(ctx, "a"))
	must(t, "start", d.Start(ctx, "b"))
	d.SetStats("b", hypervisor.DomainStats{CPUTimeNs: 42, NetRxBytes: 7})
	stats, err := d.AllDomainStats(ctx)
	must(t, "stats", err)
	if len(stats) != 2 || stats[0].Name != "a" || stats[0].CPUTimeNs == 0 || stats[0].VCPUs != 2 ||
		stats[1] != (hypervisor.DomainStats{Name: "b", CPUTimeNs: 42, NetRxBytes: 7}) {
		t.Fatalf("stats %+v", stats)
	}
}

func TestForeignDomain(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	must(t, "add foreign", d.AddForeignDomain(spec("x")))
	st := wantState(t, d, "x", hypervisor.StateShutoff)
	if st.Metadata != nil {
		t.Fatalf("foreign domain has metadata %+v", st.Metadata)
	}
	must(t, "adopt", d.SetMetadata(ctx, "x", hypervisor.Metadata{Instance: "i"}))
	if st := wantState(t, d, "x", hypervisor.StateShutoff); st.Metadata == nil {
		t.Fatal("no metadata after SetMetadata")
	}
}

func TestConcurrentUse(t *testing.T) {
	d := newDriver(t)
	ctx := t.Context()
	go func() {
		for range d.Events() {
		}
	}()
	var wg sync.WaitGroup
	for i := range 8 {
		name := string(rune('a' + i))
		must(t, "define", d.DefineDomain(ctx, spec(name)))
		wg.Go(func() {
			for range 100 {
				_ = d.Start(ctx, name)
				_, _ = d.ListDomains(ctx)
				_, _ = d.AllDomainStats(ctx)
				_ = d.Destroy(ctx, name)
			}
		})
	}
	wg.Wait()
}

func TestCloseAndContext(t *testing.T) {
	d := New()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Ping(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a canceled context: %v", err)
	}
	must(t, "close", d.Close())
	must(t, "close again", d.Close())
	if _, ok := <-d.Events(); ok {
		t.Fatal("events open after Close")
	}
	if err := d.Ping(t.Context()); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("Ping after Close: %v", err)
	}
}
