package storage_test

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"cimid/agent"
	"cimid/agent/agenttest"
	"cimid/hypervisor"
	"cimid/hypervisor/fake"
)

// startEnv runs a whole agent on dir and drv, like newEnv, and returns a
// function that stops it; the fake host (drv) outlives the agent, as a
// real one outlives a restart of cimid.
func startEnv(t *testing.T, dir string, drv *fake.Driver) (*env, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, stop := agenttest.Start(t, agent.Config{StateDir: dir, DrainTimeout: 100 * time.Millisecond}, drv, log)
	return &env{t: t, h: h, drv: drv, dir: dir}, stop
}

func (e *env) shareable(capacity int64) string {
	e.t.Helper()
	return e.ok("create shareable volume", e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"capacity": capacity, "shareable": true}}}))
}

func (e *env) attach(machine, volume string) string {
	e.t.Helper()
	return e.ok("attach", e.do(http.MethodPost, machine+"/volumes", map[string]any{"volume": map[string]any{"href": volume}}))
}

// liveShared finds the disk of path among the running guest's devices.
func (e *env) liveShared(domain, path string) (hypervisor.Disk, bool) {
	e.t.Helper()
	info, _ := e.drv.Domain(domain)
	for _, d := range info.LiveDisks {
		if d.Path == path {
			return d, true
		}
	}
	return hypervisor.Disk{}, false
}

// deleteNames checks that a delete of volume is refused with a message
// naming exactly the machines in want among all.
func (e *env) deleteNames(volume string, all, want []string) {
	e.t.Helper()
	r := e.do(http.MethodDelete, volume, nil)
	msg, _ := r.doc["statusMessage"].(string)
	if r.status != http.StatusConflict {
		e.t.Fatalf("delete of a used volume: %d %q", r.status, msg)
	}
	for _, m := range all {
		id := idOf(m)
		if named, wanted := strings.Contains(msg, id), contains(want, m); named != wanted {
			e.t.Fatalf("delete refused with %q: names Machine %s: %v, want %v", msg, id, named, wanted)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestShareableVolumeInput(t *testing.T) {
	e := newEnv(t)
	v := e.shareable(1024)
	doc := e.get(v)
	if doc["shareable"] != true || doc["diskFormat"] != "raw" || !strings.HasSuffix(e.volumeFile(v), ".raw") {
		t.Fatalf("shareable volume without a diskFormat: %v", doc)
	}
	if doc := e.get(e.volume(1024, "")); doc["shareable"] != false || doc["diskFormat"] != "qcow2" {
		t.Fatalf("plain volume: %v", doc)
	}
	explicit := e.ok("shareable raw", e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"capacity": 1024, "shareable": true, "diskFormat": "raw"}}}))
	if doc := e.get(explicit); doc["shareable"] != true || doc["diskFormat"] != "raw" {
		t.Fatalf("shareable raw volume: %v", doc)
	}

	// a stored configuration and a template carry it too
	cfg := e.do(http.MethodPost, "volumeConfigs", map[string]any{"name": "shared", "capacity": 2048, "shareable": true})
	if cfg.status != http.StatusCreated || cfg.doc["shareable"] != true || cfg.doc["diskFormat"] != "raw" {
		t.Fatalf("shareable configuration: %d %v", cfg.status, cfg.doc)
	}
	byRef := e.ok("volume of the configuration", e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"href": cfg.header.Get("Location")}}}))
	if doc := e.get(byRef); doc["shareable"] != true || doc["diskFormat"] != "raw" || doc["capacity"].(float64) != 2048 {
		t.Fatalf("volume of a shareable configuration: %v", doc)
	}
	tpl := e.do(http.MethodPost, "volumeTemplates", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"capacity": 1024, "shareable": true}}})
	if tpl.status != http.StatusCreated || ref(tpl.doc, "volumeConfig") != "" {
		t.Fatalf("template: %d %v", tpl.status, tpl.doc)
	}
	if c, _ := tpl.doc["volumeConfig"].(map[string]any); c["shareable"] != true || c["diskFormat"] != "raw" {
		t.Fatalf("template's configuration by value: %v", tpl.doc)
	}
	if doc := e.get(e.ok("volume of the template", e.do(http.MethodPost, "volumes", map[string]any{"volumeTemplate": map[string]any{
		"href": tpl.header.Get("Location")}}))); doc["shareable"] != true {
		t.Fatalf("volume of a shareable template: %v", doc)
	}

	// the metadata says so
	md := e.get("resourceMetadata/Volume")
	found := false
	for _, c := range md["capabilities"].([]any) {
		if c := c.(map[string]any); strings.HasSuffix(c["uri"].(string), "/capability/Volume/SharedVolumeSupport") {
			found = c["value"] == "true"
		}
	}
	if !found {
		t.Fatalf("SharedVolumeSupport is not true: %v", md["capabilities"])
	}
	for _, typ := range []string{"Volume", "VolumeConfiguration"} {
		found = false
		for _, a := range e.get("resourceMetadata/" + typ)["attributes"].([]any) {
			if a := a.(map[string]any); a["name"] == "shareable" && a["namespace"] == "urn:x-cimid:1" && a["type"] == "boolean" {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s metadata does not list shareable", typ)
		}
	}

	// bad input creates nothing
	volumes := e.get("volumes")["count"]
	entries, _ := os.ReadDir(filepath.Join(e.dir, "pool"))
	bad := []struct {
		what, path string
		body       map[string]any
		word       string
	}{
		{"shareable qcow2", "volumes", map[string]any{"volumeTemplate": map[string]any{
			"volumeConfig": map[string]any{"capacity": 1024, "shareable": true, "diskFormat": "qcow2"}}}, "raw"},
		{"shareable QCOW2 configuration", "volumeConfigs", map[string]any{"capacity": 1024, "shareable": true, "diskFormat": "QCOW2"}, "raw"},
		{"shareable beside a reference", "volumes", map[string]any{"volumeTemplate": map[string]any{
			"volumeConfig": map[string]any{"href": "volumeConfigs/small", "shareable": true}}}, "reference"},
		{"shareable as a string", "volumes", map[string]any{"volumeTemplate": map[string]any{
			"volumeConfig": map[string]any{"capacity": 1024, "shareable": "yes"}}}, "boolean"},
	}
	for _, b := range bad {
		e.refused(b.what, e.do(http.MethodPost, b.path, b.body), http.StatusBadRequest, b.word)
	}
	if n := e.get("volumes")["count"]; n != volumes {
		t.Fatalf("%v volumes after bad requests, was %v", n, volumes)
	}
	if after, _ := os.ReadDir(filepath.Join(e.dir, "pool")); len(after) != len(entries) {
		t.Fatalf("files after bad requests: %v", after)
	}
}

func TestShareableVolumeOnTwoMachines(t *testing.T) {
	e := newEnv(t)
	m1, d1 := e.machine("STARTED")
	m2, d2 := e.machine("STARTED")
	machines := []string{m1, m2}
	v := e.shareable(1024)
	file := e.volumeFile(v)

	a1 := e.attach(m1, v)
	a2 := e.attach(m2, v)
	for _, dom := range []string{d1, d2} {
		if disk, ok := e.liveShared(dom, file); !ok || !disk.Shareable || disk.Format != "raw" {
			t.Fatalf("running guest %s: %+v %v", dom, disk, ok)
		}
		if info, _ := e.drv.Domain(dom); !hasDisk(info.Spec.Disks, "vdb", file) {
			t.Fatalf("definition of %s lacks the shared disk", dom)
		}
	}
	if opHref(e.get(v), "delete") != "" {
		t.Fatalf("an attached volume offers delete: %v", e.get(v))
	}
	if got := e.get(v)["machines"]; !reflect.DeepEqual(got, []any{map[string]any{"href": m1}, map[string]any{"href": m2}}) {
		t.Fatalf("the shared volume lists machines %v, want %s and %s", got, m1, m2)
	}
	e.deleteNames(v, machines, machines)
	e.refused("attach twice to one machine", e.do(http.MethodPost, m1+"/volumes", map[string]any{"volume": map[string]any{"href": v}}),
		http.StatusConflict, "already attached")

	// a volume that is not shareable stays with one machine
	w := e.volume(1024, "")
	e.attach(m1, w)
	e.refused("attach a plain volume to a second machine", e.do(http.MethodPost, m2+"/volumes", map[string]any{"volume": map[string]any{"href": w}}),
		http.StatusConflict, idOf(m1))

	// growing reaches both guests; images and snapshots need stopped guests
	e.ok("resize", e.do(http.MethodPut, v+"?$select=capacity", map[string]any{"capacity": 2048}))
	for _, dom := range []string{d1, d2} {
		if info, _ := e.drv.Domain(dom); info.DiskSizes["vdb"] != 2048*1024 {
			t.Fatalf("sizes in %s after the resize: %v", dom, info.DiskSizes)
		}
	}
	r := e.do(http.MethodPost, v+"/snapshot", map[string]any{"name": "img"})
	msg, _ := r.doc["statusMessage"].(string)
	if r.status != http.StatusConflict || !strings.Contains(msg, idOf(m1)) || !strings.Contains(msg, idOf(m2)) {
		t.Fatalf("image of a volume two running guests use: %d %q", r.status, msg)
	}
	e.refused("snapshot of a machine with the shared volume", e.do(http.MethodPost, m2+"/snapshot", nil), http.StatusConflict, "raw")
	e.ok("stop", e.do(http.MethodPost, m1+"/stop", map[string]any{"action": ns + "/action/stop", "force": true}))
	e.refused("image while one guest still runs", e.do(http.MethodPost, v+"/snapshot", nil), http.StatusConflict, idOf(m2))

	// a failed attach elsewhere leaves both attachments as they are
	m3, d3 := e.machine("STARTED")
	e.drv.FailNext("AttachDisk", errors.New("device refused"))
	if j := e.job("attach", e.do(http.MethodPost, m3+"/volumes", map[string]any{"volume": map[string]any{"href": v}})); j["state"] != "FAILED" {
		t.Fatalf("attach with a failing driver: %v", j)
	}
	if _, ok := e.liveShared(d3, file); ok || e.get(m3 + "/volumes")["count"].(float64) != 0 {
		t.Fatalf("third machine after a failed attach: %v", e.get(m3+"/volumes"))
	}
	e.deleteNames(v, append(machines, m3), machines)

	// detaching from one machine leaves the other attached
	e.ok("detach", e.do(http.MethodDelete, a2, nil))
	if _, ok := e.liveShared(d2, file); ok {
		t.Fatal("the detached guest still has the disk")
	}
	if mv := e.get(a1); mv["state"] != "ATTACHED" {
		t.Fatalf("the other attachment after a detach: %v", mv)
	}
	if info, _ := e.drv.Domain(d1); !hasDisk(info.Spec.Disks, "vdb", file) {
		t.Fatal("the other machine lost the disk from its definition")
	}
	e.deleteNames(v, machines, []string{m1})

	// cold-attached to a stopped machine, it starts beside a running one
	a2 = e.attach(m2, v)
	e.ok("stop", e.do(http.MethodPost, m2+"/stop", map[string]any{"action": ns + "/action/stop", "force": true}))
	im := e.ok("image of a volume whose machines are stopped", e.do(http.MethodPost, v+"/snapshot", map[string]any{"name": "img"}))
	if doc := e.get(im); doc["state"] != "AVAILABLE" || e.get(v)["state"] != "AVAILABLE" {
		t.Fatalf("image: %v", doc)
	}
	for _, m := range machines {
		e.ok("start", e.do(http.MethodPost, m+"/start", map[string]any{"action": ns + "/action/start"}))
	}
	for _, dom := range []string{d1, d2} {
		if _, ok := e.liveShared(dom, file); !ok {
			t.Fatalf("%s started without the shared disk", dom)
		}
	}

	// deleting a machine releases only its own use
	e.ok("delete machine", e.do(http.MethodDelete, m2, nil))
	e.deleteNames(v, machines, []string{m1})
	e.ok("detach", e.do(http.MethodDelete, a1, nil))
	e.ok("delete volume", e.do(http.MethodDelete, v, nil))
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file of the deleted volume: %v", err)
	}
}

// TestShareableAttachSurvivesRestart interrupts an attach and a detach of a
// shared volume by stopping the agent while libvirtd is away, and checks
// that after a restart the resumed Jobs leave every Machine and the volume's
// list of users right.
func TestShareableAttachSurvivesRestart(t *testing.T) {
	dir, drv := t.TempDir(), fake.New()
	t.Cleanup(func() { drv.Close() })
	e, stop := startEnv(t, dir, drv)
	m1, d1 := e.machine("STARTED")
	m2, d2 := e.machine("STARTED")
	machines := []string{m1, m2}
	v := e.shareable(1024)
	file := e.volumeFile(v)
	e.attach(m1, v)

	// interrupted: the attach to the second machine
	drv.SetUnavailable(true)
	r := e.do(http.MethodPost, m2+"/volumes", map[string]any{"volume": map[string]any{"href": v}})
	if r.status != http.StatusAccepted {
		t.Fatalf("attach: %d %v", r.status, r.doc)
	}
	attachJob, a2 := r.header.Get("CIMI-Job-URI"), r.header.Get("Location")
	waitJobState(e, attachJob, "RUNNING")
	stop()
	drv.SetUnavailable(false)
	e, stop = startEnv(t, dir, drv)
	if j := waitJobState(e, attachJob, "SUCCESS", "FAILED"); j["state"] != "SUCCESS" {
		t.Fatalf("attach after a restart: %v", j)
	}
	for _, dom := range []string{d1, d2} {
		if disk, ok := e.liveShared(dom, file); !ok || !disk.Shareable {
			t.Fatalf("%s after the resumed attach: %+v", dom, disk)
		}
	}
	if mv := e.get(a2); mv["state"] != "ATTACHED" {
		t.Fatalf("resumed attachment: %v", mv)
	}
	e.deleteNames(v, machines, machines)

	// interrupted: the detach from the first machine
	entries := e.get(m1 + "/volumes")["machineVolumes"].([]any)
	a1 := entries[0].(map[string]any)["id"].(string)
	drv.SetUnavailable(true)
	r = e.do(http.MethodDelete, a1, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("detach: %d %v", r.status, r.doc)
	}
	detachJob := r.header.Get("CIMI-Job-URI")
	waitJobState(e, detachJob, "RUNNING")
	stop()
	drv.SetUnavailable(false)
	e, _ = startEnv(t, dir, drv)
	if j := waitJobState(e, detachJob, "SUCCESS", "FAILED"); j["state"] != "SUCCESS" {
		t.Fatalf("detach after a restart: %v", j)
	}
	if _, ok := e.liveShared(d1, file); ok || e.get(m1 + "/volumes")["count"].(float64) != 0 {
		t.Fatalf("first machine after the resumed detach: %v", e.get(m1+"/volumes"))
	}
	if _, ok := e.liveShared(d2, file); !ok || e.get(a2)["state"] != "ATTACHED" {
		t.Fatal("the second machine lost the volume")
	}
	e.deleteNames(v, machines, []string{m2})
}

// waitJobState waits until the Job at uri is in one of states.
func waitJobState(e *env, uri string, states ...string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := e.get(uri)
		if contains(states, j["state"].(string)) {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s is %v, not %v", uri, j["state"], states)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// idOf is the last segment of a resource URI.
func idOf(uri string) string { return uri[strings.LastIndex(uri, "/")+1:] }

// TestExportOfAMachineSharingAVolume exports a Machine whose shareable
// Volume another Machine has attached too: the export copies the Volume, so
// it is refused while that Machine runs, and once it is stopped the
// export's Job holds it so that it cannot start before the copy ends.
func TestExportOfAMachineSharingAVolume(t *testing.T) {
	e := newEnv(t)
	a, _ := e.machine("STOPPED")
	b, _ := e.machine("STARTED")
	vol := e.shareable(1024)
	e.attach(a, vol)
	e.attach(b, vol)
	dest := filepath.Join(t.TempDir(), "a.ova")
	export := func() reply {
		return e.do(http.MethodPost, a+"/export", map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
			"action": "http://schemas.dmtf.org/cimi/1/action/export", "destination": "file://" + dest})
	}
	bID := b[strings.LastIndex(b, "/")+1:]
	e.refused("export while the sharing Machine runs", export(), http.StatusConflict, "shared with Machine "+bID)
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused export wrote %s: %v", dest, err)
	}

	e.ok("stop the sharing Machine", e.do(http.MethodPost, opHref(e.get(b), "http://schemas.dmtf.org/cimi/1/action/stop"), map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
		"action": "http://schemas.dmtf.org/cimi/1/action/stop", "force": true}))
	startHref := opHref(e.get(b), "http://schemas.dmtf.org/cimi/1/action/start")
	r := export()
	start := e.do(http.MethodPost, startHref, map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
		"action": "http://schemas.dmtf.org/cimi/1/action/start"})
	exp := e.job("export", r)
	st := e.job("start of the sharing Machine", start)
	if exp["state"] != "SUCCESS" || st["state"] != "SUCCESS" {
		t.Fatalf("export %v, start %v", exp, st)
	}
	expEnd, _ := time.Parse(time.RFC3339Nano, exp["timeOfStatusChange"].(string))
	stEnd, _ := time.Parse(time.RFC3339Nano, st["timeOfStatusChange"].(string))
	if expEnd.IsZero() || stEnd.Before(expEnd) {
		t.Fatalf("the sharing Machine started (%v) before the export ended (%v)", st["timeOfStatusChange"], exp["timeOfStatusChange"])
	}
	if _, err := os.Stat(dest); err != nil {
		t.Fatalf("export: %v", err)
	}
}
