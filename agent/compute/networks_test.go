package compute

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/job"
	"cimid/agent/network"
	"cimid/hypervisor"
	"cimid/hypervisor/fake"
	"cimid/store"
)

// netHarness runs the compute and network services together on the fake
// hypervisor, as the agent wires them.
type netHarness struct {
	t    *testing.T
	dir  string
	drv  *fake.Driver
	db   *store.DB
	jobs *job.Runner
	srv  http.Handler
	inst string
}

func newNetHarness(t *testing.T) *netHarness {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("these tests make disks with qemu-img: %v", err)
	}
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "cimid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	jobs := job.NewRunner(db, log, job.Options{})
	drv := fake.New()
	comp := New(Config{Instance: "inst", StateDir: dir, DomainType: hypervisor.DomainQEMU, ResyncInterval: time.Hour}, db, jobs, drv, log)
	net := network.New(network.Config{Instance: "inst", StateDir: dir, SweepInterval: time.Hour, NetworkWait: 5 * time.Second}, db, jobs, drv, log)
	comp.SetNetworks(net)
	ctx := t.Context()
	for _, step := range []func(context.Context) error{comp.Prepare, net.Prepare, jobs.Start, comp.Reconcile, net.Reconcile} {
		if err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		jobs.Shutdown(c)
	})
	return &netHarness{t: t, dir: dir, drv: drv, db: db, jobs: jobs, srv: api.NewServer(log, comp.Routes(), net.Routes()), inst: "inst"}
}

type netReply struct {
	status int
	header http.Header
	body   []byte
}

func (r netReply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, r.body)
	}
	return m
}

func (h *netHarness) do(method, p string, body any) netReply {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	if !strings.HasPrefix(p, "http") {
		p = "http://localhost/cimi/" + strings.TrimPrefix(p, "/")
	}
	req := httptest.NewRequest(method, p, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	return netReply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// wait waits for the Job a reply names.
func (h *netHarness) wait(r netReply) job.Record {
	h.t.Helper()
	uri := r.header.Get("CIMI-Job-URI")
	if uri == "" {
		h.t.Fatalf("no CIMI-Job-URI: %d %s", r.status, r.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := h.jobs.Get(path.Base(uri))
		if err != nil {
			h.t.Fatal(err)
		}
		if rec.Final() {
			return rec
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s still %s", rec.ID, rec.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ok sends a request that must start a Job that succeeds, and returns the
// path of the Location it names.
func (h *netHarness) ok(method, p string, body any) string {
	h.t.Helper()
	r := h.do(method, p, body)
	if r.status >= 300 {
		h.t.Fatalf("%s %s: %d %s", method, p, r.status, r.body)
	}
	if j := h.wait(r); j.State != job.Success {
		h.t.Fatalf("%s %s: job %s: %s", method, p, j.State, j.StatusMessage)
	}
	return strings.TrimPrefix(r.header.Get("Location"), "http://localhost/cimi/")
}

func (h *netHarness) count(kind string) int {
	h.t.Helper()
	recs, err := h.db.List(kind)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(recs)
}

// image registers a small qcow2 file as a MachineImage.
func (h *netHarness) image() string {
	h.t.Helper()
	file := filepath.Join(h.t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", file, "1M").CombinedOutput(); err != nil {
		h.t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	return h.ok(http.MethodPost, "machineImages", map[string]any{"name": "base", "imageLocation": "file://" + file})
}

func (h *netHarness) domain(machine string) fake.DomainInfo {
	h.t.Helper()
	info, ok := h.drv.Domain("cimid-" + h.inst + "-" + path.Base(machine))
	if !ok {
		h.t.Fatalf("no domain for %s", machine)
	}
	return info
}

func testKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blob []byte
	for _, f := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(f)))
		blob = append(blob, f...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " test@cimid"
}

func TestMachineGetsInterfacesAndSeed(t *testing.T) {
	h := newNetHarness(t)
	image := h.image()
	key := testKey(t)
	userData := base64.StdEncoding.EncodeToString([]byte("#cloud-config\n"))
	tmpl := h.ok(http.MethodPost, "machineTemplates", map[string]any{"name": "t", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 128 << 10}, "machineImage": map[string]any{"href": image},
		"initialState": "STOPPED", "userData": userData,
		"networkInterfaces": []any{map[string]any{"network": map[string]any{"href": "networks/default"}, "macAddress": "52:54:00:AB:00:01"}},
		"credential":        map[string]any{"userName": "alice", "key": key}}})
	doc := h.do(http.MethodGet, tmpl, nil).json(t)
	nics, _ := doc["networkInterfaces"].([]any)
	cred, _ := doc["credential"].(map[string]any)
	if len(nics) != 1 || nics[0].(map[string]any)["macAddress"] != "52:54:00:ab:00:01" || cred["key"] != key || cred["userName"] != "alice" || doc["userData"] != userData {
		t.Fatalf("template: %v", doc)
	}

	m := h.ok(http.MethodPost, "machines", map[string]any{"name": "m", "machineTemplate": map[string]any{"href": tmpl}})
	id := path.Base(m)
	spec := h.domain(m).Spec
	if len(spec.NICs) != 1 || spec.NICs[0].MAC != "52:54:00:ab:00:01" || spec.NICs[0].Network != "cimid-inst-default" || spec.NICs[0].Model != "virtio" {
		t.Fatalf("domain NICs: %+v", spec.NICs)
	}
	seed := filepath.Join(h.dir, "seed", "machine-"+id+"-seed.iso")
	last := spec.Disks[len(spec.Disks)-1]
	if last.Device != "cdrom" || last.Path != seed || !last.ReadOnly || last.Bus != "ide" {
		t.Fatalf("domain disks: %+v", spec.Disks)
	}
	if _, err := os.Stat(seed); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if got := h.do(http.MethodGet, m, nil).json(t)["networkInterfaces"]; got == nil {
		t.Fatal("the Machine has no networkInterfaces link")
	}

	// A second Machine from the same template is refused the MAC the first
	// one has; an override gives it another interface list.
	r := h.do(http.MethodPost, "machines", map[string]any{"name": "m2", "machineTemplate": map[string]any{"href": tmpl}})
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "52:54:00:ab:00:01") {
		t.Fatalf("a second Machine with the same MAC: %d %s", r.status, r.body)
	}
	m2 := h.ok(http.MethodPost, "machines", map[string]any{"name": "m2", "machineTemplate": map[string]any{"href": tmpl, "networkInterfaces": []any{}}})
	if nics := h.domain(m2).Spec.NICs; len(nics) != 0 {
		t.Fatalf("a Machine created with no interfaces has %+v", nics)
	}

	// A template shows "no interface" apart from "the default network".
	none := h.ok(http.MethodPost, "machineTemplates", map[string]any{"name": "none", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 128 << 10}, "machineImage": map[string]any{"href": image}, "networkInterfaces": []any{}}})
	if nics, ok := h.do(http.MethodGet, none, nil).json(t)["networkInterfaces"].([]any); !ok || len(nics) != 0 {
		t.Fatalf("template without interfaces: %s", h.do(http.MethodGet, none, nil).body)
	}
	def := h.ok(http.MethodPost, "machineTemplates", map[string]any{"name": "default", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 128 << 10}, "machineImage": map[string]any{"href": image}}})
	if doc := h.do(http.MethodGet, def, nil).json(t); doc["networkInterfaces"] != nil {
		t.Fatalf("template on the default network: %v", doc)
	}

	// Deleting a Machine releases its interfaces and removes its seed.
	h.ok(http.MethodDelete, m, nil)
	if _, err := os.Stat(seed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("seed after the delete: %v", err)
	}
	if n := h.count("networkPorts"); n != 0 {
		t.Fatalf("%d NetworkPorts after the delete", n)
	}
	if _, err := h.db.Get("machineNetworks", id); err == nil {
		t.Fatal("the network record of the deleted Machine is left")
	}
}

func TestFailedCreateReleasesInterfacesAndSeed(t *testing.T) {
	h := newNetHarness(t)
	image := h.image()
	h.drv.FailNext("DefineDomain", errors.New("injected"))
	r := h.do(http.MethodPost, "machines", map[string]any{"name": "m", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 128 << 10}, "machineImage": map[string]any{"href": image},
		"userData": base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\n"))}})
	if r.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if j := h.wait(r); j.State != job.Failed {
		t.Fatalf("create with a failing define: %s %s", j.State, j.StatusMessage)
	}
	for _, kind := range []string{kindMachines, "networkPorts", "machineNetworks"} {
		if n := h.count(kind); n != 0 {
			t.Errorf("%d %s records after a failed create", n, kind)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(h.dir, "seed")); len(left) != 0 {
		t.Errorf("seed files after a failed create: %v", left)
	}
}

func TestRestoreNeedsTheSnapshotsInterfaces(t *testing.T) {
	h := newNetHarness(t)
	image := h.image()
	m := h.ok(http.MethodPost, "machines", map[string]any{"name": "m", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 128 << 10}, "machineImage": map[string]any{"href": image}, "initialState": "STOPPED"}})
	snap := h.ok(http.MethodPost, m+"/snapshot", map[string]any{"name": "s"})
	restore := map[string]any{"action": "http://schemas.dmtf.org/cimi/1/action/restore", "image": map[string]any{"href": snap}}

	nic := h.ok(http.MethodPost, m+"/networkInterfaces", map[string]any{"network": map[string]any{"href": "networks/default"}, "macAddress": "52:54:00:ab:00:02"})
	if n := len(h.domain(m).Spec.NICs); n != 2 {
		t.Fatalf("%d NICs in the definition after a hot-add", n)
	}
	r := h.do(http.MethodPost, m+"/restore", restore)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "52:54:00:ab:00:02") {
		t.Fatalf("restore with an interface added after the snapshot: %d %s", r.status, r.body)
	}
	h.ok(http.MethodDelete, nic, nil)
	h.ok(http.MethodPost, m+"/restore", restore)
}
