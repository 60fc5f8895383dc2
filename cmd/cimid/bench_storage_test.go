package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor"
	"cimid/hypervisor/libvirt"
	"cimid/hypervisor/qemuimg"
	"cimid/hypervisor/testguest"

	rawlibvirt "libvirt.org/go/libvirt"
)

// storageRuns is how many measured runs each storage row takes.
const storageRuns = 20

// BenchmarkStorage measures volume creation, capture and snapshot through
// the API against the same work done with qemu-img and with libvirt's own
// API directly.
func BenchmarkStorage(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root and libvirtd (make bench prepares the host)")
	}
	benchLock(b)
	ctx := context.Background()
	drv, err := libvirt.Open(ctx, "qemu:///system", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatalf("libvirt: %v", err)
	}
	b.Cleanup(func() { drv.Close() })
	go func() {
		for range drv.Events() {
		}
	}()
	benchRemoveLeftovers(b, drv)
	dir := benchStateDir(b)
	var instance string
	b.Cleanup(func() { benchRemoveInstance(drv, instance) })
	d := benchStartDaemon(b, dir)
	instance = strings.TrimPrefix(d.getJSON("cloudEntryPoint")["name"].(string), "cimid-")

	// A 1 GiB disk, half of it random data.
	work := filepath.Join(dir, "bench-storage")
	if err := os.MkdirAll(work, 0o711); err != nil {
		b.Fatal(err)
	}
	disk := filepath.Join(work, "disk.raw")
	writeHalfRandom(b, disk, 1<<30)
	image := d.createAndWait("machineImages", map[string]any{"name": "1g", "imageLocation": "file://" + disk})
	config := d.createAndWait("machineConfigs", map[string]any{"name": "1g", "cpu": 1, "memory": benchMemoryKiB})
	machine := d.createAndWait("machines", map[string]any{"name": "1g", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"href": config}, "machineImage": map[string]any{"href": image},
		"networkInterfaces": []any{}, "initialState": "STOPPED"}})
	imageFile := filepath.Join(dir, "pool", "image-"+lastSegment(image)+".qcow2")
	overlay := filepath.Join(dir, "pool", "machine-"+lastSegment(machine)+"-disk0.qcow2")

	// The baseline's own domain over its own overlay, for snapshots.
	baseOverlay := filepath.Join(work, "base-overlay.qcow2")
	if err := qemuimg.CreateOverlay(ctx, baseOverlay, imageFile, "qcow2", 0); err != nil {
		b.Fatal(err)
	}
	baseDomain := benchDomainPrefix + "storage"
	if err := drv.DefineDomain(ctx, hypervisor.DomainSpec{Name: baseDomain, Type: hypervisor.DomainType(testguest.DomainType()),
		VCPUs: 1, MemoryKiB: benchMemoryKiB, Disks: []hypervisor.Disk{{Path: baseOverlay, Format: "qcow2", Target: "vda"}}}); err != nil {
		b.Fatal(err)
	}

	// A client holding the Machine has its operations: they are read once.
	captureOp, snapshotOp := d.operationHref(machine, "capture"), d.operationHref(machine, "snapshot")
	conn, err := rawlibvirt.NewConnect("qemu:///system")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	rows := []*benchRow{
		{name: "volume create 10GiB", target: 1.25},
		{name: "capture of a machine with a 1GiB disk", target: 1.25},
		{name: "snapshot of a stopped machine with a 1GiB disk", target: 1.25},
	}
	for i := 0; i <= storageRuns; i++ {
		record := i > 0
		measure := func(row int, ours, base func()) {
			var o, bs time.Duration
			if i%2 == 0 {
				o, bs = timeIt(ours), timeIt(base)
			} else {
				bs, o = timeIt(base), timeIt(ours)
			}
			if record {
				rows[row].ours = append(rows[row].ours, o)
				rows[row].base = append(rows[row].base, bs)
			}
		}
		var vol, captured, snapshot string
		baseVol := filepath.Join(work, fmt.Sprintf("vol-%d.qcow2", i))
		measure(0, func() {
			vol = d.createAndWait("volumes", map[string]any{"name": "v", "volumeTemplate": map[string]any{
				"volumeConfig": map[string]any{"capacity": 10 << 20}}})
		}, func() {
			if err := qemuimg.Create(ctx, baseVol, "qcow2", 10<<30); err != nil {
				b.Fatal(err)
			}
		})
		baseCapture := filepath.Join(work, fmt.Sprintf("capture-%d.qcow2", i))
		measure(1, func() {
			captured = d.machineImageOp(captureOp, machine)
		}, func() {
			if err := qemuimg.Convert(ctx, overlay, "qcow2", baseCapture, "qcow2", nil); err != nil {
				b.Fatal(err)
			}
		})
		measure(2, func() {
			snapshot = d.machineImageOp(snapshotOp, machine)
		}, func() {
			if err := rawSnapshot(conn, baseDomain, fmt.Sprintf("s%d", i)); err != nil {
				b.Fatal(err)
			}
		})
		// clean up outside the measured time
		for _, uri := range []string{vol, captured, snapshot} {
			d.change("DELETE "+uri, http.MethodDelete, uri, nil)
		}
		drv.DeleteSnapshot(ctx, baseDomain, fmt.Sprintf("s%d", i))
		os.Remove(baseVol)
		os.Remove(baseCapture)
	}
	drv.UndefineDomain(ctx, baseDomain)
	for _, r := range rows {
		fmt.Println(r.line())
	}
}

// operationHref reads the href of one of a Machine's operations.
func (d *benchDaemon) operationHref(machine, op string) string {
	d.tb.Helper()
	for _, o := range d.getJSON(machine)["operations"].([]any) {
		if m := o.(map[string]any); m["rel"] == "http://schemas.dmtf.org/cimi/1/action/"+op {
			return m["href"].(string)
		}
	}
	d.fatalf("the machine offers no %s", op)
	return ""
}

// machineImageOp POSTs a MachineImageCreate naming machine to its capture
// or snapshot operation href, waits for the Job and returns the new image.
func (d *benchDaemon) machineImageOp(href, machine string) string {
	d.tb.Helper()
	return d.createAndWait(href, map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineImageCreate",
		"name": path.Base(href), "imageLocation": machine})
}

// rawSnapshot takes an internal snapshot with libvirt's own API, as virsh
// snapshot-create-as does.
func rawSnapshot(conn *rawlibvirt.Connect, domain, name string) error {
	dom, err := conn.LookupDomainByName(domain)
	if err != nil {
		return err
	}
	defer dom.Free()
	snap, err := dom.CreateSnapshotXML("<domainsnapshot><name>"+name+"</name></domainsnapshot>", 0)
	if err != nil {
		return err
	}
	return snap.Free()
}

// writeHalfRandom writes a raw disk of size bytes whose first half is
// random and second half zeros (sparse).
func writeHalfRandom(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for written := int64(0); written < size/2; written += int64(len(buf)) {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	os.Chmod(path, 0o644)
	_ = exec.Command("sync").Run()
}
