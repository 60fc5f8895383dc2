package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/qemuimg"
	"cimid/hypervisor/testguest"
	"cimid/ovf"
)

// The tests in this file import OVF packages built around the test guest's
// disk into Systems, boot their Machines, export them and import the
// exports again; and they check that hostile packages are refused with
// nothing left behind.

const ovfNS = "http://schemas.dmtf.org/cimi/1"

// ovfFixture makes packages around the test guest's disk.
type ovfFixture struct {
	t        *testing.T
	dir      string
	guest    string // the guest's qcow2 disk
	vmdk     string // the same disk as a streamOptimized VMDK
	vmdkSize int64
	capacity int64 // its virtual size
}

func newOVFFixture(t *testing.T) *ovfFixture {
	t.Helper()
	g := testguest.Build(t)
	ctx := context.Background()
	f := &ovfFixture{t: t, dir: t.TempDir(), guest: g.Disk}
	f.vmdk = filepath.Join(f.dir, "guest.vmdk")
	if err := qemuimg.Convert(ctx, g.Disk, qemuimg.FormatQCOW2, f.vmdk, qemuimg.FormatVMDK, nil); err != nil {
		t.Fatal(err)
	}
	info, err := qemuimg.Info(ctx, g.Disk)
	if err != nil {
		t.Fatal(err)
	}
	f.capacity = info.VirtualSize
	f.vmdkSize = fileSize(t, f.vmdk)
	return f
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// spec describes one test guest with its disk stored as href.
func (f *ovfFixture) spec(name, href string, size int64) ovf.Spec {
	return ovf.Spec{Name: name, Description: "the test guest", Systems: []ovf.SystemSpec{{
		Name: name, Description: "the test guest", CPUs: 1, MemoryBytes: 160 << 20, OSType: "otherLinux64Guest",
		Disks: []ovf.DiskSpec{{Href: href, Size: size, Capacity: f.capacity}},
		NICs:  []ovf.NICSpec{{Network: "VM Network", Model: "virtio"}},
	}}}
}

// onDisk is an OVA member read from a file.
func onDisk(t *testing.T, name, path string) ovf.OVAFile {
	return ovf.OVAFile{Name: name, Size: fileSize(t, path), Open: func() (io.ReadCloser, error) { return os.Open(path) }}
}

// writeOVA encodes spec and writes an OVA at name below the fixture's
// directory with files after the descriptor and manifest.
func (f *ovfFixture) writeOVA(name string, spec ovf.Spec, files ...ovf.OVAFile) string {
	f.t.Helper()
	desc, err := ovf.Encode(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.writeOVARaw(name, desc, files...)
}

func (f *ovfFixture) writeOVARaw(name string, desc []byte, files ...ovf.OVAFile) string {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	out, err := os.Create(path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer out.Close()
	ova := ovf.OVA{DescriptorName: strings.TrimSuffix(name, ".ova") + ".ovf", Descriptor: desc, Files: files}
	if err := ova.Write(context.Background(), out); err != nil {
		f.t.Fatal(err)
	}
	return path
}

// guestOVA is the well-formed package of the test guest.
func (f *ovfFixture) guestOVA(name string) string {
	return f.writeOVA(name+".ova", f.spec(name, "disk1.vmdk", f.vmdkSize), onDisk(f.t, "disk1.vmdk", f.vmdk))
}

// tarMember is one member of a hand-made archive.
type tarMember struct {
	name string
	data []byte
	// size, when not 0, is the size the header declares.
	size int64
}

// writeTar writes members as they are, in order, without the checks of
// ovf.OVA.
func (f *ovfFixture) writeTar(name string, members ...tarMember) string {
	f.t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		size := int64(len(m.data))
		if m.size != 0 {
			size = m.size
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Size: size, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
			f.t.Fatal(err)
		}
		if _, err := tw.Write(m.data); err != nil && m.size == 0 {
			f.t.Fatal(err)
		}
	}
	tw.Flush()
	if members[len(members)-1].size == 0 {
		tw.Close()
	}
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return path
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return fmt.Sprintf("%x", s)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// importSystem imports source and returns the System's URI once its Job
// succeeded, with the Job.
func (d *daemon) importSystem(source string) (string, map[string]any) {
	d.t.Helper()
	r := d.postJSON("systems/import", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/import", "source": source})
	if r.Status != http.StatusAccepted || r.Header.Get("CIMI-Job-URI") == "" || r.Header.Get("Location") == "" {
		d.t.Fatalf("import %s: %d %s", source, r.Status, r.Body)
	}
	j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 5*time.Minute)
	if j["state"] != "SUCCESS" || j["progress"].(float64) != 100 {
		d.t.Fatalf("import %s: job %v", source, j)
	}
	return r.Header.Get("Location"), j
}

// refusedImport imports a package that must be refused: at once with 400,
// or by a failed Job; the error must name every one of words.
func (d *daemon) refusedImport(source string, words ...string) string {
	d.t.Helper()
	r := d.postJSON("systems/import", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/import", "source": source})
	var msg string
	switch r.Status {
	case http.StatusBadRequest:
		msg, _ = r.JSON(d.t)["statusMessage"].(string)
	case http.StatusAccepted:
		j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 3*time.Minute)
		if j["state"] != "FAILED" {
			d.t.Fatalf("import of %s: job %v, want FAILED", filepath.Base(source), j)
		}
		msg, _ = j["statusMessage"].(string)
		if r := d.get(r.Header.Get("Location")); r.Status != http.StatusNotFound {
			d.t.Fatalf("the System of a failed import is still there: %d %s", r.Status, r.Body)
		}
	default:
		d.t.Fatalf("import of %s: %d %s", filepath.Base(source), r.Status, r.Body)
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			d.t.Fatalf("import of %s refused with %q, which does not say %q", filepath.Base(source), msg, w)
		}
	}
	d.nothingImported(filepath.Base(source))
	d.t.Logf("%s refused (%d): %s", filepath.Base(source), r.Status, msg)
	return msg
}

// nothingImported checks that no System, Machine, domain or pool file
// exists.
func (d *daemon) nothingImported(what string) {
	d.t.Helper()
	for _, c := range []string{"systems", "machines"} {
		if n := d.get(c).JSON(d.t)["count"].(float64); n != 0 {
			d.t.Fatalf("after %s: %v %s left", what, n, c)
		}
	}
	entries, err := os.ReadDir(filepath.Join(d.stateDir, "pool"))
	if err != nil {
		d.t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		d.t.Fatalf("after %s: files left in the pool: %v", what, names)
	}
	prefix := "cimid-" + d.instance() + "-"
	if out, err := virsh("list", "--all", "--name"); err == nil {
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, prefix) {
				d.t.Fatalf("after %s: domain %s left", what, n)
			}
		}
	}
}

// members lists the hrefs of a collection's members under key, following
// the ref attribute of each entry when one is named.
func (d *daemon) memberHrefs(collection, key, ref string) []string {
	d.t.Helper()
	c := d.get(collection).JSON(d.t)
	var out []string
	list, _ := c[key].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		if ref != "" {
			out = append(out, m[ref].(map[string]any)["href"].(string))
		} else {
			out = append(out, m["id"].(string))
		}
	}
	return out
}

// systemMachine returns the only Machine of a System.
func (d *daemon) systemMachine(system string) string {
	d.t.Helper()
	ms := d.memberHrefs(system+"/machines", "systemMachines", "machine")
	if len(ms) != 1 {
		d.t.Fatalf("System %s has Machines %v, want one", system, ms)
	}
	return ms[0]
}

// systemAct runs a System action and waits for its Job.
func (d *daemon) systemAct(system, name string, params map[string]any) map[string]any {
	d.t.Helper()
	body := map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/" + name}
	for k, v := range params {
		body[k] = v
	}
	r := d.postJSON(system+"/"+name, body)
	if r.Status != http.StatusAccepted {
		d.t.Fatalf("%s %s: %d %s", name, system, r.Status, r.Body)
	}
	j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 5*time.Minute)
	if j["state"] != "SUCCESS" {
		d.t.Fatalf("%s %s: job %v", name, system, j)
	}
	return j
}

// export exports a Machine or System to dest and waits for the Job.
func (d *daemon) export(resource, dest string) map[string]any {
	d.t.Helper()
	r := d.postJSON(resource+"/export", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/export",
		"format": "application/ovf", "destination": "file://" + dest})
	if r.Status != http.StatusAccepted {
		d.t.Fatalf("export %s: %d %s", resource, r.Status, r.Body)
	}
	j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 10*time.Minute)
	if j["state"] != "SUCCESS" {
		d.t.Fatalf("export %s: job %v", resource, j)
	}
	return j
}

// machineDisk is the pool file of a Machine's first disk.
func (d *daemon) machineDisk(machine string) string {
	return filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(machine)+"-disk0.qcow2")
}

// nicSummary reads a Machine's interfaces as network/model pairs.
func (d *daemon) nicSummary(machine string) []string {
	d.t.Helper()
	c := d.get(machine + "/networkInterfaces").JSON(d.t)
	var out []string
	list, _ := c["machineNetworkInterfaces"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		out = append(out, lastSegment(m["network"].(map[string]any)["href"].(string))+"/"+m["model"].(string))
	}
	return out
}

func sameImages(t *testing.T, a, b string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	}
}

// checkOVA opens an exported archive with the codec and checks its layout:
// descriptor, manifest, then streamOptimized VMDK disks that match it.
func checkOVA(t *testing.T, path string) *ovf.Package {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	p, err := ovf.OpenOVA(f, fi.Size(), ovf.Options{Strict: true})
	if err != nil {
		t.Fatalf("the export is not a valid OVA: %v", err)
	}
	if err := p.Verify(context.Background()); err != nil {
		t.Fatalf("the export does not match its manifest: %v", err)
	}
	members := p.Archive().Members()
	if len(members) < 3 || !strings.HasSuffix(members[0].Name, ".ovf") || !strings.HasSuffix(members[1].Name, ".mf") || p.Manifest.Algorithm() != "SHA256" {
		t.Fatalf("archive members %v (manifest %s)", members, p.Manifest.Algorithm())
	}
	for _, m := range members[2:] {
		info, err := ovf.DetectImage(p.Archive().Section(m), m.Size)
		if err != nil || info.Format != "vmdk/streamOptimized" {
			t.Fatalf("member %s: %v %v", m.Name, info, err)
		}
	}
	for _, w := range p.Warnings {
		t.Logf("export warning: %s", w)
	}
	return p
}

// TestOVFRoundTrip imports an OVA of the test guest, boots it, exports it,
// imports the export and boots that too: cpu, memory, disk contents and
// NICs survive the trip.
func TestOVFRoundTrip(t *testing.T) {
	f := newOVFFixture(t)
	bin := cimiBinary(t)
	d := storageDaemon(t, newStateDir(t))
	src := f.guestOVA("guest")

	sys, j := d.importSystem("file://" + src)
	if msg := j["statusMessage"].(string); !strings.Contains(msg, "1 Machine") || !strings.Contains(msg, `network "VM Network"`) {
		t.Fatalf("import message %q: want the Machine count and the network mapped to the default one", msg)
	}
	doc := d.get(sys).JSON(t)
	if doc["name"] != "guest" || doc["state"] != "STOPPED" || opHref(doc, ovfNS+"/action/export") == "" || opHref(doc, ovfNS+"/action/start") == "" {
		t.Fatalf("imported System: %v", doc)
	}
	m1 := d.systemMachine(sys)
	m := d.get(m1).JSON(t)
	if m["cpu"].(float64) != 1 || m["memory"].(float64) != 160*1024 || m["state"] != "STOPPED" || m["name"] != "guest" {
		t.Fatalf("imported Machine: %v", m)
	}
	if disks := d.get(m1 + "/disks").JSON(t); disks["count"].(float64) != 1 {
		t.Fatalf("disks: %v", disks)
	}
	if nics := d.nicSummary(m1); len(nics) != 1 || nics[0] != "default/virtio" {
		t.Fatalf("interfaces of the imported Machine: %v", nics)
	}
	if nets := d.memberHrefs(sys+"/networks", "systemNetworks", "network"); len(nets) != 1 || lastSegment(nets[0]) != "default" {
		t.Fatalf("System networks: %v", nets)
	}
	sameImages(t, f.guest, d.machineDisk(m1))

	// The System starts and stops its Machine.
	d.systemAct(sys, "start", nil)
	d.waitConsole(m1, testguest.MarkerReady)
	if st := d.state(m1); st != "STARTED" || d.get(sys).JSON(t)["state"] != "STARTED" {
		t.Fatalf("after System start: Machine %s, System %v", st, d.get(sys).JSON(t)["state"])
	}
	// A running Machine is not exported.
	out := t.TempDir()
	dest := filepath.Join(out, "guest-export.ova")
	r := d.postJSON(m1+"/export", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/export", "destination": "file://" + dest})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "STOPPED") {
		t.Fatalf("export of a running Machine: %d %s", r.Status, r.Body)
	}
	d.systemAct(sys, "stop", map[string]any{"force": true})
	d.waitState(m1, "STOPPED", time.Minute)

	// Export the Machine with the CLI, then import the export.
	d.cli(bin, false, "machine", "export", lastSegment(m1), dest)
	if left, _ := filepath.Glob(filepath.Join(out, ".*part")); len(left) > 0 {
		t.Fatalf("temporary files left beside the export: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "export-*")); len(left) > 0 {
		t.Fatalf("temporary files left in the pool: %v", left)
	}
	p := checkOVA(t, dest)
	vs := p.Envelope.VirtualSystems()
	if len(vs) != 1 || vs[0].Name != "guest" || vs[0].Annotation != "the test guest" || vs[0].OS == nil || vs[0].OS.Type() != "otherLinux64Guest" {
		t.Fatalf("exported VirtualSystem: %+v", vs)
	}
	sysOut := d.cli(bin, false, "system", "import", dest)
	sys2 := strings.TrimSpace(lastLine(sysOut))
	m2 := d.systemMachine(sys2)
	a, b := d.get(m1).JSON(t), d.get(m2).JSON(t)
	for _, k := range []string{"cpu", "memory", "name", "description"} {
		if a[k] != b[k] {
			t.Fatalf("%s: %v before the round trip, %v after", k, a[k], b[k])
		}
	}
	if x, y := d.nicSummary(m1), d.nicSummary(m2); strings.Join(x, ",") != strings.Join(y, ",") {
		t.Fatalf("interfaces: %v before the round trip, %v after", x, y)
	}
	sameImages(t, d.machineDisk(m1), d.machineDisk(m2))
	d.systemAct(sys2, "start", nil)
	d.waitConsole(m2, testguest.MarkerReady)
	d.systemAct(sys2, "stop", map[string]any{"force": true})

	// The whole System exports too; then it is deleted with its Machine.
	sysDest := filepath.Join(out, "system.ova")
	d.cli(bin, false, "system", "export", lastSegment(sys2), sysDest)
	checkOVA(t, sysDest)
	d.cli(bin, false, "system", "delete", lastSegment(sys2))
	if r := d.get(m2); r.Status != http.StatusNotFound {
		t.Fatalf("Machine of a deleted System: %d", r.Status)
	}
	if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(m2)+"*")); len(left) > 0 {
		t.Fatalf("disks left after the System's delete: %v", left)
	}
}

// TestOVFImportRefusesHostilePackages feeds the import packages that try
// to read the host's files or do not match what they declare.
func TestOVFImportRefusesHostilePackages(t *testing.T) {
	f := newOVFFixture(t)
	d := storageDaemon(t, newStateDir(t))
	vmdk := mustRead(t, f.vmdk)

	t.Run("href leaving the package", func(t *testing.T) {
		spec := f.spec("evil", "disk1.vmdk", f.vmdkSize)
		desc, _ := ovf.Encode(spec)
		desc = bytes.Replace(desc, []byte(`ovf:href="disk1.vmdk"`), []byte(`ovf:href="../../../../etc/shadow"`), 1)
		src := f.writeTar("traversal.ova", tarMember{name: "traversal.ovf", data: desc}, tarMember{name: "disk1.vmdk", data: vmdk})
		d.refusedImport("file://"+src, "leaves the package")
	})

	t.Run("qcow2 with a backing file on the host", func(t *testing.T) {
		img := filepath.Join(f.dir, "backed.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", img, "64M").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		spec := f.spec("backed", "disk1.qcow2", fileSize(t, img))
		spec.Systems[0].Disks[0].Format = "qcow2"
		src := f.writeOVA("backed.ova", spec, onDisk(t, "disk1.qcow2", img))
		d.refusedImport("file://"+src, "backing file")
	})

	t.Run("VMDK extent naming /etc/shadow", func(t *testing.T) {
		desc := []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
			"# Extent description\nRW 2048 FLAT \"/etc/shadow\" 0\n\nddb.virtualHWVersion = \"4\"\n")
		img := filepath.Join(f.dir, "shadow.vmdk")
		os.WriteFile(img, desc, 0o644)
		spec := f.spec("shadow", "disk1.vmdk", int64(len(desc)))
		src := f.writeOVA("shadow.ova", spec, onDisk(t, "disk1.vmdk", img))
		d.refusedImport("file://"+src, "extents")
	})

	t.Run("sparse VMDK deferring to an extent on the host", func(t *testing.T) {
		// A sparse header with no capacity hands over to its embedded
		// descriptor, whose extent is a file of the host.
		img := make([]byte, 4096)
		copy(img, "KDMV")
		img[4] = 1              // version
		img[28], img[36] = 1, 1 // descriptor at sector 1, one sector
		copy(img[512:], "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\nRW 2048 SPARSE \"/etc/shadow\"\n")
		path := filepath.Join(f.dir, "deferring.vmdk")
		os.WriteFile(path, img, 0o644)
		src := f.writeOVA("deferring.ova", f.spec("deferring", "disk1.vmdk", int64(len(img))), onDisk(t, "disk1.vmdk", path))
		d.refusedImport("file://" + src)
	})

	t.Run("manifest that does not match", func(t *testing.T) {
		desc, _ := ovf.Encode(f.spec("tampered", "disk1.vmdk", f.vmdkSize))
		var mf ovf.ManifestWriter
		mf.Add("tampered.ovf", sha256Sum(desc))
		wrong := sha256Sum(append([]byte("not the disk"), vmdk[:100]...))
		mf.Add("disk1.vmdk", wrong)
		src := f.writeTar("tampered.ova", tarMember{name: "tampered.ovf", data: desc}, tarMember{name: "tampered.mf", data: mf.Bytes()},
			tarMember{name: "disk1.vmdk", data: vmdk})
		d.refusedImport("file://"+src, "does not match the manifest")
	})

	t.Run("members out of order", func(t *testing.T) {
		desc, _ := ovf.Encode(f.spec("disorder", "disk1.vmdk", f.vmdkSize))
		src := f.writeTar("disorder.ova", tarMember{name: "disk1.vmdk", data: vmdk}, tarMember{name: "disorder.ovf", data: desc})
		d.refusedImport("file://"+src, "not the first member")
	})

	t.Run("member larger than declared", func(t *testing.T) {
		desc, _ := ovf.Encode(f.spec("larger", "disk1.vmdk", f.vmdkSize-512))
		src := f.writeTar("larger.ova", tarMember{name: "larger.ovf", data: desc}, tarMember{name: "disk1.vmdk", data: vmdk})
		d.refusedImport("file://"+src, "declares")
	})

	t.Run("archive shorter than its member", func(t *testing.T) {
		desc, _ := ovf.Encode(f.spec("short", "disk1.vmdk", f.vmdkSize))
		src := f.writeTar("short.ova", tarMember{name: "short.ovf", data: desc}, tarMember{name: "disk1.vmdk", data: vmdk[:len(vmdk)/2], size: f.vmdkSize})
		d.refusedImport("file://"+src, "truncated")
	})

	t.Run("unknown required section", func(t *testing.T) {
		desc, _ := ovf.Encode(f.spec("required", "disk1.vmdk", f.vmdkSize))
		desc = bytes.Replace(desc, []byte("<VirtualHardwareSection>"),
			[]byte(`<x:Frobnicate xmlns:x="urn:example:frob" ovf:required="true"><Info>x</Info></x:Frobnicate><VirtualHardwareSection>`), 1)
		src := f.writeOVARaw("required.ova", desc, onDisk(t, "disk1.vmdk", f.vmdk))
		d.refusedImport("file://"+src, "Frobnicate")
	})
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestOVFImportDirectoryGzipChunkedAndHTTP imports a descriptor with its
// disks beside it (one gzip-compressed, one in chunks), from the host and
// over HTTP, and an OVA over HTTP.
func TestOVFImportDirectoryGzipChunkedAndHTTP(t *testing.T) {
	f := newOVFFixture(t)
	d := storageDaemon(t, newStateDir(t))

	pkgDir := filepath.Join(f.dir, "pkg")
	os.Mkdir(pkgDir, 0o755)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(mustRead(t, f.vmdk))
	zw.Close()
	os.WriteFile(filepath.Join(pkgDir, "boot.vmdk.gz"), gz.Bytes(), 0o644)
	raw := filepath.Join(f.dir, "data.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", f.guest, raw).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	data := mustRead(t, raw)
	const chunk = 16 << 20
	for i := 0; i*chunk < len(data); i++ {
		os.WriteFile(filepath.Join(pkgDir, fmt.Sprintf("data.raw.%09d", i)), data[i*chunk:min((i+1)*chunk, len(data))], 0o644)
	}
	spec := f.spec("dirpkg", "boot.vmdk.gz", int64(gz.Len()))
	spec.Systems[0].Disks = append(spec.Systems[0].Disks, ovf.DiskSpec{Href: "data.raw", Size: int64(len(data)), Capacity: f.capacity, Format: "raw"})
	desc, err := ovf.Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	desc = bytes.Replace(desc, []byte(`ovf:href="boot.vmdk.gz"`), []byte(`ovf:href="boot.vmdk.gz" ovf:compression="gzip"`), 1)
	desc = bytes.Replace(desc, []byte(`ovf:href="data.raw"`), []byte(fmt.Sprintf(`ovf:href="data.raw" ovf:chunkSize="%d"`, chunk)), 1)
	os.WriteFile(filepath.Join(pkgDir, "dirpkg.ovf"), desc, 0o644)
	var mf ovf.ManifestWriter
	mf.Add("dirpkg.ovf", sha256Sum(desc))
	mf.Add("boot.vmdk.gz", sha256Sum(gz.Bytes()))
	for i := 0; i*chunk < len(data); i++ {
		mf.Add(fmt.Sprintf("data.raw.%09d", i), sha256Sum(data[i*chunk:min((i+1)*chunk, len(data))]))
	}
	os.WriteFile(filepath.Join(pkgDir, "dirpkg.mf"), mf.Bytes(), 0o644)

	check := func(sys string) {
		t.Helper()
		m := d.systemMachine(sys)
		sameImages(t, f.guest, d.machineDisk(m))
		second := filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(m)+"-disk1.qcow2")
		sameImages(t, f.guest, second)
		if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "import-*")); len(left) > 0 {
			t.Fatalf("temporary files left in the pool: %v", left)
		}
	}
	sys, _ := d.importSystem("file://" + filepath.Join(pkgDir, "dirpkg.ovf"))
	check(sys)

	ova := f.guestOVA("served")
	os.Rename(ova, filepath.Join(pkgDir, "served.ova"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.FileServer(http.Dir(pkgDir)))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	sys, _ = d.importSystem(srv.URL + "/dirpkg.ovf")
	check(sys)
	sys, _ = d.importSystem(srv.URL + "/served.ova")
	sameImages(t, f.guest, d.machineDisk(d.systemMachine(sys)))
	if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "import-*")); len(left) > 0 {
		t.Fatalf("downloads left in the pool: %v", left)
	}
	// A file the server does not have fails the Job and leaves nothing.
	os.Remove(filepath.Join(pkgDir, "data.raw.000000001"))
	r := d.postJSON("systems/import", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/import", "source": srv.URL + "/dirpkg.ovf"})
	if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "FAILED" || !strings.Contains(j["statusMessage"].(string), "404") {
		t.Fatalf("import with a missing chunk: %v", j)
	}
	if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "import-*")); len(left) > 0 {
		t.Fatalf("downloads left after a failed import: %v", left)
	}
}

// TestOVFSystemTemplate makes a SystemTemplate from an OVA and a System
// from the template.
func TestOVFSystemTemplate(t *testing.T) {
	f := newOVFFixture(t)
	d := storageDaemon(t, newStateDir(t))
	src := f.guestOVA("tpl")
	r := d.postJSON("systemTemplates/import", map[string]any{"resourceURI": ovfNS + "/Action", "action": ovfNS + "/action/import", "source": "file://" + src})
	if r.Status != http.StatusAccepted {
		t.Fatalf("template import: %d %s", r.Status, r.Body)
	}
	if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("template import: %v", j)
	}
	tpl := r.Header.Get("Location")
	doc := d.get(tpl).JSON(t)
	comps, _ := doc["componentDescriptors"].([]any)
	if doc["importImage"] != "file://"+src || len(comps) != 1 {
		t.Fatalf("SystemTemplate: %v", doc)
	}
	mt := comps[0].(map[string]any)["machineTemplate"].(map[string]any)["machineConfig"].(map[string]any)
	if mt["cpu"].(float64) != 1 || mt["memory"].(float64) != 160*1024 {
		t.Fatalf("component: %v", comps[0])
	}
	sys := d.create("systems", map[string]any{"resourceURI": ovfNS + "/SystemCreate", "name": "from-template",
		"systemTemplate": map[string]any{"href": tpl}})
	if doc := d.get(sys).JSON(t); doc["name"] != "from-template" || doc["state"] != "STOPPED" {
		t.Fatalf("System from a template: %v", doc)
	}
	sameImages(t, f.guest, d.machineDisk(d.systemMachine(sys)))

	// A package changed since the template was made is refused.
	f.writeOVA("tpl.ova", f.spec("other", "disk1.vmdk", f.vmdkSize), onDisk(t, "disk1.vmdk", f.vmdk))
	r = d.postJSON("systems", map[string]any{"resourceURI": ovfNS + "/SystemCreate", "systemTemplate": map[string]any{"href": tpl}})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "changed") {
		t.Fatalf("System from a changed package: %d %s", r.Status, r.Body)
	}
}
