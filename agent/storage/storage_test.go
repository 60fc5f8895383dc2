package storage_test

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
	"reflect"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/job"
	"cimid/agent/storage"
	"cimid/hypervisor"
	"cimid/hypervisor/fake"
	"cimid/store"
)

const ns = "http://schemas.dmtf.org/cimi/1"

// env is a whole agent on the fake hypervisor; image files are real, made
// by qemu-img in a temporary state directory.
type env struct {
	t   *testing.T
	h   http.Handler
	drv *fake.Driver
	dir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is needed: %v", err)
	}
	drv := fake.New()
	t.Cleanup(func() { drv.Close() }) // after the agent stopped
	e, _ := startEnv(t, t.TempDir(), drv)
	return e
}

type reply struct {
	status int
	header http.Header
	doc    map[string]any
}

func (e *env) do(method, path string, body any) reply {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = "http://localhost/cimi/" + path
	}
	req := httptest.NewRequest(method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	r := reply{status: rec.Code, header: rec.Header()}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &r.doc); err != nil {
			e.t.Fatalf("%s %s: %v\n%s", method, path, err, rec.Body.String())
		}
	}
	return r
}

func (e *env) get(path string) map[string]any {
	e.t.Helper()
	r := e.do(http.MethodGet, path, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %v", path, r.status, r.doc)
	}
	return r.doc
}

// job waits for the Job a request started and returns it.
func (e *env) job(what string, r reply) map[string]any {
	e.t.Helper()
	if r.status >= 300 {
		e.t.Fatalf("%s: %d %v", what, r.status, r.doc)
	}
	uri := r.header.Get("CIMI-Job-URI")
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := e.get(uri)
		switch j["state"] {
		case "SUCCESS", "FAILED", "STOPPED":
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: job still %v", what, j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ok runs a request whose Job must succeed and returns the Location.
func (e *env) ok(what string, r reply) string {
	e.t.Helper()
	if j := e.job(what, r); j["state"] != "SUCCESS" {
		e.t.Fatalf("%s: %v", what, j)
	}
	return r.header.Get("Location")
}

func (e *env) refused(what string, r reply, status int, word string) {
	e.t.Helper()
	msg, _ := r.doc["statusMessage"].(string)
	if r.status != status || !strings.Contains(msg, word) {
		e.t.Fatalf("%s: %d %q, want %d with %q", what, r.status, msg, status, word)
	}
}

func (e *env) volume(capacity int64, diskFormat string) string {
	e.t.Helper()
	return e.ok("create volume", e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"capacity": capacity, "diskFormat": diskFormat}}}))
}

// machine registers a tiny image and creates a Machine from it.
func (e *env) machine(state string) (uri, domain string) {
	e.t.Helper()
	base := filepath.Join(e.t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "1M").CombinedOutput(); err != nil {
		e.t.Fatalf("%v: %s", err, out)
	}
	img := e.ok("image", e.do(http.MethodPost, "machineImages", map[string]any{"imageLocation": "file://" + base}))
	uri = e.ok("machine", e.do(http.MethodPost, "machines", map[string]any{"machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 65536}, "machineImage": map[string]any{"href": img},
		"initialState": state}}))
	inst := strings.TrimPrefix(e.get("cloudEntryPoint")["name"].(string), "cimid-")
	return uri, "cimid-" + inst + "-" + uri[strings.LastIndex(uri, "/")+1:]
}

func opHref(doc map[string]any, rel string) string {
	ops, _ := doc["operations"].([]any)
	for _, op := range ops {
		if m := op.(map[string]any); m["rel"] == rel {
			return m["href"].(string)
		}
	}
	return ""
}

func ref(doc map[string]any, attr string) string {
	r, _ := doc[attr].(map[string]any)
	s, _ := r["href"].(string)
	return s
}

func hasDisk(disks []hypervisor.Disk, target, path string) bool {
	for _, d := range disks {
		if d.Target == target && d.Path == path {
			return true
		}
	}
	return false
}

func (e *env) volumeFile(volume string) string {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dir, "pool", "volume-"+volume[strings.LastIndex(volume, "/")+1:]+".*"))
	if len(files) != 1 {
		e.t.Fatalf("files of %s: %v", volume, files)
	}
	return files[0]
}

func TestVolumeBadInputCreatesNothing(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		config map[string]any
		word   string
	}{
		{map[string]any{"capacity": 0}, "capacity"},
		{map[string]any{"capacity": -1}, "capacity"},
		{map[string]any{"capacity": int64(1) << 50}, "exceeds"},
		{map[string]any{"capacity": 512}, "minimum"},
		{map[string]any{"capacity": 1024, "diskFormat": "vmdk"}, "vmdk"},
		{map[string]any{"capacity": 65536, "format": "zfs"}, "zfs"},
		{map[string]any{"capacity": 1024, "format": "ext4"}, "too small"},
		{map[string]any{"href": "volumeConfigs/small", "capacity": 1024}, "reference"},
	}
	for _, c := range cases {
		r := e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{"volumeConfig": c.config}})
		e.refused("create with "+c.word, r, http.StatusBadRequest, c.word)
	}
	if n := e.get("volumes")["count"].(float64); n != 0 {
		t.Fatalf("%v volumes after bad requests", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.dir, "pool")); len(entries) != 0 {
		t.Fatalf("files after bad requests: %v", entries)
	}
}

func TestAttachResizeSnapshotAndDeleteOnFake(t *testing.T) {
	e := newEnv(t)
	m, domain := e.machine("STARTED")
	v := e.volume(1024, "qcow2")
	entry := e.ok("attach", e.do(http.MethodPost, m+"/volumes", map[string]any{"volume": map[string]any{"href": v}, "initialLocation": "/dev/vdb"}))
	info, _ := e.drv.Domain(domain)
	if !hasDisk(info.LiveDisks, "vdb", e.volumeFile(v)) || !hasDisk(info.Spec.Disks, "vdb", e.volumeFile(v)) {
		t.Fatalf("domain after a hot attach: %+v", info)
	}

	// a failed attach leaves the machine and the volume as they were
	w := e.volume(1024, "raw")
	e.drv.FailNext("AttachDisk", errors.New("device refused"))
	if j := e.job("attach", e.do(http.MethodPost, m+"/volumes", map[string]any{"volume": map[string]any{"href": w}})); j["state"] != "FAILED" {
		t.Fatalf("attach with a failing driver: %v", j)
	}
	if n := e.get(m + "/volumes")["count"].(float64); n != 1 {
		t.Fatalf("%v volumes after a failed attach", n)
	}
	if opHref(e.get(w), "delete") == "" || e.get(w)["machines"] != nil {
		t.Fatalf("volume of a failed attach is still in use: %v", e.get(w))
	}
	if got := e.get(v)["machines"]; !reflect.DeepEqual(got, []any{map[string]any{"href": m}}) {
		t.Fatalf("the attached volume lists machines %v, want %s", got, m)
	}

	// online resize goes through the hypervisor
	e.ok("resize", e.do(http.MethodPut, v+"?$select=capacity", map[string]any{"capacity": 2048}))
	if info, _ := e.drv.Domain(domain); info.DiskSizes["vdb"] != 2048*1024 {
		t.Fatalf("disk sizes after an online resize: %v", info.DiskSizes)
	}

	// a snapshot holds the volume; a failed one leaves nothing
	snap := e.ok("snapshot", e.do(http.MethodPost, m+"/snapshot", map[string]any{"name": "s"}))
	if im := e.get(snap); im["type"] != "SNAPSHOT" || ref(e.get(m), "latestSnapshot") != snap {
		t.Fatalf("snapshot: %v", im)
	}
	e.drv.FailNext("CreateSnapshot", errors.New("no space"))
	if j := e.job("snapshot", e.do(http.MethodPost, m+"/snapshot", map[string]any{"name": "t"})); j["state"] != "FAILED" {
		t.Fatalf("snapshot with a failing driver: %v", j)
	}
	if n := e.get(m + "/snapshots")["count"].(float64); n != 1 || e.get(m)["state"] != "STARTED" || ref(e.get(m), "latestSnapshot") != snap {
		t.Fatalf("machine after a failed snapshot: %v", e.get(m))
	}
	if list, _ := e.drv.ListSnapshots(context.Background(), domain); len(list) != 1 {
		t.Fatalf("snapshots in the domain: %v", list)
	}
	e.refused("detach a held volume", e.do(http.MethodDelete, entry, nil), http.StatusConflict, "snapshot")
	e.refused("delete an attached volume", e.do(http.MethodDelete, v, nil), http.StatusConflict, "attached")

	// a raw volume forbids snapshots
	e.ok("attach raw", e.do(http.MethodPost, m+"/volumes", map[string]any{"volume": map[string]any{"href": w}}))
	e.refused("snapshot with a raw volume", e.do(http.MethodPost, m+"/snapshot", nil), http.StatusConflict, "raw")

	// deleting the machine deletes its snapshots and lets its volumes go
	e.ok("delete machine", e.do(http.MethodDelete, m, nil))
	if _, found := e.drv.Domain(domain); found {
		t.Fatal("domain of a deleted machine")
	}
	if r := e.do(http.MethodGet, snap, nil); r.status != http.StatusNotFound {
		t.Fatalf("snapshot of a deleted machine: %d", r.status)
	}
	for _, vol := range []string{v, w} {
		if doc := e.get(vol); doc["state"] != "AVAILABLE" || opHref(doc, "delete") == "" || doc["machines"] != nil {
			t.Fatalf("volume of a deleted machine: %v", doc)
		}
		e.ok("delete volume", e.do(http.MethodDelete, vol, nil))
	}
}

func TestRestoreNeedsTheSnapshotsVolumes(t *testing.T) {
	e := newEnv(t)
	m, domain := e.machine("STOPPED")
	v := e.volume(1024, "qcow2")
	snap := e.ok("snapshot", e.do(http.MethodPost, m+"/snapshot", map[string]any{"imageLocation": m}))
	e.ok("attach", e.do(http.MethodPost, m+"/volumes", map[string]any{"volume": map[string]any{"href": v}}))
	restore := map[string]any{"resourceURI": ns + "/Action", "action": ns + "/action/restore", "image": map[string]any{"href": snap}}
	e.refused("restore with a volume attached since", e.do(http.MethodPost, m+"/restore", restore), http.StatusConflict, "detach")
	entries := e.get(m + "/volumes")["machineVolumes"].([]any)
	e.ok("detach", e.do(http.MethodDelete, entries[0].(map[string]any)["id"].(string), nil))
	e.ok("restore", e.do(http.MethodPost, m+"/restore", restore))
	if info, _ := e.drv.Domain(domain); info.State != hypervisor.StateShutoff || e.get(m)["state"] != "STOPPED" {
		t.Fatalf("after restoring a stopped snapshot: %v %v", info.State, e.get(m)["state"])
	}
	e.ok("delete snapshot", e.do(http.MethodDelete, snap, nil))
	if doc := e.get(m); doc["latestSnapshot"] != nil || opHref(doc, ns+"/action/restore") != "" {
		t.Fatalf("machine whose only snapshot was deleted: %v", doc)
	}
}

// TestCheckPool runs the storage service alone to compare its pool with
// its records.
// newServiceEnv serves the storage service alone, returned for its
// methods, over a fresh state directory.
func newServiceEnv(t *testing.T) (*storage.Service, *env) {
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
	s := storage.New(storage.Config{Instance: "test", StateDir: dir}, db, jobs, drv, log)
	ctx := context.Background()
	if err := drv.EnsurePool(ctx, "cimid-test", filepath.Join(dir, "pool")); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	core := &api.Core{Jobs: jobs}
	return s, &env{t: t, h: api.NewServer(log, core.Routes(), s.Routes()), drv: drv, dir: dir}
}

func TestCheckPool(t *testing.T) {
	s, e := newServiceEnv(t)
	ctx, dir := context.Background(), e.dir
	v := e.volume(1024, "qcow2")
	rep, err := s.CheckPool(ctx)
	if err != nil || len(rep.Unknown)+len(rep.Missing) != 0 {
		t.Fatalf("pool of one volume: %+v %v", rep, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pool", "stray.raw"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(e.volumeFile(v)); err != nil {
		t.Fatal(err)
	}
	rep, err = s.CheckPool(ctx)
	if err != nil || len(rep.Unknown) != 1 || rep.Unknown[0] != "stray.raw" || len(rep.Missing) != 1 {
		t.Fatalf("pool with a stray file and a missing one: %+v %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pool", "stray.raw")); err != nil {
		t.Fatalf("the check removed the stray file: %v", err)
	}
}

// A volume's partial image without a record was made for a create whose
// record was never committed: start-up removes it, and nothing else.
func TestUnrecordedScratchRemovedAtStart(t *testing.T) {
	s, e := newServiceEnv(t)
	v := e.volume(1024, "qcow2")
	pool := filepath.Join(e.dir, "pool")
	orphan, own := "volume-"+job.NewID(), "volume-"+v[strings.LastIndex(v, "/")+1:]
	files := map[string]bool{ // name -> kept
		orphan + ".qcow2.part":                    false,
		orphan + ".raw.part":                      false,
		own + ".qcow2.part":                       true, // its create Job would make it again
		orphan + ".qcow2":                         true, // a whole image: reported, never removed
		orphan + ".vmdk.part":                     true, // not a name the agent makes
		"volimage-" + job.NewID() + ".qcow2.part": true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(pool, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(pool, name))
		if got := err == nil; got != kept {
			t.Errorf("%s: kept %v, want %v", name, got, kept)
		}
	}
	if _, err := os.Stat(filepath.Join(pool, own+".qcow2")); err != nil {
		t.Errorf("the volume's own image: %v", err)
	}
}

func TestCaptureAndDetachFailureOnFake(t *testing.T) {
	e := newEnv(t)
	m, domain := e.machine("STARTED")
	e.refused("capture of a running machine", e.do(http.MethodPost, m+"/capture", map[string]any{"imageLocation": m}), http.StatusConflict, "STOPPED")
	e.ok("stop", e.do(http.MethodPost, m+"/stop", map[string]any{"action": ns + "/action/stop", "force": true}))
	img := e.ok("capture", e.do(http.MethodPost, m+"/capture", map[string]any{"resourceURI": ns + "/MachineImageCreate", "imageLocation": m, "name": "golden"}))
	im := e.get(img)
	file := strings.TrimPrefix(im["imageLocation"].(string), "file://")
	if im["type"] != "IMAGE" || im["state"] != "AVAILABLE" || e.get(m)["state"] != "STOPPED" {
		t.Fatalf("captured image: %v", im)
	}
	if out, err := exec.Command("qemu-img", "info", file).CombinedOutput(); err != nil || strings.Contains(string(out), "backing file") {
		t.Fatalf("captured image file: %v\n%s", err, out)
	}
	e.ok("machine from the capture", e.do(http.MethodPost, "machines", map[string]any{"machineTemplate": map[string]any{
		"machineConfig": map[string]any{"cpu": 1, "memory": 65536}, "machineImage": map[string]any{"href": img}}}))

	// a detach the driver refuses leaves the volume attached
	v := e.volume(1024, "qcow2")
	entry := e.ok("attach", e.do(http.MethodPost, m+"/volumes", map[string]any{"volume": map[string]any{"href": v}}))
	e.drv.FailNext("DetachDisk", errors.New("device busy"))
	if j := e.job("detach", e.do(http.MethodDelete, entry, nil)); j["state"] != "FAILED" {
		t.Fatalf("detach with a failing driver: %v", j)
	}
	if mv := e.get(entry); mv["state"] != "ATTACHED" || opHref(mv, "delete") == "" {
		t.Fatalf("attachment after a failed detach: %v", mv)
	}
	if info, _ := e.drv.Domain(domain); !hasDisk(info.Spec.Disks, "vdb", e.volumeFile(v)) {
		t.Fatalf("definition after a failed detach: %+v", info.Spec.Disks)
	}
	e.ok("detach", e.do(http.MethodDelete, entry, nil))
	if info, _ := e.drv.Domain(domain); hasDisk(info.Spec.Disks, "vdb", e.volumeFile(v)) {
		t.Fatalf("definition after a detach: %+v", info.Spec.Disks)
	}
}
