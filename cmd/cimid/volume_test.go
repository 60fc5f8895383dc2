package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// The tests in this file cover Volumes and the images made of Machines:
// hot and cold attach, online resize, capture, snapshots and restore, and
// what is left after the agent is killed in the middle of them.

const (
	volNS        = "http://schemas.dmtf.org/cimi/1"
	poolUnknown  = "unknown file in the storage pool"
	testPattern1 = 0x41
	testPattern2 = 0x42
	testPattern3 = 0x43
)

// storageDaemon starts cimid for a storage test. When the test ends, the
// domains and the storage pool of its instance are removed from libvirt
// (the harness only removes the state directory).
func storageDaemon(t *testing.T, dir string) *daemon {
	t.Helper()
	d := machineDaemon(t, dir)
	inst := d.instance()
	t.Cleanup(func() {
		d.kill()
		removeInstanceFromLibvirt(inst)
	})
	return d
}

// restart kills the agent with SIGKILL and starts it again on the same
// state directory.
func (d *daemon) restart(t *testing.T) *daemon {
	t.Helper()
	d.kill()
	return machineDaemon(t, d.stateDir)
}

func removeInstanceFromLibvirt(instance string) {
	prefix := "cimid-" + instance + "-"
	if out, err := virsh("list", "--all", "--name"); err == nil {
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, prefix) {
				virsh("destroy", n)
				virsh("undefine", "--managed-save", "--snapshots-metadata", n)
			}
		}
	}
	virsh("pool-destroy", "cimid-"+instance)
	virsh("pool-undefine", "cimid-"+instance)
}

// wantStatus fails unless r has status and its message contains every one
// of words.
func wantStatus(t *testing.T, what string, r response, status int, words ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
	if len(words) == 0 {
		return
	}
	msg, _ := r.JSON(t)["statusMessage"].(string)
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Fatalf("%s: message %q lacks %q", what, msg, w)
		}
	}
}

// accepted checks that a request started a Job and waits for its success;
// it returns the Job and the Location header.
func (d *daemon) accepted(what string, r response) (map[string]any, string) {
	d.t.Helper()
	if r.Status != http.StatusAccepted && r.Status != http.StatusOK && r.Status != http.StatusCreated {
		d.t.Fatalf("%s: %d %s", what, r.Status, r.Body)
	}
	uri := r.Header.Get("CIMI-Job-URI")
	if uri == "" {
		d.t.Fatalf("%s: no CIMI-Job-URI: %v", what, r.Header)
	}
	j := d.waitJob(uri, 3*time.Minute)
	if j["state"] != "SUCCESS" {
		d.t.Fatalf("%s: job %v", what, j)
	}
	return j, r.Header.Get("Location")
}

// newVolume creates a Volume from a configuration given by value.
func (d *daemon) newVolume(name string, config map[string]any) string {
	d.t.Helper()
	return d.create("volumes", map[string]any{"resourceURI": volNS + "/VolumeCreate", "name": name,
		"volumeTemplate": map[string]any{"volumeConfig": config}})
}

// attach attaches a Volume to a Machine and returns the MachineVolume.
func (d *daemon) attach(machine, volume, location string) string {
	d.t.Helper()
	body := map[string]any{"resourceURI": volNS + "/MachineVolume", "volume": map[string]any{"href": volume}}
	if location != "" {
		body["initialLocation"] = location
	}
	_, loc := d.accepted("attach", d.postJSON(machine+"/volumes", body))
	if !strings.HasPrefix(loc, machine+"/volumes/") {
		d.t.Fatalf("attach: Location %q", loc)
	}
	return loc
}

func (d *daemon) detach(entry string) {
	d.t.Helper()
	d.accepted("detach", d.do(http.MethodDelete, entry, "", nil))
}

// resize grows a Volume with a partial update of its capacity.
func (d *daemon) resize(volume string, kib int64) {
	d.t.Helper()
	d.accepted("resize", d.do(http.MethodPut, volume+"?$select=capacity", "application/json", []byte(fmt.Sprintf(`{"capacity":%d}`, kib))))
}

// makeImage POSTs a MachineImageCreate to one of the Machine's operations
// (capture or snapshot) and returns the new MachineImage.
func (d *daemon) makeImage(machine, op, name string) string {
	d.t.Helper()
	href := opHref(d.get(machine).JSON(d.t), volNS+"/action/"+op)
	if href == "" {
		d.t.Fatalf("Machine does not offer %s: %s", op, d.get(machine).Body)
	}
	_, loc := d.accepted(op, d.postJSON(href, map[string]any{"resourceURI": volNS + "/MachineImageCreate", "name": name,
		"imageLocation": machine}))
	return loc
}

func (d *daemon) restore(machine, image string) {
	d.t.Helper()
	d.act(machine, "restore", map[string]any{"image": map[string]any{"href": image}})
}

func (d *daemon) deleteOK(uri string) {
	d.t.Helper()
	d.accepted("DELETE "+uri, d.do(http.MethodDelete, uri, "", nil))
	if r := d.get(uri); r.Status != http.StatusNotFound {
		d.t.Fatalf("%s after its delete: %d", uri, r.Status)
	}
}

// volumeFile is the image file of a Volume in the pool.
func (d *daemon) volumeFile(volume string) string {
	d.t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "volume-"+lastSegment(volume)+".*"))
	if len(files) != 1 {
		d.t.Fatalf("files of Volume %s: %v", lastSegment(volume), files)
	}
	return files[0]
}

func (d *daemon) poolFiles() []string {
	d.t.Helper()
	entries, err := os.ReadDir(filepath.Join(d.stateDir, "pool"))
	if err != nil {
		d.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func (d *daemon) count(collection string) int {
	d.t.Helper()
	return int(d.get(collection).JSON(d.t)["count"].(float64))
}

func (d *daemon) members(collection, key string) []map[string]any {
	d.t.Helper()
	list, _ := d.get(collection).JSON(d.t)[key].([]any)
	var out []map[string]any
	for _, m := range list {
		out = append(out, m.(map[string]any))
	}
	return out
}

func href(doc map[string]any, attr string) string {
	ref, _ := doc[attr].(map[string]any)
	s, _ := ref["href"].(string)
	return s
}

// qemuIO runs one qemu-io command on an image the agent does not have
// running.
func qemuIO(t *testing.T, file, format, command string) string {
	t.Helper()
	out, err := exec.Command("qemu-io", "-f", format, "-c", command, file).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io %q %s: %v\n%s", command, file, err, out)
	}
	return string(out)
}

// writePattern fills the first 64 KiB of an image with one byte.
func writePattern(t *testing.T, file, format string, pattern byte) {
	t.Helper()
	qemuIO(t, file, format, fmt.Sprintf("write -P 0x%x 0 64k", pattern))
}

// hasPattern tells whether the first 64 KiB of an image hold one byte.
func hasPattern(t *testing.T, file, format string, pattern byte) bool {
	t.Helper()
	out := qemuIO(t, file, format, fmt.Sprintf("read -P 0x%x 0 64k", pattern))
	return !strings.Contains(out, "verification failed")
}

func qemuImgInfo(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", file).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", file, err, out)
	}
	return string(out)
}

// consoleSince runs action and waits for every marker on the Machine's
// console, in any order, looking only at what the guest prints after the
// action started.
func (d *daemon) consoleSince(machine string, action func(), markers ...string) {
	d.t.Helper()
	if err := os.Truncate(d.console(machine), 0); err != nil && !os.IsNotExist(err) {
		d.t.Fatal(err)
	}
	action()
	for _, m := range markers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := testguest.WaitConsole(ctx, d.console(machine), m)
		cancel()
		if err != nil {
			d.t.Fatalf("console of %s: %v", lastSegment(machine), err)
		}
	}
}

func TestVolumeConfigsTemplatesAndBadInput(t *testing.T) {
	d := storageDaemon(t, newStateDir(t))

	cep := d.get("cloudEntryPoint").JSON(t)
	for _, key := range []string{"volumes", "volumeConfigs", "volumeTemplates", "volumeImages"} {
		if href(cep, key) == "" {
			t.Fatalf("entry point lacks %s: %v", key, cep)
		}
	}
	md := d.get("resourceMetadata/VolumeConfiguration").JSON(t)
	found := false
	for _, a := range md["attributes"].([]any) {
		if a := a.(map[string]any); a["name"] == "diskFormat" && a["namespace"] == "urn:x-cimid:1" && a["type"] == "string" {
			found = true
		}
	}
	if !found {
		t.Fatalf("VolumeConfiguration metadata does not advertise diskFormat: %v", md)
	}
	for _, id := range []string{"small", "medium", "large"} {
		if c := d.get("volumeConfigs/" + id).JSON(t); c["diskFormat"] != "qcow2" || c["capacity"].(float64) <= 0 {
			t.Fatalf("provider configuration %s: %v", id, c)
		}
	}

	// a user configuration (raw), a template naming it, a volume by reference
	cfg := d.create("volumeConfigs", map[string]any{"name": "raw64", "capacity": 64 << 10, "diskFormat": "raw"})
	tpl := d.create("volumeTemplates", map[string]any{"name": "t", "volumeTemplate": map[string]any{"volumeConfig": map[string]any{"href": cfg}}})
	raw := d.create("volumes", map[string]any{"name": "byref", "volumeTemplate": map[string]any{"href": tpl}})
	v := d.get(raw).JSON(t)
	if v["state"] != "AVAILABLE" || v["diskFormat"] != "raw" || v["capacity"].(float64) != 64<<10 || v["type"] == "" {
		t.Fatalf("volume from a template: %v", v)
	}
	if fi, err := os.Stat(d.volumeFile(raw)); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("raw volume file: %v %v", fi, err)
	}
	wantStatus(t, "delete a configuration a template uses", d.do(http.MethodDelete, cfg, "", nil), http.StatusConflict, "VolumeTemplate")
	wantStatus(t, "delete a provider configuration", d.do(http.MethodDelete, "volumeConfigs/small", "", nil), http.StatusConflict)

	// by value, in XML, with a file system
	xmlBody := `<VolumeCreate xmlns="` + volNS + `"><name>fs</name><volumeTemplate><volumeConfig>` +
		`<format>ext4</format><capacity>65536</capacity></volumeConfig></volumeTemplate></VolumeCreate>`
	_, fs := d.accepted("XML create", d.do(http.MethodPost, "volumes", "application/xml", []byte(xmlBody)))
	var doc struct {
		XMLName    xml.Name
		State      string `xml:"state"`
		Capacity   int64  `xml:"capacity"`
		DiskFormat string `xml:"diskFormat"`
		Format     string `xml:"format"`
	}
	if err := xml.Unmarshal(d.get(fs, "Accept", "application/xml").Body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.XMLName.Local != "Volume" || doc.State != "AVAILABLE" || doc.Capacity != 65536 || doc.DiskFormat != "qcow2" || doc.Format != "ext4" {
		t.Fatalf("XML volume: %+v", doc)
	}
	flat := filepath.Join(testguest.TempDir(t), "fs.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", d.volumeFile(fs), flat).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	sb := make([]byte, 2)
	if f, err := os.Open(flat); err != nil {
		t.Fatal(err)
	} else {
		f.ReadAt(sb, 0x438)
		f.Close()
	}
	if sb[0] != 0x53 || sb[1] != 0xef {
		t.Fatalf("no ext4 superblock on the formatted volume: %x", sb)
	}

	// growing works, shrinking is refused
	d.resize(fs, 128<<10)
	if info := qemuImgInfo(t, d.volumeFile(fs)); !strings.Contains(info, "virtual size: 128 MiB") {
		t.Fatalf("after resize:\n%s", info)
	}
	wantStatus(t, "shrink", d.do(http.MethodPut, fs+"?$select=capacity", "application/json", []byte(`{"capacity":65536}`)), http.StatusConflict, "shrink")

	// bad input changes nothing
	volumes, files := d.count("volumes"), len(d.poolFiles())
	bad := []struct {
		what   string
		body   string
		status int
		word   string
	}{
		{"capacity 0", `{"volumeTemplate":{"volumeConfig":{"capacity":0}}}`, 400, "capacity"},
		{"negative capacity", `{"volumeTemplate":{"volumeConfig":{"capacity":-5}}}`, 400, "capacity"},
		{"absurd capacity", `{"volumeTemplate":{"volumeConfig":{"capacity":1125899906842624}}}`, 400, "exceeds"},
		{"unknown disk format", `{"volumeTemplate":{"volumeConfig":{"capacity":1024,"diskFormat":"vmdk"}}}`, 400, "vmdk"},
		{"unknown file system", `{"volumeTemplate":{"volumeConfig":{"capacity":65536,"format":"ntfs"}}}`, 400, "ntfs"},
		{"unknown attribute", `{"volumeTemplate":{"volumeConfig":{"capacity":1024,"colour":"red"}}}`, 400, "colour"},
		{"missing configuration", `{"volumeTemplate":{"volumeConfig":{"href":"volumeConfigs/nope"}}}`, 400, "nope"},
		{"no template", `{"name":"x"}`, 400, "volumeTemplate"},
		{"unknown type", `{"volumeTemplate":{"volumeConfig":{"capacity":1024,"type":"http://example.com/nfs"}}}`, 400, "type"},
	}
	for _, b := range bad {
		wantStatus(t, b.what, d.do(http.MethodPost, "volumes", "application/json", []byte(b.body)), b.status, b.word)
	}
	wantStatus(t, "configuration with capacity 0", d.postJSON("volumeConfigs", map[string]any{"capacity": 0}), 400, "capacity")
	if n, f := d.count("volumes"), len(d.poolFiles()); n != volumes || f != files {
		t.Fatalf("bad requests changed something: %d volumes (was %d), %d files (was %d)", n, volumes, f, files)
	}

	// a VolumeImage of a volume, and a bigger volume made from it
	writePattern(t, d.volumeFile(fs), "qcow2", testPattern1)
	snap := d.get(fs).JSON(t)
	_, img := d.accepted("volume snapshot", d.postJSON(opHref(snap, volNS+"/action/snapshot"), map[string]any{"name": "fs-image"}))
	im := d.get(img).JSON(t)
	if im["state"] != "AVAILABLE" || href(im, "volume") != fs || !strings.HasPrefix(im["imageLocation"].(string), "file://") {
		t.Fatalf("VolumeImage: %v", im)
	}
	if imgs := d.members(href(d.get(fs).JSON(t), "images"), "volumeVolumeImages"); len(imgs) != 1 || href(imgs[0], "volumeImage") != img {
		t.Fatalf("images of the volume: %v", imgs)
	}
	copied := d.create("volumes", map[string]any{"name": "copy", "volumeTemplate": map[string]any{
		"volumeImage": map[string]any{"href": img}, "volumeConfig": map[string]any{"capacity": 256 << 10}}})
	if c := d.get(copied).JSON(t); c["capacity"].(float64) != 256<<10 {
		t.Fatalf("copy: %v", c)
	}
	if !hasPattern(t, d.volumeFile(copied), "qcow2", testPattern1) {
		t.Fatal("the volume made from the image lacks the data")
	}
	wantStatus(t, "volume smaller than its image", d.postJSON("volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeImage": map[string]any{"href": img}, "volumeConfig": map[string]any{"capacity": 1024}}}), 400, "smaller")
	imgTpl := d.create("volumeTemplates", map[string]any{"volumeImage": map[string]any{"href": img}})
	wantStatus(t, "delete an image a template uses", d.do(http.MethodDelete, img, "", nil), http.StatusConflict, "VolumeTemplate")
	d.deleteOK(imgTpl)
	d.deleteOK(img)

	// deleting a volume removes its file first, then its record
	file := d.volumeFile(copied)
	d.deleteOK(copied)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file of a deleted volume: %v", err)
	}
	wantStatus(t, "delete a deleted volume", d.do(http.MethodDelete, copied, "", nil), http.StatusNotFound)

	// the periodic pass reports files it cannot account for, and keeps them
	stray := filepath.Join(d.stateDir, "pool", "stray.qcow2")
	if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = d.restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.logText(), poolUnknown) {
		if time.Now().After(deadline) {
			t.Fatalf("no report of the stray file:\n%s", d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(stray); err != nil || !strings.Contains(d.logText(), "stray.qcow2") {
		t.Fatalf("stray file: %v", err)
	}
	if strings.Count(d.logText(), poolUnknown) != 1 {
		t.Fatalf("files other than the stray one reported:\n%s", d.logText())
	}
}

func TestVolumeHotPlugAndOnlineResize(t *testing.T) {
	guest := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	m := d.createMachine(config, image, "STARTED")
	d.waitConsole(m, testguest.MarkerReady)
	v := d.newVolume("data", map[string]any{"capacity": 64 << 10})

	var entry string
	d.consoleSince(m, func() { entry = d.attach(m, v, "/dev/vdb") }, "DISK-ADDED vdb", "SIZE vdb 67108864")
	mvs := d.members(href(d.get(m).JSON(t), "volumes"), "machineVolumes")
	if len(mvs) != 1 || mvs[0]["initialLocation"] != "/dev/vdb" || href(mvs[0], "volume") != v || mvs[0]["state"] != "ATTACHED" {
		t.Fatalf("volumes of the Machine: %v", mvs)
	}
	if x := d.get(entry, "Accept", "application/xml"); !strings.Contains(string(x.Body), "<MachineVolume") {
		t.Fatalf("XML MachineVolume: %s", x.Body)
	}

	// bad requests change nothing
	other := d.newVolume("other", map[string]any{"capacity": 1 << 10})
	attachBody := func(vol, loc string) map[string]any {
		return map[string]any{"volume": map[string]any{"href": vol}, "initialLocation": loc}
	}
	wantStatus(t, "attach twice", d.postJSON(m+"/volumes", attachBody(v, "vdc")), http.StatusConflict, "already attached")
	wantStatus(t, "attach at a taken device", d.postJSON(m+"/volumes", attachBody(other, "vdb")), http.StatusConflict, "vdb")
	wantStatus(t, "attach to a missing machine", d.postJSON("machines/nope/volumes", attachBody(other, "vdc")), http.StatusNotFound)
	wantStatus(t, "attach a missing volume", d.postJSON(m+"/volumes", attachBody("volumes/nope", "vdc")), http.StatusBadRequest, "nope")
	wantStatus(t, "attach at an odd device", d.postJSON(m+"/volumes", attachBody(other, "sdb")), http.StatusBadRequest, "sdb")
	wantStatus(t, "attach without a volume", d.postJSON(m+"/volumes", map[string]any{"initialLocation": "vdc"}), http.StatusBadRequest, "volume")
	wantStatus(t, "detach what is not attached", d.do(http.MethodDelete, m+"/volumes/nope", "", nil), http.StatusNotFound)
	wantStatus(t, "delete an attached volume", d.do(http.MethodDelete, v, "", nil), http.StatusConflict, lastSegment(m))
	m2 := d.createMachine(config, image, "STOPPED")
	wantStatus(t, "attach to a second machine", d.postJSON(m2+"/volumes", attachBody(v, "vdb")), http.StatusConflict, lastSegment(m))
	if n := d.count(m + "/volumes"); n != 1 {
		t.Fatalf("%d volumes after bad requests", n)
	}
	if n := d.count(m2 + "/volumes"); n != 0 {
		t.Fatalf("second machine has %d volumes", n)
	}

	// online resize: the running guest sees the new size
	d.consoleSince(m, func() { d.resize(v, 128<<10) }, "SIZE vdb 134217728")

	// hot detach
	d.consoleSince(m, func() { d.detach(entry) }, "DISK-REMOVED vdb")
	if n := d.count(m + "/volumes"); n != 0 {
		t.Fatalf("%d volumes after detach", n)
	}
	if opHref(d.get(v).JSON(t), "delete") == "" {
		t.Fatalf("a detached volume offers no delete: %s", d.get(v).Body)
	}

	// attach in XML, at the first free device
	xmlBody := `<MachineVolume xmlns="` + volNS + `"><volume href="` + other + `"/></MachineVolume>`
	d.consoleSince(m, func() {
		d.accepted("XML attach", d.do(http.MethodPost, m+"/volumes", "application/xml", []byte(xmlBody)))
	}, "DISK-ADDED vdb")

	// deleting the machine detaches, never deletes, its volumes
	d.deleteOK(m)
	if o := d.get(other).JSON(t); o["state"] != "AVAILABLE" || opHref(o, "delete") == "" {
		t.Fatalf("volume of a deleted machine: %v", o)
	}
	d.volumeFile(other)
}

func TestVolumeColdAttachAndDataSurviveRestart(t *testing.T) {
	guest := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	a := d.createMachine(config, image, "STOPPED")
	b := d.createMachine(config, image, "STOPPED")
	v := d.newVolume("data", map[string]any{"capacity": 32 << 10})
	writePattern(t, d.volumeFile(v), "qcow2", testPattern1)

	// cold attach: the guest sees the disk at its next boot
	entry := d.attach(a, v, "vdb")
	d.consoleSince(a, func() { d.act(a, "start", nil) }, "DISKS vda vdb")
	d.act(a, "stop", map[string]any{"force": true})
	d.detach(entry)

	// to another machine, across an agent restart
	d.attach(b, v, "vdc")
	d = d.restart(t)
	mvs := d.members(b+"/volumes", "machineVolumes")
	if len(mvs) != 1 || href(mvs[0], "volume") != v || mvs[0]["state"] != "ATTACHED" {
		t.Fatalf("volumes of the second machine after a restart: %v", mvs)
	}
	// the guest names its disks in the order it finds them
	d.consoleSince(b, func() { d.act(b, "start", nil) }, "DISKS vda vdb")
	d.act(b, "stop", map[string]any{"force": true})
	if !hasPattern(t, d.volumeFile(v), "qcow2", testPattern1) {
		t.Fatal("the data written before the attach is gone")
	}
	d.deleteOK(b)
	if st := d.get(v).JSON(t)["state"]; st != "AVAILABLE" || !hasPattern(t, d.volumeFile(v), "qcow2", testPattern1) {
		t.Fatalf("volume after its machine was deleted: %v", st)
	}
}

func TestCaptureBootsNewMachine(t *testing.T) {
	guest := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	m := d.createMachine(config, image, "STARTED")
	d.waitConsole(m, testguest.MarkerReady)

	wantStatus(t, "capture of a running machine", d.postJSON(m+"/capture", map[string]any{"imageLocation": m}), http.StatusConflict, "STOPPED")
	d.act(m, "stop", nil)
	wantStatus(t, "capture with the snapshot type", d.postJSON(m+"/capture", map[string]any{"imageLocation": m, "type": "SNAPSHOT"}), http.StatusBadRequest, "type")
	wantStatus(t, "capture naming another machine", d.postJSON(m+"/capture", map[string]any{"imageLocation": "machines/other"}), http.StatusBadRequest, "imageLocation")
	captured := d.makeImage(m, "capture", "golden")
	im := d.get(captured).JSON(t)
	file := strings.TrimPrefix(im["imageLocation"].(string), "file://")
	if im["type"] != "IMAGE" || im["state"] != "AVAILABLE" || im["relatedImage"] != nil || !strings.HasPrefix(file, d.stateDir) {
		t.Fatalf("captured image: %v", im)
	}
	if info := qemuImgInfo(t, file); strings.Contains(info, "backing file") {
		t.Fatalf("a captured image is chained:\n%s", info)
	}
	if st := d.state(m); st != "STOPPED" {
		t.Fatalf("Machine after capture: %s", st)
	}

	// the image boots a new machine, and outlives the captured one
	n := d.createMachine(config, captured, "STARTED")
	d.waitConsole(n, testguest.MarkerReady)
	d.deleteOK(m)
	wantStatus(t, "delete an image a machine boots from", d.do(http.MethodDelete, captured, "", nil), http.StatusConflict, lastSegment(n))
}

func TestSnapshotsRestoreOverwrittenBytes(t *testing.T) {
	guest := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	m := d.createMachine(config, image, "STOPPED")
	v := d.newVolume("data", map[string]any{"capacity": 32 << 10})
	d.attach(m, v, "vdb")
	file := d.volumeFile(v)

	writePattern(t, file, "qcow2", testPattern1)
	s1 := d.makeImage(m, "snapshot", "one")
	writePattern(t, file, "qcow2", testPattern2)
	s2 := d.makeImage(m, "snapshot", "two")
	writePattern(t, file, "qcow2", testPattern3)

	img1, img2 := d.get(s1).JSON(t), d.get(s2).JSON(t)
	if img1["type"] != "SNAPSHOT" || img1["relatedImage"] != nil || href(img2, "relatedImage") != s1 {
		t.Fatalf("snapshots: %v\n%v", img1, img2)
	}
	doc := d.get(m).JSON(t)
	if href(doc, "latestSnapshot") != s2 || opHref(doc, volNS+"/action/restore") == "" {
		t.Fatalf("Machine after two snapshots: %v", doc)
	}
	snaps := d.members(href(doc, "snapshots"), "machineSnapshots")
	if len(snaps) != 2 || href(snaps[0], "snapshot") != s1 || href(snaps[1], "snapshot") != s2 {
		t.Fatalf("snapshots of the Machine: %v", snaps)
	}

	// Asked to wait, a snapshot is answered once taken: 201 and the image
	// as it is then.
	op := opHref(doc, volNS+"/action/snapshot")
	body, _ := json.Marshal(map[string]any{"resourceURI": volNS + "/MachineImageCreate", "name": "sync", "imageLocation": m})
	r := d.do(http.MethodPost, op, "application/json", body, "Prefer", "wait=60")
	synced := r.JSON(t)
	if r.Status != http.StatusCreated || r.Header.Get("CIMI-Job-URI") == "" || r.Header.Get("Preference-Applied") != "wait=60" ||
		synced["id"] != r.Header.Get("Location") || synced["state"] != "AVAILABLE" || synced["type"] != "SNAPSHOT" {
		t.Fatalf("snapshot with Prefer: wait=60: %d %v\n%s", r.Status, r.Header, r.Body)
	}
	if j := d.get(r.Header.Get("CIMI-Job-URI")).JSON(t); j["state"] != "SUCCESS" {
		t.Fatalf("the Job of a 201: %v", j)
	}
	d.deleteOK(synced["id"].(string))

	d.restore(m, s1)
	if !hasPattern(t, file, "qcow2", testPattern1) || d.state(m) != "STOPPED" || href(d.get(m).JSON(t), "latestSnapshot") != s1 {
		t.Fatalf("after restoring the first snapshot: %s", d.get(m).Body)
	}
	// deleting the older snapshot leaves the newer one whole
	d.deleteOK(s1)
	if img2 := d.get(s2).JSON(t); img2["relatedImage"] != nil {
		t.Fatalf("snapshot whose predecessor was deleted: %v", img2)
	}
	d.restore(m, s2)
	if !hasPattern(t, file, "qcow2", testPattern2) {
		t.Fatal("restore of the second snapshot did not bring its bytes back")
	}

	// a running snapshot restores a running machine
	d.act(m, "start", nil)
	d.waitConsole(m, testguest.MarkerReady)
	s3 := d.makeImage(m, "snapshot", "running")
	d.act(m, "stop", map[string]any{"force": true})
	d.restore(m, s3)
	if st := d.state(m); st != "STARTED" {
		t.Fatalf("Machine restored from a running snapshot is %s", st)
	}
	d.act(m, "stop", map[string]any{"force": true})

	// what snapshots forbid
	raw := d.newVolume("raw", map[string]any{"capacity": 1 << 10, "diskFormat": "raw"})
	rawEntry := d.attach(m, raw, "vdc")
	wantStatus(t, "snapshot with a raw volume", d.postJSON(m+"/snapshot", map[string]any{"imageLocation": m}), http.StatusConflict, "raw")
	wantStatus(t, "restore with a volume attached since", d.postJSON(m+"/restore", map[string]any{"action": "restore", "image": map[string]any{"href": s2}}), http.StatusConflict, lastSegment(raw))
	d.detach(rawEntry)
	entries := d.members(m+"/volumes", "machineVolumes")
	wantStatus(t, "detach a volume snapshots live in", d.do(http.MethodDelete, entries[0]["id"].(string), "", nil), http.StatusConflict, "snapshot")
	wantStatus(t, "grow a volume snapshots live in", d.do(http.MethodPut, v+"?$select=capacity", "application/json", []byte(`{"capacity":65536}`)), http.StatusConflict, "snapshot")
	wantStatus(t, "machine from a snapshot", d.postJSON("machines", map[string]any{"machineTemplate": map[string]any{
		"machineConfig": map[string]any{"href": config}, "machineImage": map[string]any{"href": s2}}}), http.StatusBadRequest, "SNAPSHOT")
	other := d.createMachine(config, image, "STOPPED")
	wantStatus(t, "restore another machine's snapshot", d.postJSON(other+"/restore", map[string]any{"action": "restore", "image": map[string]any{"href": s2}}), http.StatusBadRequest, lastSegment(m))
	wantStatus(t, "restore from an IMAGE", d.postJSON(m+"/restore", map[string]any{"action": "restore", "image": map[string]any{"href": image}}), http.StatusBadRequest, "IMAGE")
	wantStatus(t, "restore without an image", d.postJSON(m+"/restore", map[string]any{"action": "restore"}), http.StatusBadRequest, "image")

	// deleting the machine deletes its snapshots, also from the volume it leaves
	d.deleteOK(m)
	for _, s := range []string{s2, s3} {
		if r := d.get(s); r.Status != http.StatusNotFound {
			t.Fatalf("snapshot %s of a deleted machine: %d", s, r.Status)
		}
	}
	if out, _ := exec.Command("qemu-img", "snapshot", "-l", file).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Fatalf("snapshots left in the volume:\n%s", out)
	}
	if st := d.get(v).JSON(t)["state"]; st != "AVAILABLE" {
		t.Fatalf("volume after the machine was deleted: %v", st)
	}
	d.deleteOK(v)
}

// bigMachine creates a STOPPED Machine whose boot disk holds 512 MiB of
// data, so that copying it takes a few seconds.
func (d *daemon) bigMachine(image string) string {
	d.t.Helper()
	config := d.create("machineConfigs", map[string]any{"name": "big", "cpu": 1, "memory": 160 * 1024,
		"disks": []map[string]any{{"capacity": 1 << 20}}})
	m := d.createMachine(config, image, "STOPPED")
	disk := filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(m)+"-disk0.qcow2")
	qemuIO(d.t, disk, "qcow2", "write -P 0x11 256M 512M")
	return m
}

// waitRunning waits until a Job runs and has made progress.
func (d *daemon) waitRunning(jobURI string) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j := d.get(jobURI).JSON(d.t)
		if j["state"] == "RUNNING" && j["progress"].(float64) > 0 {
			return
		}
		if j["state"] != "QUEUED" && j["state"] != "RUNNING" || time.Now().After(deadline) {
			d.t.Fatalf("job never ran long enough: %v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStorageJobsSurviveKill kills the agent in the middle of a capture, a
// snapshot, an attach and deletes, and checks that after a restart every
// Job ends, nothing is left half done and no file leaks.
func TestStorageJobsSurviveKill(t *testing.T) {
	guest := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)

	// a capture killed while it copies is resumed and finishes
	big := d.bigMachine(image)
	r := d.postJSON(big+"/capture", map[string]any{"name": "resumed"})
	wantStatus(t, "capture", r, http.StatusAccepted)
	captureJob, captured := r.Header.Get("CIMI-Job-URI"), r.Header.Get("Location")
	d.waitRunning(captureJob)
	if st := d.state(big); st != "CAPTURING" {
		t.Fatalf("Machine during capture: %s", st)
	}
	d = d.restart(t)
	if j := d.waitJob(captureJob, 3*time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("capture after a restart: %v", j)
	}
	if !strings.Contains(d.logText(), "resuming job after restart") {
		t.Fatal("the capture was not interrupted")
	}
	if im := d.get(captured).JSON(t); im["state"] != "AVAILABLE" || d.state(big) != "STOPPED" {
		t.Fatalf("image of a resumed capture: %v", im)
	}
	// a capture stopped on request leaves nothing
	r = d.postJSON(big+"/capture", map[string]any{"name": "stopped"})
	wantStatus(t, "capture", r, http.StatusAccepted)
	stoppedJob, stoppedImage := r.Header.Get("CIMI-Job-URI"), r.Header.Get("Location")
	d.waitRunning(stoppedJob)
	wantStatus(t, "stop the capture", d.postJSON(stoppedJob+"/stop", map[string]any{"action": volNS + "/action/stop"}), http.StatusAccepted)
	if j := d.waitJob(stoppedJob, time.Minute); j["state"] != "STOPPED" {
		t.Fatalf("stopped capture: %v", j)
	}
	if r := d.get(stoppedImage); r.Status != http.StatusNotFound || d.state(big) != "STOPPED" {
		t.Fatalf("image of a stopped capture: %d %s", r.Status, r.Body)
	}

	// attach, snapshot and deletes, each killed right after it started
	m := d.createMachine(config, image, "STARTED")
	v := d.newVolume("data", map[string]any{"capacity": 64 << 10})
	doomed := d.newVolume("doomed", map[string]any{"capacity": 64 << 10})
	jobs := map[string]string{}
	start := func(what string, r response) {
		t.Helper()
		wantStatus(t, what, r, http.StatusAccepted)
		jobs[what] = r.Header.Get("CIMI-Job-URI")
	}
	kill := func() {
		t.Helper()
		time.Sleep(20 * time.Millisecond)
		d = d.restart(t)
		for what, uri := range jobs {
			if j := d.waitJob(uri, 3*time.Minute); j["state"] == "RUNNING" || j["state"] == "QUEUED" {
				t.Fatalf("%s after a restart: %v", what, j)
			}
		}
		jobs = map[string]string{}
	}
	start("attach", d.postJSON(m+"/volumes", map[string]any{"volume": map[string]any{"href": v}}))
	start("delete volume", d.do(http.MethodDelete, doomed, "", nil))
	kill()
	d.waitState(m, "STARTED", time.Minute)
	start("snapshot", d.postJSON(m+"/snapshot", map[string]any{"name": "s"}))
	kill()
	start("delete machine", d.do(http.MethodDelete, m, "", nil))
	kill()

	// every record is consistent with what is in the pool and libvirt
	for _, gone := range []string{m, doomed} {
		if r := d.get(gone); r.Status != http.StatusNotFound {
			t.Fatalf("%s after its delete: %d %s", gone, r.Status, r.Body)
		}
	}
	if st := d.get(v).JSON(t); st["state"] != "AVAILABLE" || opHref(st, "delete") == "" {
		t.Fatalf("volume of the deleted machine: %v", st)
	}
	for _, im := range d.members("machineImages", "machineImages") {
		if im["state"] != "AVAILABLE" || im["type"] != "IMAGE" {
			t.Fatalf("image after the restarts: %v", im)
		}
	}
	for _, f := range d.poolFiles() {
		if strings.HasSuffix(f, ".part") || strings.Contains(f, lastSegment(m)) || strings.Contains(f, lastSegment(doomed)) ||
			strings.Contains(f, lastSegment(stoppedImage)) {
			t.Fatalf("left in the pool: %s (all: %v)", f, d.poolFiles())
		}
	}
	if out, _ := virsh("list", "--all", "--name"); slices.Contains(strings.Fields(out), "cimid-"+d.instance()+"-"+lastSegment(m)) {
		t.Fatal("domain of the deleted machine is still defined")
	}
	if strings.Contains(d.logText(), poolUnknown) {
		t.Fatalf("the pool holds files no record accounts for:\n%s", d.logText())
	}
}

func TestCLIVolumesAndSnapshots(t *testing.T) {
	guest := testguest.Build(t)
	bin := cimiBinary(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	m := d.createMachine(config, image, "STOPPED")
	id := lastSegment(m)

	v := strings.TrimSpace(lastLine(d.cli(bin, false, "volume", "create", "--name", "cli-vol", "--capacity", "32M")))
	if !strings.Contains(v, "/cimi/volumes/") || d.get(v).JSON(t)["capacity"].(float64) != 32<<10 {
		t.Fatalf("volume create printed %q", v)
	}
	if list := d.cli(bin, false, "volume", "list"); !strings.Contains(list, "cli-vol") || !strings.Contains(list, "32 MiB") {
		t.Fatalf("volume list:\n%s", list)
	}
	d.cli(bin, false, "volume", "resize", lastSegment(v), "--capacity", "64M")
	if c := d.get(v).JSON(t)["capacity"].(float64); c != 64<<10 {
		t.Fatalf("capacity after cimi volume resize: %v", c)
	}
	if out := d.cli(bin, true, "volume", "create", "--name", "x", "--capacity", "0"); !strings.Contains(out, "size") {
		t.Fatalf("volume create --capacity 0:\n%s", out)
	}
	d.cli(bin, false, "machine", "attach", id, lastSegment(v), "--location", "vdb")
	if n := d.count(m + "/volumes"); n != 1 {
		t.Fatalf("%d volumes after cimi machine attach", n)
	}
	if out := d.cli(bin, true, "volume", "delete", lastSegment(v)); !strings.Contains(out, "delete") {
		t.Fatalf("delete of an attached volume:\n%s", out)
	}
	snap := strings.TrimSpace(lastLine(d.cli(bin, false, "machine", "snapshot", id, "--name", "s1")))
	if d.get(snap).JSON(t)["type"] != "SNAPSHOT" {
		t.Fatalf("machine snapshot printed %q", snap)
	}
	d.cli(bin, false, "machine", "restore", id, lastSegment(snap))
	d.cli(bin, false, "image", "delete", lastSegment(snap))
	d.cli(bin, false, "machine", "detach", id, "vdb")
	if n := d.count(m + "/volumes"); n != 0 {
		t.Fatalf("%d volumes after cimi machine detach", n)
	}
	captured := strings.TrimSpace(lastLine(d.cli(bin, false, "machine", "capture", id, "--name", "golden")))
	if d.get(captured).JSON(t)["type"] != "IMAGE" {
		t.Fatalf("machine capture printed %q", captured)
	}
	img := strings.TrimSpace(lastLine(d.cli(bin, false, "volume", "snapshot", lastSegment(v), "--name", "vi")))
	if !strings.Contains(img, "/cimi/volumeImages/") {
		t.Fatalf("volume snapshot printed %q", img)
	}
	d.cli(bin, false, "volume", "delete", lastSegment(v))
	if r := d.get(v); r.Status != http.StatusNotFound {
		t.Fatalf("volume after cimi volume delete: %d", r.Status)
	}
}

// liveDisks lists the image files the running domain of a Machine has
// open, by guest device.
func (d *daemon) liveDisks(machine string) map[string]string {
	d.t.Helper()
	out, err := virsh("domblklist", "cimid-"+d.instance()+"-"+lastSegment(machine))
	if err != nil {
		d.t.Fatalf("domblklist: %v: %s", err, out)
	}
	disks := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			disks[f[0]] = f[1]
		}
	}
	return disks
}

// consolesSince runs action and waits for marker on the consoles of every
// one of machines, looking only at what they print after it started.
func (d *daemon) consolesSince(machines []string, action func(), marker string) {
	d.t.Helper()
	for _, m := range machines {
		if err := os.Truncate(d.console(m), 0); err != nil {
			d.t.Fatal(err)
		}
	}
	action()
	for _, m := range machines {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := testguest.WaitConsole(ctx, d.console(m), marker)
		cancel()
		if err != nil {
			d.t.Fatalf("console of %s: %v", lastSegment(m), err)
		}
	}
}

// TestShareableVolumeOnTwoRunningMachines hot-plugs one shareable volume
// into two running guests (the agent killed in the middle of the second
// attach), grows it under both, and lets it go one Machine at a time.
func TestShareableVolumeOnTwoRunningMachines(t *testing.T) {
	guest := testguest.Build(t)
	bin := cimiBinary(t)
	d := storageDaemon(t, newStateDir(t))
	config, image := d.tinyConfig(), d.registerImage(guest.Disk)
	a := d.createMachine(config, image, "STARTED")
	b := d.createMachine(config, image, "STARTED")
	both := []string{a, b}
	for _, m := range both {
		d.waitConsole(m, testguest.MarkerReady)
	}

	// made with the CLI; raw without saying so
	v := strings.TrimSpace(lastLine(d.cli(bin, false, "volume", "create", "--name", "shared", "--capacity", "64M", "--shareable")))
	if doc := d.get(v).JSON(t); doc["shareable"] != true || doc["diskFormat"] != "raw" {
		t.Fatalf("shareable volume: %v", doc)
	}
	if x := string(d.get(v, "Accept", "application/xml").Body); !strings.Contains(x, "<shareable>true</shareable>") {
		t.Fatalf("XML Volume: %s", x)
	}
	if list := d.cli(bin, false, "volume", "list"); !strings.Contains(list, "SHAREABLE") || !strings.Contains(list, "yes") {
		t.Fatalf("volume list:\n%s", list)
	}
	file := d.volumeFile(v)
	if !strings.HasSuffix(file, ".raw") || !strings.Contains(qemuImgInfo(t, file), "file format: raw") {
		t.Fatalf("file of the shareable volume: %s\n%s", file, qemuImgInfo(t, file))
	}

	// a shareable qcow2 volume is refused, in every form
	volumes, files := d.count("volumes"), len(d.poolFiles())
	wantStatus(t, "shareable qcow2", d.postJSON("volumes", map[string]any{"volumeTemplate": map[string]any{
		"volumeConfig": map[string]any{"capacity": 1024, "shareable": true, "diskFormat": "qcow2"}}}), http.StatusBadRequest, "shareable", "raw")
	xmlBody := `<VolumeCreate xmlns="` + volNS + `"><volumeTemplate><volumeConfig><capacity>1024</capacity>` +
		`<diskFormat>qcow2</diskFormat><shareable>true</shareable></volumeConfig></volumeTemplate></VolumeCreate>`
	wantStatus(t, "shareable qcow2 in XML", d.do(http.MethodPost, "volumes", "application/xml", []byte(xmlBody)), http.StatusBadRequest, "raw")
	if out := d.cli(bin, true, "volume", "create", "--name", "x", "--capacity", "1M", "--shareable", "--disk-format", "qcow2"); !strings.Contains(out, "raw") {
		t.Fatalf("cimi volume create --shareable --disk-format qcow2:\n%s", out)
	}
	if n, f := d.count("volumes"), len(d.poolFiles()); n != volumes || f != files {
		t.Fatalf("refused creates changed something: %d volumes (was %d), %d files (was %d)", n, volumes, f, files)
	}

	// hot-plugged into both running guests at once; the agent is killed
	// right after the second attach was accepted
	entries := map[string]string{}
	d.consoleSince(a, func() { entries[a] = d.attach(a, v, "vdb") }, "DISK-ADDED vdb", "SIZE vdb 67108864")
	d.consoleSince(b, func() {
		r := d.postJSON(b+"/volumes", map[string]any{"volume": map[string]any{"href": v}, "initialLocation": "vdb"})
		wantStatus(t, "attach to the second machine", r, http.StatusAccepted)
		entries[b] = r.Header.Get("Location")
		time.Sleep(20 * time.Millisecond)
		d = d.restart(t)
		if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 3*time.Minute); j["state"] != "SUCCESS" {
			t.Fatalf("attach across a kill: %v", j)
		}
	}, "DISK-ADDED vdb", "SIZE vdb 67108864")
	for _, m := range both {
		if got := d.liveDisks(m)["vdb"]; got != file {
			t.Fatalf("vdb of the running guest of %s is %q, want %s", lastSegment(m), got, file)
		}
		mvs := d.members(m+"/volumes", "machineVolumes")
		if len(mvs) != 1 || href(mvs[0], "volume") != v || mvs[0]["state"] != "ATTACHED" {
			t.Fatalf("volumes of %s: %v", lastSegment(m), mvs)
		}
	}
	// the volume names both, in the order they attached it
	if got := d.get(v).JSON(t)["machines"]; !reflect.DeepEqual(got, []any{map[string]any{"href": a}, map[string]any{"href": b}}) {
		t.Fatalf("machines of the shared volume: %v", got)
	}
	if list := d.cli(bin, false, "volume", "list"); !strings.Contains(list, "MACHINES") || !strings.Contains(list, lastSegment(a)+","+lastSegment(b)) {
		t.Fatalf("volume list:\n%s", list)
	}

	// a volume that is not shareable stays with one Machine
	plain := d.newVolume("plain", map[string]any{"capacity": 1 << 10})
	d.attach(a, plain, "vdc")
	wantStatus(t, "attach a plain volume to a second machine", d.postJSON(b+"/volumes", map[string]any{"volume": map[string]any{"href": plain}}),
		http.StatusConflict, lastSegment(a), "not shareable")
	if n := d.count(b + "/volumes"); n != 1 {
		t.Fatalf("second machine has %d volumes after a refused attach", n)
	}

	// in use by both: no delete, no image; growing reaches both guests
	wantStatus(t, "delete while attached", d.do(http.MethodDelete, v, "", nil), http.StatusConflict, lastSegment(a), lastSegment(b))
	wantStatus(t, "image while the guests run", d.postJSON(v+"/snapshot", map[string]any{"name": "img"}), http.StatusConflict, lastSegment(a), lastSegment(b))
	wantStatus(t, "snapshot of a machine with the shared volume", d.postJSON(b+"/snapshot", map[string]any{"imageLocation": b}), http.StatusConflict, "raw")
	d.consolesSince(both, func() { d.resize(v, 128<<10) }, "SIZE vdb 134217728")

	// detaching from one leaves the other with it
	d.consoleSince(b, func() { d.detach(entries[b]) }, "DISK-REMOVED vdb")
	if _, held := d.liveDisks(b)["vdb"]; held {
		t.Fatal("the detached guest still has vdb")
	}
	if got := d.liveDisks(a)["vdb"]; got != file || d.get(entries[a]).JSON(t)["state"] != "ATTACHED" {
		t.Fatalf("the other machine after the detach: vdb %q, %s", got, d.get(entries[a]).Body)
	}
	d.consoleSince(a, func() { d.resize(v, 192<<10) }, "SIZE vdb 201326592")
	r := d.do(http.MethodDelete, v, "", nil)
	wantStatus(t, "delete while one machine has it", r, http.StatusConflict, lastSegment(a))
	if msg := r.JSON(t)["statusMessage"].(string); strings.Contains(msg, lastSegment(b)) {
		t.Fatalf("delete refused naming the machine it was detached from: %q", msg)
	}

	// detached from both, it goes
	d.consoleSince(a, func() { d.detach(entries[a]) }, "DISK-REMOVED vdb")
	d.deleteOK(v)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file of the deleted volume: %v", err)
	}
}
