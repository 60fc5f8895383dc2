package libvirt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
	"cimid/hypervisor/testguest"
)

// Integration tests of devices, snapshots, networks and statistics on the
// host's libvirtd, with the test guest booted under it.
const (
	devicesPrefix = "cimid-test-hv2-"
	// guestTimeout bounds every wait for a console marker: under TCG on a
	// busy two-core host the guest needs several seconds to boot.
	guestTimeout = 3 * time.Minute
	guestMemKiB  = 128 * 1024
)

// openDevicesSystem opens qemu:///system and removes the domains and
// networks earlier runs of these tests left behind.
func openDevicesSystem(t *testing.T) *Driver {
	t.Helper()
	d := openDriver(t, systemURI)
	ctx := t.Context()
	doms, err := d.ListDomains(ctx)
	must(t, "list domains", err)
	for _, st := range doms {
		if strings.HasPrefix(st.Name, devicesPrefix) {
			t.Logf("removing leftover domain %s", st.Name)
			must(t, "destroy leftover", d.Destroy(ctx, st.Name))
			must(t, "undefine leftover", d.UndefineDomain(ctx, st.Name))
		}
	}
	nets, err := d.ListNetworks(ctx)
	must(t, "list networks", err)
	for _, n := range nets {
		if strings.HasPrefix(n.Name, devicesPrefix) {
			t.Logf("removing leftover network %s", n.Name)
			must(t, "undefine leftover network", d.UndefineNetwork(ctx, n.Name))
		}
	}
	return d
}

// guest is a persistent domain booting an overlay of the test guest disk.
type guest struct {
	name    string
	dir     string
	console string
	spec    hypervisor.DomainSpec
}

// defineGuest defines (without starting) a test guest domain with nics; it
// is removed when the test ends.
func defineGuest(t *testing.T, d *Driver, name string, nics ...hypervisor.NIC) *guest {
	t.Helper()
	ctx := t.Context()
	image := testguest.Build(t)
	dir := testguest.TempDir(t)
	overlay, err := testguest.Overlay(ctx, dir, image.Disk)
	must(t, "create overlay", err)
	g := &guest{name: devicesPrefix + name, dir: dir, console: filepath.Join(dir, "console.log")}
	g.spec = hypervisor.DomainSpec{
		Name:       g.name,
		Type:       hypervisor.DomainType(testguest.DomainType()),
		VCPUs:      1,
		MemoryKiB:  guestMemKiB,
		Disks:      []hypervisor.Disk{{Path: overlay, Format: "qcow2", Target: "vda"}},
		NICs:       nics,
		ConsoleLog: g.console,
		Metadata:   hypervisor.Metadata{Instance: "cimid-test", MachineID: g.name, DesiredState: "STARTED"},
	}
	must(t, "define "+g.name, d.DefineDomain(ctx, g.spec))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Destroy(ctx, g.name); err != nil {
			t.Logf("destroy %s: %v", g.name, err)
		}
		if err := d.UndefineDomain(ctx, g.name); err != nil {
			t.Logf("undefine %s: %v", g.name, err)
		}
	})
	return g
}

// bootGuest defines and starts a test guest and waits until it is READY.
func bootGuest(t *testing.T, d *Driver, name string, nics ...hypervisor.NIC) *guest {
	t.Helper()
	g := defineGuest(t, d, name, nics...)
	start := time.Now()
	must(t, "start "+g.name, d.Start(t.Context(), g.name))
	g.wait(t, testguest.MarkerReady)
	t.Logf("%s READY %v after start", g.name, time.Since(start).Round(time.Millisecond))
	return g
}

// wait waits for a console line containing marker and returns it.
func (g *guest) wait(t *testing.T, marker string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guestTimeout)
	defer cancel()
	line, err := testguest.WaitConsole(ctx, g.console, marker)
	if err != nil {
		t.Fatalf("%s: %v", g.name, err)
	}
	return line
}

// definition reads the live (flags 0) or persistent definition of domain.
func definition(t *testing.T, d *Driver, domain string, flags libvirt.DomainXMLFlags) *libvirtxml.Domain {
	t.Helper()
	var def *libvirtxml.Domain
	err := d.withDomain(t.Context(), domain, func(dom *libvirt.Domain) error {
		var err error
		def, err = readDefinition(dom, flags)
		return err
	})
	must(t, "read definition of "+domain, err)
	return def
}

func hasDisk(t *testing.T, d *Driver, domain, target string, flags libvirt.DomainXMLFlags) bool {
	t.Helper()
	return findDisk(definition(t, d, domain, flags), target) != nil
}

// qcow2Image creates an empty qcow2 image of size bytes that QEMU may open.
func qcow2Image(t *testing.T, path string, size int64) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "qemu-img", "create", "-q", "-f", "qcow2", path, fmt.Sprint(size)).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img create %s: %v: %s", path, err, out)
	}
	must(t, "chmod image", os.Chmod(path, 0o644))
}

func TestSystemDiskHotplug(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	g := bootGuest(t, d, "disk")
	data := filepath.Join(g.dir, "data.qcow2")
	qcow2Image(t, data, 16<<20)
	disk := hypervisor.Disk{Path: data, Format: "qcow2", Target: "vdb", Serial: "cimid-data"}

	attachStart := time.Now()
	timed(t, "attach disk (live)", func() error { return d.AttachDisk(ctx, g.name, disk, true) })
	g.wait(t, "TESTGUEST: DISK-ADDED vdb")
	t.Logf("guest saw vdb %v after the attach began", time.Since(attachStart).Round(time.Millisecond))
	g.wait(t, fmt.Sprintf("TESTGUEST: SIZE vdb %d", 16<<20))
	if !hasDisk(t, d, g.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatal("vdb missing from the persistent definition")
	}
	timed(t, "attach disk again", func() error { return d.AttachDisk(ctx, g.name, disk, true) })

	timed(t, "resize disk", func() error { return d.ResizeDisk(ctx, g.name, "vdb", 32<<20) })
	g.wait(t, fmt.Sprintf("TESTGUEST: SIZE vdb %d", 32<<20))
	wantErrorIs(t, "resize a missing disk", d.ResizeDisk(ctx, g.name, "vdz", 32<<20), hypervisor.ErrNotFound)

	timed(t, "detach disk (live)", func() error { return d.DetachDisk(ctx, g.name, "vdb", true) })
	if hasDisk(t, d, g.name, "vdb", 0) || hasDisk(t, d, g.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatal("vdb still defined after DetachDisk returned")
	}
	g.wait(t, "TESTGUEST: DISK-REMOVED vdb")
	wantErrorIs(t, "detach vdb again", d.DetachDisk(ctx, g.name, "vdb", true), hypervisor.ErrNotFound)

	// A disk attached to the definition only reaches the guest at its next
	// boot.
	timed(t, "attach disk (config)", func() error { return d.AttachDisk(ctx, g.name, disk, false) })
	if hasDisk(t, d, g.name, "vdb", 0) || !hasDisk(t, d, g.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatal("a persistent-only attach is not persistent-only")
	}
	timed(t, "detach disk (config)", func() error { return d.DetachDisk(ctx, g.name, "vdb", false) })
	if hasDisk(t, d, g.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatal("vdb still in the persistent definition")
	}
}

// TestSystemShareableDisk opens one raw image in two running guests: QEMU
// lets a second guest have it only when both disks are shareable, and a
// resize reaches each guest through its own domain.
func TestSystemShareableDisk(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	a := bootGuest(t, d, "shared-a")
	b := bootGuest(t, d, "shared-b")
	data := filepath.Join(a.dir, "shared.raw")
	f, err := os.Create(data)
	must(t, "create image", err)
	must(t, "size image", f.Truncate(16<<20))
	must(t, "close image", f.Close())
	must(t, "chmod image", os.Chmod(data, 0o644))
	shared := hypervisor.Disk{Path: data, Format: "raw", Target: "vdb", Shareable: true}

	must(t, "attach to "+a.name, d.AttachDisk(ctx, a.name, shared, true))
	a.wait(t, "TESTGUEST: DISK-ADDED vdb")
	exclusive := shared
	exclusive.Shareable = false
	err = d.AttachDisk(ctx, b.name, exclusive, true)
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("a guest opened without sharing an image another guest has open: %v", err)
	}
	if hasDisk(t, d, b.name, "vdb", 0) {
		t.Fatal("the refused disk is in the live definition")
	}
	if hasDisk(t, d, b.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		must(t, "drop the refused disk from the definition", d.DetachDisk(ctx, b.name, "vdb", false))
	}

	must(t, "attach to "+b.name, d.AttachDisk(ctx, b.name, shared, true))
	b.wait(t, "TESTGUEST: DISK-ADDED vdb")
	for _, g := range []*guest{a, b} {
		must(t, "resize in "+g.name, d.ResizeDisk(ctx, g.name, "vdb", 32<<20))
		g.wait(t, fmt.Sprintf("TESTGUEST: SIZE vdb %d", 32<<20))
	}

	must(t, "detach from "+b.name, d.DetachDisk(ctx, b.name, "vdb", true))
	b.wait(t, "TESTGUEST: DISK-REMOVED vdb")
	if !hasDisk(t, d, a.name, "vdb", 0) || !hasDisk(t, d, a.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatalf("%s lost the shared disk when %s let it go", a.name, b.name)
	}
	disk := findDisk(definition(t, d, a.name, 0), "vdb")
	if disk.Shareable == nil || disk.Driver == nil || disk.Driver.Cache != "none" {
		t.Fatalf("live shared disk: %+v", disk)
	}
}

// TestSystemDetachWaitsForGuest detaches a disk from a paused guest, which
// cannot acknowledge the unplug: DetachDisk must not report success, and a
// later DetachDisk must finish the job once the guest runs again.
func TestSystemDetachWaitsForGuest(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	g := bootGuest(t, d, "unplug")
	data := filepath.Join(g.dir, "data.qcow2")
	qcow2Image(t, data, 8<<20)
	must(t, "attach", d.AttachDisk(ctx, g.name, hypervisor.Disk{Path: data, Format: "qcow2", Target: "vdb"}, true))
	g.wait(t, "TESTGUEST: DISK-ADDED vdb")

	must(t, "pause", d.Pause(ctx, g.name))
	short, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	start := time.Now()
	err := d.DetachDisk(short, g.name, "vdb", true)
	t.Logf("detach from a paused guest after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("detach from a paused guest: %v, want a deadline error", err)
	}
	if !hasDisk(t, d, g.name, "vdb", 0) {
		t.Fatal("vdb left the live definition of a paused guest")
	}

	must(t, "resume", d.Resume(ctx, g.name))
	timed(t, "detach again (resumed)", func() error {
		err := d.DetachDisk(ctx, g.name, "vdb", true)
		if errors.Is(err, hypervisor.ErrNotFound) {
			return nil // the guest released it before the call
		}
		return err
	})
	g.wait(t, "TESTGUEST: DISK-REMOVED vdb")
	if hasDisk(t, d, g.name, "vdb", 0) || hasDisk(t, d, g.name, "vdb", libvirt.DOMAIN_XML_INACTIVE) {
		t.Fatal("vdb still defined")
	}
}

func TestSystemSnapshots(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	g := bootGuest(t, d, "snap")

	timed(t, "snapshot (running)", func() error {
		info, err := d.CreateSnapshot(ctx, g.name, "hot")
		if err == nil && (!info.Running || info.State != hypervisor.StateRunning) {
			return fmt.Errorf("the snapshot of a running guest says %+v", info)
		}
		return err
	})
	wantState(t, d, g.name, hypervisor.StateRunning)

	// What the agent wrote after the snapshot survives a revert.
	md := g.spec.Metadata
	md.DesiredState = "STOPPED"
	md.StopDeadline = time.Now().Add(time.Hour).Truncate(time.Second)
	must(t, "set metadata", d.SetMetadata(ctx, g.name, md))

	timed(t, "destroy", func() error { return d.Destroy(ctx, g.name) })
	timed(t, "snapshot (stopped)", func() error {
		info, err := d.CreateSnapshot(ctx, g.name, "cold")
		if err == nil && (info.Running || info.State != hypervisor.StateShutoff) {
			return fmt.Errorf("the snapshot of a shut-off guest says %+v", info)
		}
		return err
	})
	list, err := d.ListSnapshots(ctx, g.name)
	must(t, "list", err)
	if len(list) != 2 || list[0].Name != "hot" || !list[0].Running || list[1].Name != "cold" || list[1].Running {
		t.Fatalf("snapshots %+v, want hot (running) then cold (stopped)", list)
	}
	for _, s := range list {
		if time.Since(s.Created) > 10*time.Minute || time.Until(s.Created) > time.Minute {
			t.Errorf("snapshot %s created at %v", s.Name, s.Created)
		}
	}

	timed(t, "revert to hot (stopped)", func() error { return d.RevertSnapshot(ctx, g.name, "hot") })
	wantState(t, d, g.name, hypervisor.StateRunning)
	assertMetadata(t, d, g.name, md)
	timed(t, "revert to hot (running)", func() error { return d.RevertSnapshot(ctx, g.name, "hot") })
	wantState(t, d, g.name, hypervisor.StateRunning)
	timed(t, "revert to cold (running)", func() error { return d.RevertSnapshot(ctx, g.name, "cold") })
	wantState(t, d, g.name, hypervisor.StateShutoff)
	assertMetadata(t, d, g.name, md)

	// The guest still boots from its disk after all that.
	must(t, "start", d.Start(ctx, g.name))
	g.wait(t, testguest.MarkerReady)

	timed(t, "delete snapshot hot", func() error { return d.DeleteSnapshot(ctx, g.name, "hot") })
	list, err = d.ListSnapshots(ctx, g.name)
	must(t, "list", err)
	if len(list) != 1 || list[0].Name != "cold" {
		t.Fatalf("after deleting hot: %+v", list)
	}
	timed(t, "delete snapshot cold", func() error { return d.DeleteSnapshot(ctx, g.name, "cold") })
	wantErrorIs(t, "delete cold again", d.DeleteSnapshot(ctx, g.name, "cold"), hypervisor.ErrNotFound)
}

func TestSystemSnapshotRefusesRawDisk(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	g := defineGuest(t, d, "snapraw")
	raw := filepath.Join(g.dir, "data.raw")
	must(t, "create raw image", os.WriteFile(raw, make([]byte, 1<<20), 0o644))
	must(t, "attach raw disk", d.AttachDisk(ctx, g.name, hypervisor.Disk{Path: raw, Format: "raw", Target: "vdb"}, false))
	_, err := d.CreateSnapshot(ctx, g.name, "s")
	if err == nil || !strings.Contains(err.Error(), "vdb is raw") {
		t.Fatalf("snapshot with a raw disk: %v", err)
	}
	t.Logf("as expected: %v", err)
}

// freeSubnets picks n /24 subnets of 10.250.0.0/16 that neither a libvirt
// network nor a host interface uses.
func freeSubnets(t *testing.T, d *Driver, n int) []netip.Prefix {
	t.Helper()
	var used []netip.Prefix
	nets, err := d.ListNetworks(t.Context())
	must(t, "list networks", err)
	for _, nw := range nets {
		for _, s := range nw.Subnets {
			if p, err := netip.ParsePrefix(s); err == nil {
				used = append(used, p)
			}
		}
	}
	addrs, err := net.InterfaceAddrs()
	must(t, "interface addresses", err)
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p.Masked())
		}
	}
	var free []netip.Prefix
	for i := range 256 {
		third := (100 + i) % 256
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 250, byte(third), 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			free = append(free, p)
			if len(free) == n {
				return free
			}
		}
	}
	t.Fatalf("fewer than %d free /24 subnets in 10.250.0.0/16", n)
	return nil
}

// hostAddr returns the address at offset in subnet p.
func hostAddr(p netip.Prefix, offset byte) string {
	a := p.Addr().As4()
	a[3] += offset
	return netip.AddrFrom4(a).String()
}

func systemNetworkXML(t *testing.T, d *Driver, name string, flags libvirt.NetworkXMLFlags) (*libvirtxml.Network, string) {
	t.Helper()
	var def *libvirtxml.Network
	var doc string
	err := d.withNetwork(t.Context(), name, func(nw *libvirt.Network) error {
		var err error
		if doc, err = nw.GetXMLDesc(flags); err != nil {
			return err
		}
		def, err = readNetwork(nw, flags)
		return err
	})
	must(t, "read network "+name, err)
	return def, doc
}

func listedNetwork(t *testing.T, d *Driver, name string) (hypervisor.NetworkStatus, bool) {
	t.Helper()
	list, err := d.ListNetworks(t.Context())
	must(t, "list networks", err)
	i := slices.IndexFunc(list, func(n hypervisor.NetworkStatus) bool { return n.Name == name })
	if i < 0 {
		return hypervisor.NetworkStatus{}, false
	}
	return list[i], true
}

// TestSystemNetworks defines a NAT network with DHCP and boots the guest on
// it, hot-plugs a second NIC with a reserved address, and defines an
// isolated network on a bridge of a given name.
func TestSystemNetworks(t *testing.T) {
	d := openDevicesSystem(t)
	ctx := t.Context()
	subnets := freeSubnets(t, d, 2)
	nat := hypervisor.NetworkSpec{
		Name:      devicesPrefix + "nat",
		Forward:   "nat",
		Subnet:    subnets[0].String(),
		DHCPStart: hostAddr(subnets[0], 100),
		DHCPEnd:   hostAddr(subnets[0], 199),
		Metadata:  hypervisor.NetworkMetadata{Instance: "cimid-test", NetworkID: "nat-1"},
	}
	iso := hypervisor.NetworkSpec{
		Name:     devicesPrefix + "iso",
		Bridge:   "cimidhv2iso0",
		Forward:  "isolated",
		Subnet:   subnets[1].String(),
		MTU:      1400,
		Metadata: hypervisor.NetworkMetadata{Instance: "cimid-test", NetworkID: "iso-1"},
	}
	for _, name := range []string{nat.Name, iso.Name} {
		t.Cleanup(func() {
			if err := d.UndefineNetwork(context.Background(), name); err != nil {
				t.Logf("undefine network %s: %v", name, err)
			}
		})
	}

	timed(t, "define+start NAT network", func() error { return d.DefineNetwork(ctx, nat) })
	timed(t, "define NAT network again", func() error { return d.DefineNetwork(ctx, nat) })
	st, ok := listedNetwork(t, d, nat.Name)
	if !ok || !st.Active || st.Forward != "nat" || st.Bridge == "" || !slices.Equal(st.Subnets, []string{nat.Subnet}) ||
		st.Metadata == nil || *st.Metadata != nat.Metadata {
		t.Fatalf("NAT network listed as %+v (%t)", st, ok)
	}
	_, doc := systemNetworkXML(t, d, nat.Name, 0)
	if !strings.Contains(doc, "no-ping") {
		t.Errorf("running NAT network lacks the dnsmasq option no-ping:\n%s", doc)
	}

	timed(t, "define+start isolated network", func() error { return d.DefineNetwork(ctx, iso) })
	st, ok = listedNetwork(t, d, iso.Name)
	if !ok || !st.Active || st.Forward != "isolated" || st.Bridge != iso.Bridge || st.Metadata == nil || st.Metadata.NetworkID != "iso-1" {
		t.Fatalf("isolated network listed as %+v (%t)", st, ok)
	}
	// A changed spec of a running network reaches its persistent definition.
	iso.MTU = 1300
	must(t, "redefine isolated network", d.DefineNetwork(ctx, iso))
	if def, _ := systemNetworkXML(t, d, iso.Name, libvirt.NETWORK_XML_INACTIVE); def.MTU == nil || def.MTU.Size != 1300 || def.Bridge.Name != iso.Bridge {
		t.Errorf("persistent isolated network after redefinition: MTU %+v bridge %+v", def.MTU, def.Bridge)
	}

	// Boot the guest on the NAT network.
	mac := "52:54:00:4e:41:01"
	g := defineGuest(t, d, "net", hypervisor.NIC{Network: nat.Name, MAC: mac})
	bootStart := time.Now()
	must(t, "start", d.Start(ctx, g.name))
	g.wait(t, testguest.MarkerReady)
	readyAt := time.Now()
	line := g.wait(t, "TESTGUEST: NET eth0")
	t.Logf("%q %v after start, %v after READY", line, time.Since(bootStart).Round(time.Millisecond), time.Since(readyAt).Round(time.Millisecond))
	ip, ok := strings.CutPrefix(line, "TESTGUEST: NET eth0 ")
	if !ok || ip == "none" {
		t.Fatalf("no lease: %q", line)
	}
	addr, err := netip.ParsePrefix(ip)
	if err != nil || !subnets[0].Contains(addr.Addr()) || addr.Bits() != 24 {
		t.Fatalf("lease %q is not in %s", ip, nat.Subnet)
	}
	leases, err := d.DHCPLeases(ctx, nat.Name)
	must(t, "leases", err)
	i := slices.IndexFunc(leases, func(l hypervisor.Lease) bool { return l.MAC == mac })
	if i < 0 || leases[i].IP != addr.Addr().String() || leases[i].Prefix != 24 || !leases[i].Expiry.After(time.Now()) {
		t.Fatalf("leases %+v, want %s for %s", leases, addr.Addr(), mac)
	}

	// A second NIC, hot-plugged, gets its reserved address.
	second := hypervisor.NIC{Network: nat.Name, MAC: "52:54:00:4e:41:02"}
	reserved := hostAddr(subnets[0], 50)
	timed(t, "add DHCP host (live)", func() error {
		return d.AddDHCPHost(ctx, nat.Name, hypervisor.DHCPHost{MAC: second.MAC, IP: reserved, Name: "second"})
	})
	attachStart := time.Now()
	timed(t, "attach NIC (live)", func() error { return d.AttachNIC(ctx, g.name, second, true) })
	g.wait(t, "TESTGUEST: NIC-ADDED eth1")
	addedAt := time.Now()
	line = g.wait(t, "TESTGUEST: NET eth1")
	t.Logf("%q %v after the attach began, %v after NIC-ADDED", line,
		time.Since(attachStart).Round(time.Millisecond), time.Since(addedAt).Round(time.Millisecond))
	if line != "TESTGUEST: NET eth1 "+reserved+"/24" {
		t.Fatalf("second NIC: %q, want the reserved %s", line, reserved)
	}
	nics, err := d.DomainNICs(ctx, g.name)
	must(t, "DomainNICs", err)
	if len(nics) != 2 || nics[0].MAC != mac || nics[1] != (hypervisor.NIC{Network: nat.Name, MAC: second.MAC, Model: "virtio"}) {
		t.Fatalf("NICs %+v", nics)
	}
	timed(t, "detach NIC (live)", func() error { return d.DetachNIC(ctx, g.name, second.MAC, true) })
	g.wait(t, "TESTGUEST: NIC-REMOVED eth1")
	if nics, err := d.DomainNICs(ctx, g.name); err != nil || len(nics) != 1 {
		t.Fatalf("NICs after detach: %+v, %v", nics, err)
	}
	timed(t, "remove DHCP host (live)", func() error {
		return d.RemoveDHCPHost(ctx, nat.Name, hypervisor.DHCPHost{MAC: second.MAC})
	})
	if def, _ := systemNetworkXML(t, d, nat.Name, 0); len(dhcpHosts(def)) != 0 {
		t.Errorf("DHCP hosts left: %v", dhcpHosts(def))
	}

	// Tear down: the guest first, then the networks.
	must(t, "destroy guest", d.Destroy(ctx, g.name))
	timed(t, "undefine NAT network", func() error { return d.UndefineNetwork(ctx, nat.Name) })
	timed(t, "undefine isolated network", func() error { return d.UndefineNetwork(ctx, iso.Name) })
	for _, name := range []string{nat.Name, iso.Name} {
		if st, ok := listedNetwork(t, d, name); ok {
			t.Errorf("network still listed: %+v", st)
		}
	}
	must(t, "undefine a missing network", d.UndefineNetwork(ctx, nat.Name))
}

func TestSystemAllDomainStats(t *testing.T) {
	d := openDevicesSystem(t)
	g := bootGuest(t, d, "stats")
	var stats []hypervisor.DomainStats
	timed(t, "all domain stats", func() (err error) {
		stats, err = d.AllDomainStats(t.Context())
		return err
	})
	i := slices.IndexFunc(stats, func(s hypervisor.DomainStats) bool { return s.Name == g.name })
	if i < 0 {
		t.Fatalf("no statistics for %s in %+v", g.name, stats)
	}
	s := stats[i]
	t.Logf("%+v", s)
	if s.CPUTimeNs == 0 || s.VCPUs != 1 || s.MemoryKiB != guestMemKiB || s.DiskReadBytes == 0 {
		t.Fatalf("statistics %+v", s)
	}
}
