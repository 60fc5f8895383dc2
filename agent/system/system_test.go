package system

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/compute"
	"cimid/agent/job"
	"cimid/hypervisor/fake"
	"cimid/hypervisor/qemuimg"
	"cimid/ovf"
	"cimid/store"
)

const ns = "http://schemas.dmtf.org/cimi/1"

var errDefine = errors.New("define refused by the test")

func actionWith(dest, format string) cimi.Action {
	return cimi.Action{Action: ns + "/action/export", Destination: dest, Format: format}
}

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	ova := filepath.Join(dir, "a.ova")
	os.WriteFile(ova, make([]byte, 1024), 0o644)
	tarNoExt := filepath.Join(dir, "pkg")
	hdr := make([]byte, 512)
	copy(hdr[257:], "ustar")
	os.WriteFile(tarNoExt, hdr, 0o644)
	xmlNoExt := filepath.Join(dir, "desc")
	os.WriteFile(xmlNoExt, []byte("\n  <?xml version=\"1.0\"?><Envelope/>"), 0o644)
	os.Mkdir(filepath.Join(dir, "d.ova"), 0o755)
	for _, c := range []struct {
		raw     string
		ok      bool
		kind    sourceKind
		errWord string
	}{
		{raw: "file://" + ova, ok: true, kind: kindOVA},
		{raw: "file://" + tarNoExt, ok: true, kind: kindOVA},
		{raw: "file://" + xmlNoExt, ok: true, kind: kindDir},
		{raw: "https://example.net/x/app.ovf", ok: true, kind: kindDir},
		{raw: "http://example.net/app.OVA", ok: true, kind: kindOVA},
		{raw: "", errWord: "required"},
		{raw: "ftp://example.net/a.ova", errWord: "scheme"},
		{raw: "file://host/etc/a.ova", errWord: "this host"},
		{raw: "file://" + dir + "/../a.ova", errWord: "clean"},
		{raw: "file:relative.ova", errWord: "absolute"},
		{raw: "file://" + dir + "/missing.ova", errWord: "does not exist"},
		{raw: "file://" + dir + "/d.ova", errWord: "regular file"},
		{raw: "https://example.net/app.zip", errWord: ".ova or .ovf"},
	} {
		src, err := parseSource(c.raw)
		if c.ok {
			if err != nil || src.kind != c.kind {
				t.Errorf("parseSource(%q) = %+v, %v", c.raw, src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.errWord) {
			t.Errorf("parseSource(%q): error %v, want one saying %q", c.raw, err, c.errWord)
		}
	}
}

func TestParseDestination(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub.ova"), 0o755)
	for _, c := range []struct {
		dest, format string
		errWord      string
	}{
		{dest: "file://" + dir + "/x.ova"},
		{dest: "file://" + dir + "/x.ova", format: "application/ovf"},
		{dest: "", errWord: "required"},
		{dest: "file://" + dir + "/x.ova", format: "application/zip", errWord: "not offered"},
		{dest: "http://example.net/x.ova", errWord: "file://"},
		{dest: "file://" + dir + "/x.tar", errWord: ".ova"},
		{dest: "file://" + dir + "/nodir/x.ova", errWord: "does not exist"},
		{dest: "file://" + dir + "/sub.ova", errWord: "not a regular file"},
	} {
		act := actionWith(c.dest, c.format)
		_, err := parseDestination(act)
		if (err == nil) != (c.errWord == "") || (err != nil && !strings.Contains(err.Error(), c.errWord)) {
			t.Errorf("parseDestination(%q, %q): %v, want error saying %q", c.dest, c.format, err, c.errWord)
		}
	}
}

func TestNetworkMap(t *testing.T) {
	nets := []networkView{{ID: "default", Name: "default", State: "STARTED"}, {ID: "n1", Name: "Backend", State: "STARTED"},
		{ID: "n2", Name: "gone", State: "DELETING"}}
	m := newNetworkMap(nets)
	for _, c := range []struct {
		name, want string
		warn       bool
	}{
		{"Backend", "n1", false}, {"backend", "n1", false}, {"n1", "n1", false},
		{"gone", "default", true}, {"VM Network", "default", true}, {"VM Network", "default", false}, {"", "default", true},
	} {
		id, ok, warn := m.resolve(c.name)
		if !ok || id != c.want || (warn != "") != c.warn {
			t.Errorf("resolve(%q) = %q %v %q", c.name, id, ok, warn)
		}
	}
	if id, ok, warn := newNetworkMap(nil).resolve("x"); ok || id != "" || !strings.Contains(warn, "left out") {
		t.Errorf("without networks: %q %v %q", id, ok, warn)
	}
}

func TestNICModelsAndNames(t *testing.T) {
	for in, want := range map[string]string{"VirtIO": "virtio", "E1000": "e1000", "": "e1000", "e1000e": "e1000e", "VmxNet3": "virtio", "PCNet32": "e1000"} {
		if got, _ := nicModel(in); got != want {
			t.Errorf("nicModel(%q) = %q, want %q", in, got, want)
		}
		if got, _ := nicModel(ovfNICModel(want)); got != want {
			t.Errorf("model %q does not survive an export: %q", want, got)
		}
	}
	for in, want := range map[string]string{"00:50:56:AB:CD:EF": "00:50:56:ab:cd:ef", "01:00:5e:00:00:01": "", "junk": "", "": ""} {
		if got := packageMAC(in); got != want {
			t.Errorf("packageMAC(%q) = %q, want %q", in, got, want)
		}
	}
	if got := safeName("My web/server ", "x"); got != "My-web-server" {
		t.Errorf("safeName = %q", got)
	}
	if got := safeName("///", "fallback"); got != "fallback" {
		t.Errorf("safeName of nothing = %q", got)
	}
}

// env runs the System service with the Machine service on the fake
// driver, with real qemu-img.
type env struct {
	t    *testing.T
	h    http.Handler
	dir  string
	pool string
	drv  *fake.Driver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "cimid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs := job.NewRunner(db, log, job.Options{})
	drv := fake.New()
	t.Cleanup(func() { drv.Close() })
	machines := compute.New(compute.Config{Instance: "t", StateDir: dir, DomainType: "qemu"}, db, jobs, drv, log)
	s := New(Config{Instance: "t"}, db, jobs, machines, log)
	ctx := context.Background()
	if err := machines.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		jobs.Shutdown(c)
	})
	core := &api.Core{Jobs: jobs}
	return &env{t: t, h: api.NewServer(log, core.Routes(), machines.Routes(), s.Routes()), dir: dir, pool: filepath.Join(dir, "pool"), drv: drv}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, r.body)
	}
	return m
}

func (e *env) do(method, path string, body any) reply {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	if !strings.HasPrefix(path, "http") {
		path = "http://localhost/cimi/" + strings.TrimPrefix(path, "/")
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return reply{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (e *env) wait(r reply) map[string]any {
	e.t.Helper()
	if r.status != http.StatusAccepted {
		e.t.Fatalf("not accepted: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		j := e.do(http.MethodGet, r.header.Get("CIMI-Job-URI"), nil).json(e.t)
		switch j["state"] {
		case "SUCCESS", "FAILED", "STOPPED":
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job still running: %v", j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) importSource(src string) reply {
	return e.do(http.MethodPost, "systems/import", map[string]any{"resourceURI": ns + "/Action", "action": ns + "/action/import", "source": src})
}

// tinyOVA writes an OVA holding a small qcow2 disk with a known pattern.
func tinyOVA(t *testing.T, dir, name string, mutate func(desc []byte) []byte) (ova, disk string) {
	t.Helper()
	raw := filepath.Join(dir, name+".raw")
	data := bytes.Repeat([]byte("cimid!"), (4<<20)/6+1)[:4<<20]
	os.WriteFile(raw, data, 0o644)
	disk = filepath.Join(dir, name+".qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, disk).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fi, _ := os.Stat(disk)
	desc, err := ovf.Encode(ovf.Spec{Name: name, Systems: []ovf.SystemSpec{{Name: name, CPUs: 2, MemoryBytes: 256 << 20,
		Disks: []ovf.DiskSpec{{Href: "disk.qcow2", Size: fi.Size(), Capacity: 8 << 20, Format: "qcow2"}},
		NICs:  []ovf.NICSpec{{Network: "somewhere"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		desc = mutate(desc)
	}
	ova = filepath.Join(dir, name+".ova")
	f, _ := os.Create(ova)
	defer f.Close()
	pkg := ovf.OVA{DescriptorName: name + ".ovf", Descriptor: desc, Files: []ovf.OVAFile{{Name: "disk.qcow2", Size: fi.Size(),
		Open: func() (io.ReadCloser, error) { return os.Open(disk) }}}}
	if err := pkg.Write(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	return ova, raw
}

func poolFiles(t *testing.T, pool string) []string {
	t.Helper()
	entries, err := os.ReadDir(pool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestImportExportOnFakeDriver imports a package, checks the Machine and
// its grown disk, exports it and reads the export back.
func TestImportExportOnFakeDriver(t *testing.T) {
	e := newEnv(t)
	ova, raw := tinyOVA(t, t.TempDir(), "tiny", nil)
	r := e.importSource("file://" + ova)
	j := e.wait(r)
	if j["state"] != "SUCCESS" || j["progress"].(float64) != 100 || !strings.Contains(j["statusMessage"].(string), "left out") {
		t.Fatalf("import: %v", j)
	}
	sys := r.header.Get("Location")
	doc := e.do(http.MethodGet, sys, nil).json(t)
	if doc["state"] != "STOPPED" || doc["name"] != "tiny" {
		t.Fatalf("System: %v", doc)
	}
	if x := e.do(http.MethodGet, sys+"?$format=xml", nil); x.status != http.StatusOK || !bytes.Contains(x.body, []byte("<System")) ||
		!bytes.Contains(x.body, []byte("<state>STOPPED</state>")) {
		t.Fatalf("System in XML: %d %s", x.status, x.body)
	}
	c := e.do(http.MethodGet, sys+"/machines", nil).json(t)
	machine := c["systemMachines"].([]any)[0].(map[string]any)["machine"].(map[string]any)["href"].(string)
	m := e.do(http.MethodGet, machine, nil).json(t)
	if m["cpu"].(float64) != 2 || m["memory"].(float64) != 256*1024 || m["state"] != "STOPPED" {
		t.Fatalf("Machine: %v", m)
	}
	disk := filepath.Join(e.pool, "machine-"+filepath.Base(machine)+"-disk0.qcow2")
	info, err := qemuimg.Info(context.Background(), disk)
	if err != nil || info.VirtualSize != 8<<20 {
		t.Fatalf("the disk was not grown to its declared capacity: %+v %v", info, err)
	}
	// The first 4 MiB are the image's, the rest reads as zeros.
	back := filepath.Join(t.TempDir(), "back.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, back).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got, want := mustRead(t, back), mustRead(t, raw)
	if !bytes.Equal(got[:len(want)], want) || !bytes.Equal(got[len(want):], make([]byte, len(got)-len(want))) {
		t.Fatal("the imported disk does not hold the package's image")
	}

	dest := filepath.Join(t.TempDir(), "out.ova")
	j = e.wait(e.do(http.MethodPost, machine+"/export", map[string]any{"resourceURI": ns + "/Action", "action": ns + "/action/export", "destination": "file://" + dest}))
	if j["state"] != "SUCCESS" {
		t.Fatalf("export: %v", j)
	}
	f, err := os.Open(dest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	p, err := ovf.OpenOVA(f, fi.Size(), ovf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	vs := p.Envelope.VirtualSystems()
	if len(vs) != 1 || vs[0].Machine.CPUs != 2 || vs[0].Machine.MemoryBytes != 256<<20 || len(vs[0].Machine.Disks) != 1 ||
		vs[0].Machine.Disks[0].CapacityBytes != 8<<20 || len(vs[0].Machine.NICs) != 0 {
		t.Fatalf("exported system: %+v", vs[0].Machine)
	}
	for _, n := range poolFiles(t, e.pool) {
		if strings.HasPrefix(n, "export-") || strings.HasPrefix(n, "import-") {
			t.Fatalf("temporary file left: %s", n)
		}
	}

	// The System's delete removes its Machine and its disk.
	j = e.wait(e.do(http.MethodDelete, sys, nil))
	if j["state"] != "SUCCESS" || e.do(http.MethodGet, machine, nil).status != http.StatusNotFound {
		t.Fatalf("delete: %v", j)
	}
	if left := poolFiles(t, e.pool); len(left) > 0 {
		t.Fatalf("pool after the delete: %v", left)
	}
}

// TestFailedImportLeavesNothing fails an import at the domain definition,
// after the disks were converted.
func TestFailedImportLeavesNothing(t *testing.T) {
	e := newEnv(t)
	ova, _ := tinyOVA(t, t.TempDir(), "doomed", nil)
	e.drv.FailNext("DefineDomain", errDefine)
	r := e.importSource("file://" + ova)
	j := e.wait(r)
	if j["state"] != "FAILED" || !strings.Contains(j["statusMessage"].(string), "define") {
		t.Fatalf("import: %v", j)
	}
	if got := e.do(http.MethodGet, r.header.Get("Location"), nil).status; got != http.StatusNotFound {
		t.Fatalf("System after a failed import: %d", got)
	}
	if left := poolFiles(t, e.pool); len(left) > 0 {
		t.Fatalf("pool after a failed import: %v", left)
	}
	if c := e.do(http.MethodGet, "machines", nil).json(t); c["count"].(float64) != 0 {
		t.Fatalf("Machines after a failed import: %v", c)
	}
}

// TestImportRefusedAtOnce checks what is judged before any Job.
func TestImportRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	huge, _ := tinyOVA(t, dir, "huge", func(desc []byte) []byte {
		return bytes.Replace(desc, []byte("<rasd:VirtualQuantity>2</rasd:VirtualQuantity>"), []byte("<rasd:VirtualQuantity>64</rasd:VirtualQuantity>"), 1)
	})
	for src, word := range map[string]string{
		"file://" + huge:           "exceeds",
		"file://" + dir + "/x.ova": "does not exist",
		"gopher://x/y.ova":         "scheme",
	} {
		r := e.importSource(src)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), word) {
			t.Errorf("import of %s: %d %s, want 400 saying %q", src, r.status, r.body, word)
		}
	}
	if left := poolFiles(t, e.pool); len(left) > 0 {
		t.Fatalf("pool after refused imports: %v", left)
	}
	if c := e.do(http.MethodGet, "systems", nil).json(t); c["count"].(float64) != 0 {
		t.Fatalf("Systems after refused imports: %v", c)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
