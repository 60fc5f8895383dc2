package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// The tests in this file put Machines in the hard cases: a guest that
// ignores the ACPI power button while the agent is killed, changes made
// behind the agent's back with virsh, domains the agent does not own, bad
// requests, and what the provider advertises about itself.

const faultNS = "http://schemas.dmtf.org/cimi/1"

// faultZeroImage writes a 1 MiB raw image of zeros. SeaBIOS finds nothing to
// boot on it and keeps the domain running; with no operating system, no one
// answers the ACPI power button.
func faultZeroImage(t *testing.T) string {
	t.Helper()
	path := filepath.Join(testguest.TempDir(t), "zeros.raw")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// faultCleanupLibvirt removes, when the test ends, every domain named after the
// daemon's instance and the instance's storage pool: the harness removes
// the state directory, not what libvirt keeps about it. Daemons started
// later on the same state directory are stopped before this runs (cleanups
// run last-registered first).
func faultCleanupLibvirt(t *testing.T, d *daemon) {
	t.Helper()
	inst := d.instance()
	t.Cleanup(func() {
		d.kill()
		faultRemoveDomains("cimid-" + inst + "-")
		virsh("pool-destroy", "cimid-"+inst)
		virsh("pool-undefine", "cimid-"+inst)
	})
}

// faultDomainsWithPrefix lists the domains, running or not, whose names start
// with prefix.
func faultDomainsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := virsh("list", "--all", "--name")
	if err != nil {
		t.Fatalf("virsh list: %v: %s", err, out)
	}
	var names []string
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// faultRemoveDomains powers off and undefines every domain named with prefix.
func faultRemoveDomains(prefix string) {
	out, err := virsh("list", "--all", "--name")
	if err != nil {
		return
	}
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, prefix) {
			virsh("destroy", n)
			virsh("undefine", "--managed-save", n)
		}
	}
}

// faultMetadata is the agent's element in a domain's <metadata>.
type faultMetadata struct {
	Instance     string `xml:"instance"`
	MachineID    string `xml:"machine-id"`
	DesiredState string `xml:"desired-state"`
	StopDeadline string `xml:"stop-deadline"`
	Force        bool   `xml:"force-after-deadline"`
}

// faultDomainXML reads a domain's live definition.
func faultDomainXML(t *testing.T, name string) (typ string, md faultMetadata, raw string) {
	t.Helper()
	out, err := virsh("dumpxml", name)
	if err != nil {
		t.Fatalf("virsh dumpxml %s: %v: %s", name, err, out)
	}
	var dom struct {
		Type     string `xml:"type,attr"`
		Metadata struct {
			Machine faultMetadata `xml:"urn:x-cimid:domain:1 machine"`
		} `xml:"metadata"`
	}
	if err := xml.Unmarshal([]byte(out), &dom); err != nil {
		t.Fatalf("domain XML of %s: %v\n%s", name, err, out)
	}
	return dom.Type, dom.Metadata.Machine, out
}

// faultWaitStopDeadline polls the domain's metadata until a stop deadline shows
// (the stop Job writes it as its first step) and returns it as written.
func faultWaitStopDeadline(t *testing.T, domain string) (string, time.Time) {
	t.Helper()
	end := time.Now().Add(15 * time.Second)
	for {
		_, md, raw := faultDomainXML(t, domain)
		if md.StopDeadline != "" {
			at, err := time.Parse(time.RFC3339, md.StopDeadline)
			if err != nil {
				t.Fatalf("stop deadline %q: %v", md.StopDeadline, err)
			}
			return md.StopDeadline, at
		}
		if time.Now().After(end) {
			t.Fatalf("no stop deadline in the metadata of %s:\n%s", domain, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultWaitJobState polls a Job until it shows want.
func (d *daemon) faultWaitJobState(jobURI, want string, timeout time.Duration) map[string]any {
	d.t.Helper()
	end := time.Now().Add(timeout)
	for {
		j := d.get(jobURI).JSON(d.t)
		if j["state"] == want {
			return j
		}
		if time.Now().After(end) {
			d.t.Fatalf("job %s is %v after %v, want %s: %v", jobURI, j["state"], timeout, want, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func faultJobEnded(t *testing.T, j map[string]any) time.Time {
	t.Helper()
	s, _ := j["timeOfStatusChange"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("job timeOfStatusChange %q: %v", s, err)
	}
	return at
}

func (d *daemon) faultDomainOf(machine string) string {
	d.t.Helper()
	return "cimid-" + d.instance() + "-" + lastSegment(machine)
}

func TestStopDeadlineSurvivesAgentKill(t *testing.T) {
	zeros := faultZeroImage(t)
	cases := []struct {
		name           string
		stopTimeout    int
		forceOnTimeout bool
		killAfter      time.Duration // after the stop request
	}{
		{"forceOnTimeout", 20, true, 6 * time.Second},
		{"noForceOnTimeout", 8, false, 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := newStateDir(t)
			d := machineDaemon(t, dir)
			faultCleanupLibvirt(t, d)
			m := d.createMachine(d.tinyConfig(), d.registerImage(zeros), "STARTED")
			domain := d.faultDomainOf(m)
			if st := domainState(domain); st != "running" {
				t.Fatalf("new Machine's domain is %s", st)
			}

			sent := time.Now()
			job := d.action(m, "stop", map[string]any{"force": false, "stopTimeout": c.stopTimeout, "forceOnTimeout": c.forceOnTimeout})
			d.faultWaitJobState(job, "RUNNING", 30*time.Second)
			if st := d.state(m); st != "STOPPING" {
				t.Fatalf("Machine is %s while its graceful stop runs", st)
			}
			written, deadline := faultWaitStopDeadline(t, domain)
			if want := sent.Add(time.Duration(c.stopTimeout) * time.Second); deadline.Before(want.Add(-2*time.Second)) || deadline.After(want.Add(2*time.Second)) {
				t.Fatalf("stop deadline %s, want about %s (request time + %d s)", written, want.UTC().Format(time.RFC3339), c.stopTimeout)
			}
			if _, md, _ := faultDomainXML(t, domain); md.DesiredState != "STOPPED" || md.Force != c.forceOnTimeout || md.MachineID != lastSegment(m) {
				t.Fatalf("domain metadata during the stop: %+v", md)
			}

			// Kill the agent well before the deadline, while the guest
			// ignores the power button.
			time.Sleep(time.Until(sent.Add(c.killAfter)))
			if st := domainState(domain); st != "running" {
				t.Fatalf("the guest obeyed ACPI (%s): the test needs one that ignores it", st)
			}
			d.kill()
			restarted := time.Now()
			d2 := machineDaemon(t, dir)
			if st := d2.state(m); st != "STOPPING" {
				t.Fatalf("Machine is %s right after the restart, want STOPPING", st)
			}
			if j := d2.get(job).JSON(t); j["state"] != "RUNNING" {
				t.Fatalf("stop Job after the restart: %v", j)
			}
			if again, _ := faultWaitStopDeadline(t, domain); again != written {
				t.Fatalf("stop deadline changed over the restart: %s, then %s", written, again)
			}

			j := d2.waitJob(job, time.Duration(c.stopTimeout)*time.Second+time.Minute)
			ended := faultJobEnded(t, j)
			// Only the deadline can end this stop: never before it (the
			// metadata holds it to the second, the record more finely).
			if ended.Before(deadline.Add(-200 * time.Millisecond)) {
				t.Fatalf("stop Job ended at %s, before the deadline %s: %v", ended.Format(time.RFC3339Nano), written, j)
			}
			// A deadline restarted from the new agent's start would end
			// the Job no earlier than restarted+stopTimeout.
			if fresh := restarted.Add(time.Duration(c.stopTimeout) * time.Second); !ended.Before(fresh) {
				t.Fatalf("stop Job ended at %s, not before %s: the resumed stop did not keep the deadline %s", ended.Format(time.RFC3339Nano), fresh.Format(time.RFC3339Nano), written)
			}

			if c.forceOnTimeout {
				if j["state"] != "SUCCESS" {
					t.Fatalf("stop with forceOnTimeout: %v", j)
				}
				if st := d2.state(m); st != "STOPPED" || domainState(domain) != "shut off" {
					t.Fatalf("after the forced stop at the deadline: Machine %s, libvirt %s", st, domainState(domain))
				}
				t.Logf("deadline %s, job ended %s (%.1f s after the request)", written, ended.Format(time.RFC3339Nano), ended.Sub(sent).Seconds())
				return
			}
			msg, _ := j["statusMessage"].(string)
			if j["state"] != "FAILED" || !strings.Contains(msg, "deadline") {
				t.Fatalf("stop without forceOnTimeout: %v", j)
			}
			stamp := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)`).FindString(msg)
			named, err := time.Parse(time.RFC3339, stamp)
			if err != nil || !named.Equal(deadline) {
				t.Fatalf("the failure message names %q, want the deadline %s: %s", stamp, written, msg)
			}
			if st := d2.state(m); st != "STARTED" || domainState(domain) != "running" {
				t.Fatalf("after the failed stop: Machine %s, libvirt %s", st, domainState(domain))
			}
			if opHref(d2.get(m).JSON(t), faultNS+"/action/stop") == "" {
				t.Fatal("the Machine does not offer stop again after the failed stop")
			}
			t.Logf("deadline %s, job failed %s: %s", written, ended.Format(time.RFC3339Nano), msg)
		})
	}
}

func TestForcedStopWhileGracefulStopRuns(t *testing.T) {
	d := machineDaemon(t, newStateDir(t))
	faultCleanupLibvirt(t, d)
	m := d.createMachine(d.tinyConfig(), d.registerImage(faultZeroImage(t)), "STARTED")
	domain := d.faultDomainOf(m)

	graceful := d.action(m, "stop", map[string]any{"force": false, "stopTimeout": 600})
	d.faultWaitJobState(graceful, "RUNNING", 30*time.Second)
	faultWaitStopDeadline(t, domain)
	if st := d.state(m); st != "STOPPING" {
		t.Fatalf("Machine is %s during the graceful stop", st)
	}
	// another stop without force changes nothing
	r := d.postJSON(m+"/stop", map[string]any{"action": faultNS + "/action/stop", "force": false})
	if r.Status != http.StatusConflict || !strings.Contains(r.JSON(t)["statusMessage"].(string), "force") {
		t.Fatalf("second graceful stop: %d %s", r.Status, r.Body)
	}
	time.Sleep(time.Second)
	if st := domainState(domain); st != "running" {
		t.Fatalf("the guest obeyed ACPI (%s): the test needs one that ignores it", st)
	}

	asked := time.Now()
	forced := d.action(m, "stop", map[string]any{"force": true})
	d.waitState(m, "STOPPED", 10*time.Second)
	took := time.Since(asked)
	if took > 5*time.Second {
		t.Fatalf("forced stop took %v", took)
	}
	if st := domainState(domain); st != "shut off" {
		t.Fatalf("libvirt shows %s after the forced stop", st)
	}
	if j := d.waitJob(forced, 10*time.Second); j["state"] != "SUCCESS" {
		t.Fatalf("forced stop Job: %v", j)
	}
	j := d.waitJob(graceful, 10*time.Second)
	if j["state"] != "SUCCESS" || !strings.Contains(j["statusMessage"].(string), "powered off") {
		t.Fatalf("graceful stop Job after the escalation: %v", j)
	}
	if st := d.state(m); st != "STOPPED" {
		t.Fatalf("Machine is %s once both Jobs ended", st)
	}
	t.Logf("STOPPED %v after the forced stop", took)

	// A graceful restart shows STOPPING too, but a forced stop must not
	// escalate it: the restart would power the guest off and start it
	// again, and the stop would report a success it did not have.
	d.act(m, "start", nil)
	restart := d.action(m, "restart", map[string]any{"stopTimeout": 600})
	d.faultWaitJobState(restart, "RUNNING", 30*time.Second)
	faultWaitStopDeadline(t, domain)
	if st := d.state(m); st != "STOPPING" {
		t.Fatalf("Machine is %s during the graceful restart", st)
	}
	r = d.postJSON(m+"/stop", map[string]any{"action": faultNS + "/action/stop", "force": true})
	if r.Status != http.StatusConflict || !strings.Contains(r.JSON(t)["statusMessage"].(string), "restart") {
		t.Fatalf("forced stop during a graceful restart: %d %s (Machine %s)", r.Status, r.Body, d.state(m))
	}
	// the way out: stop the restart Job, then stop the Machine
	rj := d.get(restart).JSON(t)
	cancel := opHref(rj, faultNS+"/action/stop")
	if rj["state"] != "RUNNING" || cancel == "" {
		t.Fatalf("restart Job after the refused stop: %v", rj)
	}
	if c := d.postJSON(cancel, map[string]any{"resourceURI": faultNS + "/Action", "action": faultNS + "/action/stop"}); c.Status != http.StatusAccepted {
		t.Fatalf("stop the restart Job: %d %s", c.Status, c.Body)
	}
	if j := d.waitJob(restart, 10*time.Second); j["state"] != "STOPPED" {
		t.Fatalf("cancelled restart: %v", j)
	}
	if st := d.state(m); st != "STARTED" || domainState(domain) != "running" {
		t.Fatalf("after the cancelled restart: Machine %s, libvirt %s", st, domainState(domain))
	}
	d.act(m, "stop", map[string]any{"force": true})
	if st := d.state(m); st != "STOPPED" || domainState(domain) != "shut off" {
		t.Fatalf("forced stop after the cancelled restart: Machine %s, libvirt %s", st, domainState(domain))
	}
}

func TestOutsideChangesAreSeen(t *testing.T) {
	guest := testguest.Build(t)
	dir := newStateDir(t)
	d := machineDaemon(t, dir)
	faultCleanupLibvirt(t, d)
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STARTED")
	domain := d.faultDomainOf(m)
	d.waitConsole(m, testguest.MarkerReady)

	outside := func(want string, args ...string) {
		t.Helper()
		if out, err := virsh(args...); err != nil {
			t.Fatalf("virsh %v: %v: %s", args, err, out)
		}
		start := time.Now()
		d.waitState(m, want, 2500*time.Millisecond)
		t.Logf("virsh %s: Machine %s after %v", args[0], want, time.Since(start).Round(time.Millisecond))
	}
	outside("PAUSED", "suspend", domain)
	outside("STARTED", "resume", domain)
	outside("STOPPED", "destroy", domain)
	outside("ERROR", "undefine", domain)

	// the Machine stays, in ERROR, also over a restart
	time.Sleep(time.Second)
	if r := d.get(m); r.Status != 200 || r.JSON(t)["state"] != "ERROR" {
		t.Fatalf("Machine whose domain was undefined: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(d.logText(), "the domain of a Machine is gone") {
		t.Fatalf("the agent did not report the lost domain:\n%s", d.logText())
	}
	d.stop()
	d = machineDaemon(t, dir)
	if r := d.get(m); r.Status != 200 || r.JSON(t)["state"] != "ERROR" {
		t.Fatalf("Machine after a restart: %d %s", r.Status, r.Body)
	}
	if c := d.get("machines").JSON(t)["count"]; c != 1.0 {
		t.Fatalf("machines after a restart: %v", c)
	}

	// DELETE still works and leaves nothing behind
	del := d.do(http.MethodDelete, m, "", nil)
	if del.Status != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", del.Status, del.Body)
	}
	if j := d.waitJob(del.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("delete Job: %v", j)
	}
	if r := d.get(m); r.Status != 404 {
		t.Fatalf("deleted Machine: %d %s", r.Status, r.Body)
	}
	if st := domainState(domain); st != "absent" {
		t.Fatalf("domain after delete: %s", st)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "pool", "machine-"+lastSegment(m)+"*"))
	if _, err := os.Stat(d.console(m)); err == nil || len(leftovers) > 0 {
		t.Fatalf("files left after delete: %v (console log err=%v)", leftovers, err)
	}
}

func TestForeignDomainsAreLeftAlone(t *testing.T) {
	const foreignPrefix = "cimid-test-foreign-"
	faultRemoveDomains(foreignPrefix) // leftovers of an earlier, interrupted run
	var rnd [4]byte
	rand.Read(rnd[:])
	foreign := foreignPrefix + hex.EncodeToString(rnd[:])
	def := filepath.Join(t.TempDir(), "foreign.xml")
	doc := fmt.Sprintf(`<domain type=%q><name>%s</name><memory unit="KiB">65536</memory><vcpu>1</vcpu>
<os><type arch="x86_64" machine="pc">hvm</type></os></domain>`, testguest.DomainType(), foreign)
	if err := os.WriteFile(def, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := virsh("define", def); err != nil {
		t.Fatalf("virsh define: %v: %s", err, out)
	}
	t.Cleanup(func() { virsh("undefine", foreign) })

	dirA := newStateDir(t)
	a := machineDaemon(t, dirA)
	faultCleanupLibvirt(t, a)
	instA := a.instance()

	b := machineDaemon(t, newStateDir(t))
	faultCleanupLibvirt(t, b)
	if b.instance() == instA {
		t.Fatalf("two state directories share the instance id %s", instA)
	}
	mb := b.createMachine(b.tinyConfig(), b.registerImage(faultZeroImage(t)), "STOPPED")
	domB := b.faultDomainOf(mb)

	_, _, foreignBefore := faultDomainXML(t, foreign)
	_, mdB, bBefore := faultDomainXML(t, domB)
	if mdB.Instance != b.instance() {
		t.Fatalf("B's domain carries instance %q, want %q", mdB.Instance, b.instance())
	}

	a.stop()
	a = machineDaemon(t, dirA)
	if a.instance() != instA {
		t.Fatalf("instance id changed over a restart: %s, then %s", instA, a.instance())
	}
	if c := a.get("machines").JSON(t); c["count"] != 0.0 {
		t.Fatalf("instance A lists machines it does not own: %v", c)
	}
	if own := faultDomainsWithPrefix(t, "cimid-"+instA+"-"); len(own) > 0 {
		t.Fatalf("instance A made domains: %v", own)
	}
	for _, x := range []struct{ name, before, state string }{{foreign, foreignBefore, "shut off"}, {domB, bBefore, "shut off"}} {
		if st := domainState(x.name); st != x.state {
			t.Fatalf("domain %s is %s after A's restart, want %s", x.name, st, x.state)
		}
		if _, _, after := faultDomainXML(t, x.name); after != x.before {
			t.Fatalf("domain %s changed over A's restart:\nbefore:\n%s\nafter:\n%s", x.name, x.before, after)
		}
	}
	if st := b.state(mb); st != "STOPPED" {
		t.Fatalf("B's Machine is %s", st)
	}
	if !strings.Contains(a.logText(), "foreign domains on this host are left alone") {
		t.Fatalf("A did not report foreign domains:\n%s", a.logText())
	}
}

// faultExpectRefused checks an error answer: its status and that its
// statusMessage contains every one of words (case-insensitive).
func faultExpectRefused(t *testing.T, what string, r response, status int, words ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
		return
	}
	j := r.JSON(t)
	msg, _ := j["statusMessage"].(string)
	for _, w := range words {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Errorf("%s: statusMessage %q does not mention %q", what, msg, w)
		}
	}
	if j["state"] != "FAILED" {
		t.Errorf("%s: error body %v", what, j)
	}
}

// faultInventory is what a refused request must leave unchanged.
type faultInventory struct {
	machines, images, templates, configs float64
	domains                              []string
	pool                                 []string
}

func (d *daemon) faultInventory(t *testing.T) faultInventory {
	t.Helper()
	var inv faultInventory
	for _, c := range []struct {
		path string
		n    *float64
	}{{"machines", &inv.machines}, {"machineImages", &inv.images}, {"machineTemplates", &inv.templates}, {"machineConfigs", &inv.configs}} {
		*c.n = d.get(c.path).JSON(t)["count"].(float64)
	}
	inv.domains = faultDomainsWithPrefix(t, "cimid-"+d.instance()+"-")
	entries, err := os.ReadDir(filepath.Join(d.stateDir, "pool"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		inv.pool = append(inv.pool, e.Name())
	}
	return inv
}

func (inv faultInventory) String() string {
	return fmt.Sprintf("machines %v, images %v, templates %v, configs %v, domains %v, pool files %v",
		inv.machines, inv.images, inv.templates, inv.configs, inv.domains, inv.pool)
}

func TestBadMachineInput(t *testing.T) {
	guest := testguest.Build(t)
	files := testguest.TempDir(t)
	d := machineDaemon(t, newStateDir(t))
	faultCleanupLibvirt(t, d)
	base := "http://localhost/cimi/"
	config := d.tinyConfig()
	image := d.registerImage(faultZeroImage(t))
	m := d.createMachine(config, image, "STOPPED")
	before := d.faultInventory(t)
	unchanged := func(what string) {
		t.Helper()
		if now := d.faultInventory(t); now.String() != before.String() {
			t.Errorf("%s changed what exists:\nbefore: %s\nafter:  %s", what, before, now)
		}
	}
	post := func(path, contentType, body string) response {
		t.Helper()
		return d.do(http.MethodPost, path, contentType, []byte(body))
	}
	machineCreate := func(tpl string) string {
		return `{"resourceURI":"` + faultNS + `/MachineCreate","name":"bad","machineTemplate":` + tpl + `}`
	}
	byValue := func(configHref, imageHref string) string {
		return machineCreate(`{"machineConfig":{"href":"` + configHref + `"},"machineImage":{"href":"` + imageHref + `"}}`)
	}

	// references that lead nowhere, or to the wrong kind of resource
	refs := []struct {
		what, body string
		words      []string
	}{
		{"unknown template href", machineCreate(`{"href":"` + base + `machineTemplates/nosuch"}`), []string{"MachineTemplate", "nosuch", "does not exist"}},
		{"unknown config href", byValue(base+"machineConfigs/nosuch", image), []string{"MachineConfiguration", "nosuch", "does not exist"}},
		{"config href to another collection", byValue(image, image), []string{"not a MachineConfiguration href"}},
		{"unknown image href", byValue(config, base+"machineImages/nosuch"), []string{"MachineImage", "nosuch", "does not exist"}},
	}
	for _, c := range refs {
		faultExpectRefused(t, c.what, post("machines", "application/json", c.body), 400, c.words...)
		unchanged(c.what)
	}

	// images that do not exist or name other host files
	backed := filepath.Join(files, "backed.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", backed).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	withData := filepath.Join(files, "datafile.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(files, "data.raw"), withData, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	images := []struct {
		what, location string
		words          []string
	}{
		{"missing image file", "file://" + filepath.Join(files, "nosuch.qcow2"), []string{"nosuch.qcow2", "does not exist"}},
		{"image with a backing file", "file://" + backed, []string{"backing", "/etc/hostname"}},
		{"image with an external data file", "file://" + withData, []string{"data file", "data.raw"}},
	}
	for _, c := range images {
		r := d.postJSON("machineImages", map[string]any{"resourceURI": faultNS + "/MachineImageCreate", "name": "bad", "imageLocation": c.location})
		faultExpectRefused(t, c.what, r, 400, c.words...)
		unchanged(c.what)
	}

	// an http image the server does not have: the Job fails, nothing stays
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/disk.qcow2" {
			http.ServeFile(w, r, guest.Disk)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	r := d.postJSON("machineImages", map[string]any{"resourceURI": faultNS + "/MachineImageCreate", "name": "gone", "imageLocation": srv.URL + "/gone.qcow2"})
	if r.Status != http.StatusAccepted {
		t.Fatalf("http image: %d %s", r.Status, r.Body)
	}
	j := d.waitJob(r.Header.Get("CIMI-Job-URI"), time.Minute)
	if msg, _ := j["statusMessage"].(string); j["state"] != "FAILED" || !strings.Contains(msg, "404") || !strings.Contains(msg, "/gone.qcow2") {
		t.Errorf("image Job for a missing http image: %v", j)
	}
	if g := d.get(r.Header.Get("Location")); g.Status != 404 {
		t.Errorf("image of a failed download: %d %s", g.Status, g.Body)
	}
	unchanged("http image answered 404")

	// hardware a Machine cannot have
	for _, c := range []struct {
		cpu, memory int
		words       []string
	}{{0, 160 * 1024, []string{"cpu", "positive"}}, {-1, 160 * 1024, []string{"cpu", "-1"}}, {1, 0, []string{"memory", "positive"}}, {1, -5, []string{"memory", "-5"}}} {
		what := fmt.Sprintf("MachineConfiguration cpu %d memory %d", c.cpu, c.memory)
		faultExpectRefused(t, what, d.postJSON("machineConfigs", map[string]any{"name": "bad", "cpu": c.cpu, "memory": c.memory}), 400, c.words...)
		// the same by value in a Machine create
		faultExpectRefused(t, what+" by value", post("machines", "application/json",
			machineCreate(fmt.Sprintf(`{"machineConfig":{"cpu":%d,"memory":%d},"machineImage":{"href":%q}}`, c.cpu, c.memory, image))), 400, c.words...)
		unchanged(what)
	}

	// unknown attributes, bad documents, wrong actions
	stop := m + "/stop"
	xmlCreate := `<MachineCreate xmlns="` + faultNS + `"><name>bad</name><machineTemplate><machineConfig href="` + config + `"/><machineImage href="` + image + `"/></machineTemplate>%s</MachineCreate>`
	bodies := []struct {
		what, method, path, contentType, body string
		status                                int
		words                                 []string
	}{
		{"MachineCreate with an unknown attribute (JSON)", "POST", "machines", "application/json",
			`{"resourceURI":"` + faultNS + `/MachineCreate","name":"bad","color":"red","machineTemplate":{"machineConfig":{"href":"` + config + `"},"machineImage":{"href":"` + image + `"}}}`,
			400, []string{"unknown attribute", "color"}},
		{"MachineCreate with an unknown attribute in its template (JSON)", "POST", "machines", "application/json",
			machineCreate(`{"machineConfig":{"href":"` + config + `"},"machineImage":{"href":"` + image + `"},"flavour":"x"}`),
			400, []string{"unknown attribute", "flavour"}},
		{"MachineCreate with an unknown attribute (XML)", "POST", "machines", "application/xml", fmt.Sprintf(xmlCreate, "<color>red</color>"),
			400, []string{"unknown attribute", "color"}},
		{"malformed XML MachineCreate", "POST", "machines", "application/xml", `<MachineCreate xmlns="` + faultNS + `"><name>bad</name><machineTemplate>`,
			400, []string{"malformed XML"}},
		{"MachineConfiguration with an unknown attribute (JSON)", "POST", "machineConfigs", "application/json",
			`{"name":"bad","cpu":1,"memory":163840,"gpu":1}`, 400, []string{"unknown attribute", "gpu"}},
		{"MachineConfiguration with an unknown attribute (XML)", "POST", "machineConfigs", "application/xml",
			`<MachineConfiguration xmlns="` + faultNS + `"><name>bad</name><cpu>1</cpu><memory>163840</memory><gpu>1</gpu></MachineConfiguration>`,
			400, []string{"unknown attribute", "gpu"}},
		{"Action with an unknown attribute (JSON)", "POST", stop, "application/json",
			`{"resourceURI":"` + faultNS + `/Action","action":"` + faultNS + `/action/stop","force":true,"gentle":true}`, 400, []string{"unknown attribute", "gentle"}},
		{"Action with an unknown attribute (XML)", "POST", stop, "application/xml",
			`<Action xmlns="` + faultNS + `"><action>` + faultNS + `/action/stop</action><gentle>true</gentle></Action>`, 400, []string{"unknown attribute", "gentle"}},
		{"action name mismatch", "POST", stop, "application/json",
			`{"resourceURI":"` + faultNS + `/Action","action":"` + faultNS + `/action/start"}`, 400, []string{"action/start", "stop"}},
		{"unknown action", "POST", m + "/explode", "application/json",
			`{"resourceURI":"` + faultNS + `/Action","action":"` + faultNS + `/action/explode"}`, 404, []string{"no resource"}},
		{"PUT with an unknown attribute", "PUT", m, "application/json", `{"name":"renamed","color":"red"}`, 400, []string{"unknown attribute", "color"}},
	}
	for _, c := range bodies {
		faultExpectRefused(t, c.what, d.do(c.method, c.path, c.contentType, []byte(c.body)), c.status, c.words...)
		unchanged(c.what)
	}
	if doc := d.get(m).JSON(t); doc["state"] != "STOPPED" || doc["name"] != "test" {
		t.Errorf("the Machine changed under refused requests: %v", doc)
	}
	if t.Failed() {
		return
	}

	// an http image that is there: AVAILABLE, progress reaching 100
	r = d.postJSON("machineImages", map[string]any{"resourceURI": faultNS + "/MachineImageCreate", "name": "web", "imageLocation": srv.URL + "/disk.qcow2"})
	if r.Status != http.StatusAccepted {
		t.Fatalf("http image: %d %s", r.Status, r.Body)
	}
	jobURI := r.Header.Get("CIMI-Job-URI")
	progress := []float64{}
	for end := time.Now().Add(2 * time.Minute); ; {
		j = d.get(jobURI).JSON(t)
		if p := j["progress"].(float64); len(progress) == 0 || progress[len(progress)-1] != p {
			progress = append(progress, p)
		}
		if j["state"] != "RUNNING" && j["state"] != "QUEUED" {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("http image Job: %v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if j["state"] != "SUCCESS" || j["progress"] != 100.0 || !slices.IsSorted(progress) {
		t.Fatalf("http image Job: %v (progress seen: %v)", j, progress)
	}
	img := d.get(r.Header.Get("Location")).JSON(t)
	if img["state"] != "AVAILABLE" || img["diskFormat"] != "qcow2" || img["imageLocation"] != srv.URL+"/disk.qcow2" {
		t.Fatalf("http image: %v", img)
	}
	t.Logf("http image progress: %v", progress)
}

func TestResourceMetadataTellsTheTruth(t *testing.T) {
	d := machineDaemon(t, newStateDir(t))
	faultCleanupLibvirt(t, d)
	host := testguest.DomainType()

	type capability struct {
		Name  string `xml:"name,attr"`
		URI   string `xml:"uri,attr"`
		Value string `xml:",chardata"`
	}
	fromJSON := func(doc map[string]any) []capability {
		var caps []capability
		list, _ := doc["capabilities"].([]any)
		for _, c := range list {
			c := c.(map[string]any)
			v, _ := c["value"].(string)
			n, _ := c["name"].(string)
			caps = append(caps, capability{Name: n, URI: c["uri"].(string), Value: v})
		}
		return caps
	}
	r := d.get("resourceMetadata/Machine")
	if r.Status != 200 {
		t.Fatalf("GET resourceMetadata/Machine: %d %s", r.Status, r.Body)
	}
	x := d.get("resourceMetadata/Machine", "Accept", "application/xml")
	var xdoc struct {
		XMLName      xml.Name
		TypeURI      string       `xml:"typeURI"`
		Capabilities []capability `xml:"capability"`
	}
	if err := xml.Unmarshal(x.Body, &xdoc); x.Status != 200 || err != nil {
		t.Fatalf("XML resourceMetadata/Machine: %d %v\n%s", x.Status, err, x.Body)
	}
	if xdoc.XMLName.Local != "ResourceMetadata" || xdoc.XMLName.Space != faultNS || xdoc.TypeURI != faultNS+"/Machine" {
		t.Fatalf("XML ResourceMetadata: %+v", xdoc)
	}
	want := map[string]capability{
		"DefaultInitialState": {URI: faultNS + "/capability/Machine/DefaultInitialState", Value: "STARTED"},
		"InitialStates":       {URI: faultNS + "/capability/Machine/InitialStates", Value: "STARTED,STOPPED"},
		"DomainType":          {URI: "urn:x-cimid:1/capability/Machine/DomainType", Value: host},
	}
	for format, caps := range map[string][]capability{"JSON": fromJSON(r.JSON(t)), "XML": xdoc.Capabilities} {
		for name, w := range want {
			i := slices.IndexFunc(caps, func(c capability) bool { return c.URI == w.URI })
			if i < 0 {
				t.Errorf("%s: no capability %s (%s) in %+v", format, name, w.URI, caps)
				continue
			}
			if got := caps[i]; got.Name != name || strings.TrimSpace(got.Value) != w.Value {
				t.Errorf("%s: capability %+v, want name %s value %q", format, got, name, w.Value)
			}
		}
	}

	// and it is the truth: a Machine whose template names no initial state
	// starts, in a domain of the advertised type
	m := d.create("machines", map[string]any{"resourceURI": faultNS + "/MachineCreate", "name": "default",
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": d.tinyConfig()},
			"machineImage": map[string]any{"href": d.registerImage(faultZeroImage(t))}}})
	domain := d.faultDomainOf(m)
	if st := d.state(m); st != "STARTED" || domainState(domain) != "running" {
		t.Fatalf("Machine created without initialState: %s, libvirt %s", st, domainState(domain))
	}
	if typ, _, _ := faultDomainXML(t, domain); typ != host {
		t.Fatalf("domain type %q, advertised %q", typ, host)
	}
}
