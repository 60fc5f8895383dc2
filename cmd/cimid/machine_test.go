package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// machineDaemon starts cimid with the host's guest domain type and quick
// ACPI retries.
func machineDaemon(t *testing.T, dir string) *daemon {
	t.Helper()
	return startDaemon(t, dir, "--domain-type", testguest.DomainType())
}

// instanceOf reads the instance id from the entry point's name.
func (d *daemon) instance() string {
	d.t.Helper()
	return strings.TrimPrefix(d.get("cloudEntryPoint").JSON(d.t)["name"].(string), "cimid-")
}

// create POSTs body to a collection and returns the new resource's URI
// after its Job succeeded.
func (d *daemon) create(collection string, body map[string]any) string {
	d.t.Helper()
	r := d.postJSON(collection, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusAccepted {
		d.t.Fatalf("POST %s: %d %s", collection, r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if loc == "" || r.Header.Get("CIMI-Job-URI") == "" {
		d.t.Fatalf("POST %s: missing Location or CIMI-Job-URI: %v", collection, r.Header)
	}
	if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 3*time.Minute); j["state"] != "SUCCESS" {
		d.t.Fatalf("create in %s: job %v", collection, j)
	}
	return loc
}

// registerImage registers a host file as a MachineImage.
func (d *daemon) registerImage(path string) string {
	d.t.Helper()
	return d.create("machineImages", map[string]any{
		"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineImageCreate", "name": filepath.Base(path),
		"imageLocation": "file://" + path})
}

// tinyConfig creates a MachineConfiguration small enough for test guests.
func (d *daemon) tinyConfig() string {
	d.t.Helper()
	return d.create("machineConfigs", map[string]any{"name": "tiny", "cpu": 1, "memory": 160 * 1024})
}

// createMachine creates a Machine from a template given by value.
func (d *daemon) createMachine(config, image, initialState string) string {
	d.t.Helper()
	return d.create("machines", map[string]any{
		"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineCreate", "name": "test",
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": config},
			"machineImage": map[string]any{"href": image}, "initialState": initialState}})
}

// action POSTs a CIMI action found in the Machine's operations and returns
// the Job URI.
func (d *daemon) action(machine, name string, params map[string]any) string {
	d.t.Helper()
	m := d.get(machine).JSON(d.t)
	href := opHref(m, "http://schemas.dmtf.org/cimi/1/action/"+name)
	if href == "" {
		d.t.Fatalf("Machine in state %v does not offer %s: %v", m["state"], name, m["operations"])
	}
	body := map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action", "action": "http://schemas.dmtf.org/cimi/1/action/" + name}
	for k, v := range params {
		body[k] = v
	}
	r := d.postJSON(href, body)
	if r.Status != http.StatusAccepted || r.Header.Get("CIMI-Job-URI") == "" {
		d.t.Fatalf("%s: %d %s", name, r.Status, r.Body)
	}
	return r.Header.Get("CIMI-Job-URI")
}

// act runs an action and waits for its Job to succeed.
func (d *daemon) act(machine, name string, params map[string]any) map[string]any {
	d.t.Helper()
	j := d.waitJob(d.action(machine, name, params), 3*time.Minute)
	if j["state"] != "SUCCESS" {
		d.t.Fatalf("%s: job %v\nmachine: %s", name, j, d.get(machine).Body)
	}
	return j
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

func (d *daemon) state(machine string) string {
	d.t.Helper()
	return d.get(machine).JSON(d.t)["state"].(string)
}

// waitState polls until the Machine shows want.
func (d *daemon) waitState(machine, want string, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := d.state(machine)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("Machine is %s after %v, want %s", got, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastSegment(uri string) string { return uri[strings.LastIndex(uri, "/")+1:] }

// console returns the path of a Machine's console log.
func (d *daemon) console(machine string) string {
	return filepath.Join(d.stateDir, "console", lastSegment(machine)+".log")
}

// waitConsole waits for a marker on the Machine's console, then empties
// the log so that the next wait sees only new output.
func (d *daemon) waitConsole(machine, marker string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := testguest.WaitConsole(ctx, d.console(machine), marker); err != nil {
		d.t.Fatalf("console of %s: %v", lastSegment(machine), err)
	}
	if err := os.Truncate(d.console(machine), 0); err != nil {
		d.t.Fatal(err)
	}
}

func virsh(args ...string) (string, error) {
	out, err := exec.Command("virsh", append([]string{"-c", "qemu:///system", "-q"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func domainState(name string) string {
	out, err := virsh("domstate", name)
	if err != nil {
		return "absent"
	}
	return out
}

func TestMachineLifecycle(t *testing.T) {
	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	image := d.registerImage(guest.Disk)
	img := d.get(image).JSON(t)
	if img["state"] != "AVAILABLE" || img["diskFormat"] != "qcow2" || img["type"] != "IMAGE" {
		t.Fatalf("image: %v", img)
	}
	config := d.tinyConfig()
	template := d.create("machineTemplates", map[string]any{"name": "tpl",
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": config},
			"machineImage": map[string]any{"href": image}, "initialState": "STARTED"}})

	// create from a template by reference
	m := d.create("machines", map[string]any{"name": "web", "machineTemplate": map[string]any{"href": template}})
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)
	if st := d.state(m); st != "STARTED" {
		t.Fatalf("new Machine is %s", st)
	}
	d.waitConsole(m, testguest.MarkerReady)
	doc := d.get(m).JSON(t)
	if doc["cpu"].(float64) != 1 || doc["memory"].(float64) != 160*1024 || doc["cpuArch"] != "x86_64" {
		t.Fatalf("Machine: %v", doc)
	}
	if opHref(doc, "http://schemas.dmtf.org/cimi/1/action/start") != "" || opHref(doc, "http://schemas.dmtf.org/cimi/1/action/stop") == "" {
		t.Fatalf("operations of a STARTED Machine: %v", doc["operations"])
	}
	disks := d.get(doc["disks"].(map[string]any)["href"].(string)).JSON(t)
	if disks["count"].(float64) != 1 {
		t.Fatalf("disks: %v", disks)
	}
	if x := d.get(m, "Accept", "application/xml"); x.Status != 200 || !strings.Contains(string(x.Body), "<state>STARTED</state>") {
		t.Fatalf("XML Machine: %s", x.Body)
	}
	// an action that is not valid now is refused and changes nothing
	r := d.postJSON(m+"/start", map[string]any{"action": "http://schemas.dmtf.org/cimi/1/action/start"})
	if r.Status != http.StatusConflict || d.state(m) != "STARTED" {
		t.Fatalf("start of a STARTED Machine: %d %s", r.Status, r.Body)
	}

	// graceful stop: the guest's own ACPI shutdown
	j := d.act(m, "stop", map[string]any{"force": false})
	d.waitConsole(m, testguest.MarkerACPIPoweroff)
	if st := d.state(m); st != "STOPPED" || domainState(domain) != "shut off" {
		t.Fatalf("after stop: %s, libvirt %s (job %v)", st, domainState(domain), j)
	}

	d.act(m, "start", nil)
	d.waitConsole(m, testguest.MarkerReady)

	d.act(m, "pause", nil)
	if st := d.state(m); st != "PAUSED" || domainState(domain) != "paused" {
		t.Fatalf("after pause: %s / %s", st, domainState(domain))
	}
	d.act(m, "start", nil)
	if st := d.state(m); st != "STARTED" || domainState(domain) != "running" {
		t.Fatalf("after resume: %s / %s", st, domainState(domain))
	}

	d.act(m, "suspend", nil)
	if st := d.state(m); st != "SUSPENDED" || domainState(domain) != "shut off" {
		t.Fatalf("after suspend: %s / %s", st, domainState(domain))
	}
	if opHref(d.get(m).JSON(t), "http://schemas.dmtf.org/cimi/1/action/start") == "" {
		t.Fatal("a SUSPENDED Machine does not offer start")
	}
	d.act(m, "start", nil)
	if st := d.state(m); st != "STARTED" || domainState(domain) != "running" {
		t.Fatalf("after restore: %s / %s", st, domainState(domain))
	}

	// graceful restart: ACPI power-off, then a new boot
	os.Truncate(d.console(m), 0)
	d.act(m, "restart", nil)
	d.waitConsole(m, testguest.MarkerReady)
	if st := d.state(m); st != "STARTED" {
		t.Fatalf("after restart: %s", st)
	}

	d.act(m, "stop", map[string]any{"force": true})
	if st := d.state(m); st != "STOPPED" || domainState(domain) != "shut off" {
		t.Fatalf("after forced stop: %s / %s", st, domainState(domain))
	}

	// PUT changes name, description and properties
	put := d.do(http.MethodPut, m, "application/json", []byte(`{"name":"renamed","description":"d","properties":{"team":"a"}}`))
	if put.Status != 200 || d.get(m).JSON(t)["name"] != "renamed" {
		t.Fatalf("PUT: %d %s", put.Status, put.Body)
	}

	// delete leaves nothing behind
	del := d.do(http.MethodDelete, m, "", nil)
	if del.Status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", del.Status, del.Body)
	}
	if j := d.waitJob(del.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("delete job: %v", j)
	}
	if r := d.get(m); r.Status != 404 {
		t.Fatalf("deleted Machine: %d", r.Status)
	}
	if st := domainState(domain); st != "absent" {
		t.Fatalf("domain after delete: %s", st)
	}
	leftovers, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(m)+"*"))
	if _, err := os.Stat(d.console(m)); err == nil || len(leftovers) > 0 {
		t.Fatalf("files left after delete: %v console err=%v", leftovers, err)
	}
}

func TestGuestPowerOffIsSeenWithoutAPICall(t *testing.T) {
	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.PoweroffDisk), "STARTED")
	d.waitConsole(m, testguest.MarkerReady)
	d.waitState(m, "STOPPED", 60*time.Second)
}

func TestInitialStateStopped(t *testing.T) {
	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STOPPED")
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)
	if st := d.state(m); st != "STOPPED" || domainState(domain) != "shut off" {
		t.Fatalf("Machine created STOPPED: %s / libvirt %s", st, domainState(domain))
	}
}
