package libvirt

import (
	"context"
	"strings"
	"testing"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// The test driver of libvirt 9.0 cannot attach, detach or resize devices;
// those paths run on the real daemon in system_devices_test.go. Here run
// what is decided before libvirt is asked.

func TestDomainNICs(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-nics-"))
	spec.NICs = []hypervisor.NIC{
		{Network: "default", MAC: "52:54:00:12:34:56"},
		{Network: "default", Model: "e1000"},
	}
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })

	nics, err := d.DomainNICs(ctx, spec.Name)
	must(t, "DomainNICs", err)
	if len(nics) != 2 {
		t.Fatalf("NICs %+v, want 2", nics)
	}
	if nics[0] != (hypervisor.NIC{Network: "default", MAC: "52:54:00:12:34:56", Model: "virtio"}) {
		t.Errorf("first NIC %+v", nics[0])
	}
	if nics[1].Network != "default" || nics[1].Model != "e1000" || nics[1].MAC == "" {
		t.Errorf("second NIC %+v: want a generated MAC", nics[1])
	}

	_, err = d.DomainNICs(ctx, uniqueName("unit-missing-"))
	wantErrorIs(t, "DomainNICs of a missing domain", err, hypervisor.ErrNotFound)
}

func TestDetachMissingDevice(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-detach-"))
	spec.Disks = []hypervisor.Disk{{Path: "/images/root.qcow2", Format: "qcow2", Target: "vda"}}
	spec.NICs = []hypervisor.NIC{{Network: "default", MAC: "52:54:00:00:00:01"}}
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })

	err := d.DetachDisk(ctx, spec.Name, "vdz", true)
	wantErrorIs(t, "DetachDisk of a missing target", err, hypervisor.ErrNotFound)
	if !strings.Contains(err.Error(), "vdz") {
		t.Errorf("error %q does not name the target", err)
	}
	err = d.DetachNIC(ctx, spec.Name, "52:54:00:00:00:02", false)
	wantErrorIs(t, "DetachNIC of a missing MAC", err, hypervisor.ErrNotFound)
	err = d.DetachDisk(ctx, uniqueName("unit-missing-"), "vda", false)
	wantErrorIs(t, "DetachDisk on a missing domain", err, hypervisor.ErrNotFound)
}

func TestAttachRejectsBadDevices(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-attach-"))
	spec.Disks = []hypervisor.Disk{{Path: "/images/root.qcow2", Format: "qcow2", Target: "vda"}}
	spec.NICs = []hypervisor.NIC{{Network: "default", MAC: "52:54:00:00:00:01"}}
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })

	cases := map[string]error{
		"disk without target": d.AttachDisk(ctx, spec.Name, hypervisor.Disk{Path: "/x.qcow2", Format: "qcow2"}, false),
		"disk without format": d.AttachDisk(ctx, spec.Name, hypervisor.Disk{Path: "/x.qcow2", Target: "vdb"}, false),
		"other image at vda":  d.AttachDisk(ctx, spec.Name, hypervisor.Disk{Path: "/other.qcow2", Format: "qcow2", Target: "vda"}, false),
		"NIC without network": d.AttachNIC(ctx, spec.Name, hypervisor.NIC{}, false),
		"NIC with a bad MAC":  d.AttachNIC(ctx, spec.Name, hypervisor.NIC{Network: "default", MAC: "52:54"}, false),
		"MAC on another net":  d.AttachNIC(ctx, spec.Name, hypervisor.NIC{Network: "other", MAC: "52:54:00:00:00:01"}, false),
	}
	for what, err := range cases {
		if err == nil {
			t.Errorf("%s: accepted", what)
		} else if !strings.Contains(err.Error(), spec.Name) {
			t.Errorf("%s: error %q does not name the domain", what, err)
		}
	}
	// Attaching what the definition already holds asks libvirt nothing.
	must(t, "attach the same disk again", d.AttachDisk(ctx, spec.Name, spec.Disks[0], false))
	must(t, "attach the same NIC again", d.AttachNIC(ctx, spec.Name, hypervisor.NIC{Network: "default", MAC: "52:54:00:00:00:01"}, false))

	err := d.ResizeDisk(ctx, spec.Name, "vda", 1<<30)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("ResizeDisk of a stopped domain: %v", err)
	}
}

func TestShareableDiskXML(t *testing.T) {
	shared := hypervisor.Disk{Path: "/images/shared.raw", Format: "raw", Target: "vdb", Shareable: true}
	for what, bad := range map[string]hypervisor.Disk{
		"qcow2": {Path: "/images/shared.qcow2", Format: "qcow2", Target: "vdb", Shareable: true},
		"cdrom": {Path: "/images/seed.iso", Format: "raw", Target: "hdc", Device: "cdrom", Shareable: true},
	} {
		if _, err := diskXML(bad); err == nil || !strings.Contains(err.Error(), "raw") {
			t.Errorf("shareable %s disk: %v", what, err)
		}
	}

	// libvirt keeps what a shareable disk needs in the definition.
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-shareable-"))
	spec.Disks = []hypervisor.Disk{{Path: "/images/root.qcow2", Format: "qcow2", Target: "vda"}, shared}
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })
	var def *libvirtxml.Domain
	err := d.withDomain(ctx, spec.Name, func(dom *libvirt.Domain) (err error) {
		def, err = readDefinition(dom, libvirt.DOMAIN_XML_INACTIVE)
		return err
	})
	must(t, "read the definition", err)
	disk := findDisk(def, "vdb")
	if disk == nil || disk.Shareable == nil || disk.Driver == nil || disk.Driver.Cache != "none" || disk.Driver.Type != "raw" {
		t.Fatalf("shareable disk as libvirt defined it: %+v", disk)
	}
	if root := findDisk(def, "vda"); root == nil || root.Shareable != nil || root.Driver.Cache != "" {
		t.Fatalf("the boot disk became shareable: %+v", root)
	}

	bad := spec
	bad.Name = uniqueName("unit-shareable-qcow2-")
	bad.Disks = []hypervisor.Disk{{Path: "/images/shared.qcow2", Format: "qcow2", Target: "vdb", Shareable: true}}
	if err := d.DefineDomain(ctx, bad); err == nil {
		_ = d.UndefineDomain(context.Background(), bad.Name)
		t.Fatal("a domain with a shareable qcow2 disk was defined")
	}
}

func TestNormalMAC(t *testing.T) {
	got, err := normalMAC("52:54:00:AB:CD:EF")
	if err != nil || got != "52:54:00:ab:cd:ef" {
		t.Errorf("normalMAC(upper case) = %q, %v", got, err)
	}
	a, err1 := normalMAC("")
	b, err2 := normalMAC("")
	if err1 != nil || err2 != nil || !strings.HasPrefix(a, "52:54:00:") || len(a) != 17 || a == b {
		t.Errorf("generated %q and %q (%v, %v)", a, b, err1, err2)
	}
	for _, bad := range []string{"52:54:00", "00:00:00:00:00:00:00:00", "hello"} {
		if _, err := normalMAC(bad); err == nil {
			t.Errorf("normalMAC(%q) accepted", bad)
		}
	}
}

func TestCheckInternalSnapshot(t *testing.T) {
	def := func(disks ...libvirtxml.DomainDisk) *libvirtxml.Domain {
		return &libvirtxml.Domain{Devices: &libvirtxml.DomainDeviceList{Disks: disks}}
	}
	disk := func(d hypervisor.Disk) libvirtxml.DomainDisk {
		x, err := diskXML(d)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	qcow := disk(hypervisor.Disk{Path: "/a.qcow2", Format: "qcow2", Target: "vda"})
	raw := disk(hypervisor.Disk{Path: "/b.raw", Format: "raw", Target: "vdb"})
	iso := disk(hypervisor.Disk{Path: "/seed.iso", Format: "raw", Target: "hdc", Device: "cdrom"})
	roRaw := disk(hypervisor.Disk{Path: "/c.raw", Format: "raw", Target: "vdc", ReadOnly: true})

	if err := checkInternalSnapshot(def(qcow, iso, roRaw)); err != nil {
		t.Errorf("qcow2 disk with a read-only raw disk and a CD-ROM: %v", err)
	}
	err := checkInternalSnapshot(def(qcow, raw))
	if err == nil || !strings.Contains(err.Error(), "vdb is raw") {
		t.Errorf("writable raw disk: %v", err)
	}
}

func TestSnapshots(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := testSpec(uniqueName("unit-snap-"))
	spec.Disks = []hypervisor.Disk{{Path: "/images/root.qcow2", Format: "qcow2", Target: "vda"}}
	must(t, "define", d.DefineDomain(ctx, spec))
	t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), spec.Name) })

	cold, err := d.CreateSnapshot(ctx, spec.Name, "cold")
	must(t, "snapshot (stopped)", err)
	must(t, "start", d.Start(ctx, spec.Name))
	hot, err := d.CreateSnapshot(ctx, spec.Name, "hot")
	must(t, "snapshot (running)", err)
	if cold.Name != "cold" || cold.State != hypervisor.StateShutoff || cold.Running || cold.Created.IsZero() ||
		hot.State != hypervisor.StateRunning || !hot.Running {
		t.Errorf("snapshots as taken: cold %+v, hot %+v", cold, hot)
	}
	if _, err := d.CreateSnapshot(ctx, spec.Name, "hot"); err == nil {
		t.Error("a second snapshot called hot was created")
	}

	list, err := d.ListSnapshots(ctx, spec.Name)
	must(t, "list", err)
	if len(list) != 2 {
		t.Fatalf("snapshots %+v, want cold and hot", list)
	}
	byName := map[string]hypervisor.SnapshotInfo{}
	for _, s := range list {
		byName[s.Name] = s
		if s.Created.IsZero() {
			t.Errorf("snapshot %s has no creation time", s.Name)
		}
	}
	if byName["cold"].Running || !byName["hot"].Running {
		t.Errorf("snapshots %+v: want cold stopped and hot running", list)
	}

	// The metadata the domain has now survives a revert.
	md := spec.Metadata
	md.DesiredState = "STARTED"
	must(t, "set metadata", d.SetMetadata(ctx, spec.Name, md))
	must(t, "revert to cold", d.RevertSnapshot(ctx, spec.Name, "cold"))
	wantState(t, d, spec.Name, hypervisor.StateShutoff)
	assertMetadata(t, d, spec.Name, md)
	must(t, "revert to hot", d.RevertSnapshot(ctx, spec.Name, "hot"))
	wantState(t, d, spec.Name, hypervisor.StateRunning)
	assertMetadata(t, d, spec.Name, md)

	must(t, "delete cold", d.DeleteSnapshot(ctx, spec.Name, "cold"))
	wantErrorIs(t, "delete cold again", d.DeleteSnapshot(ctx, spec.Name, "cold"), hypervisor.ErrNotFound)
	wantErrorIs(t, "revert to cold", d.RevertSnapshot(ctx, spec.Name, "cold"), hypervisor.ErrNotFound)
	list, err = d.ListSnapshots(ctx, spec.Name)
	must(t, "list", err)
	if len(list) != 1 || list[0].Name != "hot" {
		t.Fatalf("snapshots after deleting cold: %+v", list)
	}
	_, err = d.ListSnapshots(ctx, uniqueName("unit-missing-"))
	wantErrorIs(t, "ListSnapshots of a missing domain", err, hypervisor.ErrNotFound)
}

func TestAllDomainStatsTestDriver(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	running, stopped := uniqueName("unit-stats-a-"), uniqueName("unit-stats-b-")
	for _, name := range []string{running, stopped} {
		must(t, "define", d.DefineDomain(ctx, testSpec(name)))
		t.Cleanup(func() { _ = d.UndefineDomain(context.Background(), name) })
	}
	must(t, "start", d.Start(ctx, running))
	t.Cleanup(func() { _ = d.Destroy(context.Background(), running) })

	stats, err := d.AllDomainStats(ctx)
	must(t, "AllDomainStats", err)
	names := map[string]bool{}
	for _, s := range stats {
		names[s.Name] = true
	}
	if !names[running] || names[stopped] {
		t.Fatalf("stats for %v: want %s and not %s", names, running, stopped)
	}
}
