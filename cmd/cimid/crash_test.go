package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cimid/hypervisor/qemuimg"
	"cimid/hypervisor/testguest"
	"cimid/ovf"
)

// The crash matrix kills the agent with SIGKILL before and after every
// step of an operation, starts it again and checks that nothing is lost
// and nothing is left over: every Job ends, and the store, libvirt and the
// files of the state directory describe the same things.
//
// The steps of an operation are found by running it once with a trace
// (CIMID_FAILPOINT_TRACE, see agent/failpoint.go): every call of the
// hypervisor driver and every run of qemu-img, counted from the agent's
// start. Each step that changes something becomes two failpoints,
// STEP:before:N and STEP:after:N. A case prepares what the operation needs
// on a first agent, starts a second one on the same state directory with
// the failpoint armed, sends the operation and waits for the agent to die;
// a third agent then recovers and is checked.
//
// The Job runner's moves to RUNNING and to the final state are steps too
// (job.RUNNING, job.SUCCESS): a kill before RUNNING leaves a queued Job, a
// kill before SUCCESS a Job whose work is all done.
//
// make test runs one failpoint before and one after a step of every
// operation; make test-crash (CIMID_CRASH_FULL=1) runs them all.

// crashReadMethods are the driver methods that change nothing: a kill
// before one of them is a kill after the step before it.
var crashReadMethods = map[string]bool{
	"Ping": true, "DomainStatus": true, "ListDomains": true, "ListPoolVolumes": true, "DomainNICs": true,
	"ListSnapshots": true, "ListNetworks": true, "DHCPLeases": true, "AllDomainStats": true,
}

// crashReadQemuImg are the qemu-img subcommands that change nothing.
var crashReadQemuImg = map[string]bool{"info": true, "check": true, "map": true, "measure": true, "compare": true}

// crashWrapperScript is the qemu-img the agent finds first in PATH: it
// traces each run like the driver does and, at an armed qemu-img
// failpoint (CIMID_FAILPOINT=qemu-img.SUBCOMMAND:before|after|fail:N),
// kills the agent (its parent) before or after running the real qemu-img,
// or fails without running it. N counts the runs of SUBCOMMAND in the
// trace, which the failpoint needs.
const crashWrapperScript = `#!/bin/bash
real=%q
sub=$1
n=0
if [ -n "$CIMID_FAILPOINT_TRACE" ]; then
	exec 9>>"$CIMID_FAILPOINT_TRACE"
	flock 9
	n=$(( $(grep -c "^qemu-img $sub " "$CIMID_FAILPOINT_TRACE") + 1 ))
	echo "qemu-img $sub $n" >&9
	flock -u 9
	exec 9>&-
fi
IFS=: read -r fp_method fp_when fp_n <<<"${CIMID_FAILPOINT:-}"
hit=
if [ "$fp_method" = "qemu-img.$sub" ] && [ "$fp_n" = "$n" ]; then
	hit=$fp_when
fi
case "$hit" in
before)
	kill -KILL "$PPID"
	exit 137
	;;
fail)
	echo "qemu-img: $sub: failure injected by the test ($CIMID_FAILPOINT)" >&2
	exit 1
	;;
esac
"$real" "$@"
rc=$?
if [ "$hit" = after ]; then
	kill -KILL "$PPID"
fi
exit $rc
`

// qemuImgWrapper writes the wrapper into a directory of its own and
// returns that directory, to put first in the agent's PATH.
func qemuImgWrapper(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatalf("qemu-img: %v", err)
	}
	if real, err = filepath.Abs(real); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "qemu-img"), []byte(fmt.Sprintf(crashWrapperScript, real)), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// crashEnv is what every case shares.
type crashEnv struct {
	wrapper string // directory of the qemu-img wrapper
	zero    string // 1 MiB raw image of zeros: runs as a domain, boots nothing
	files   string // traversable directory for test inputs

	ovaOnce sync.Once
	ova     string // a small OVA around the zero image, made on first use
}

// smallOVA packs the zero image as a one-Machine OVA with one NIC.
func (e *crashEnv) smallOVA(t *testing.T) string {
	e.ovaOnce.Do(func() {
		ctx := context.Background()
		vmdk := filepath.Join(e.files, "zero.vmdk")
		if err := qemuimg.Convert(ctx, e.zero, qemuimg.FormatRaw, vmdk, qemuimg.FormatVMDK, nil); err != nil {
			t.Errorf("convert the zero image to VMDK: %v", err)
			return
		}
		fi, err := os.Stat(vmdk)
		if err != nil {
			t.Error(err)
			return
		}
		spec := ovf.Spec{Name: "crash", Description: "a crash test package", Systems: []ovf.SystemSpec{{
			Name: "crash", CPUs: 1, MemoryBytes: 160 << 20, OSType: "otherLinux64Guest",
			Disks: []ovf.DiskSpec{{Href: "disk1.vmdk", Size: fi.Size(), Capacity: 1 << 20}},
			NICs:  []ovf.NICSpec{{Network: "VM Network", Model: "virtio"}},
		}}}
		desc, err := ovf.Encode(spec)
		if err != nil {
			t.Errorf("encode the descriptor: %v", err)
			return
		}
		path := filepath.Join(e.files, "crash.ova")
		out, err := os.Create(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer out.Close()
		ova := ovf.OVA{DescriptorName: "crash.ovf", Descriptor: desc, Files: []ovf.OVAFile{{Name: "disk1.vmdk", Size: fi.Size(),
			Open: func() (io.ReadCloser, error) { return os.Open(vmdk) }}}}
		if err := ova.Write(ctx, out); err != nil {
			t.Errorf("write the OVA: %v", err)
			return
		}
		e.ova = path
	})
	if e.ova == "" {
		t.Fatal("the test package could not be made")
	}
	return e.ova
}

// crashOp is one operation of the matrix.
type crashOp struct {
	name string
	// setup makes what the operation needs, on an agent without failpoint.
	setup func(c *crashCase)
	// run sends the operation. It returns the Job's URI, or "" when the
	// agent died before it answered.
	run func(c *crashCase) string
	// timeout bounds the operation (default 2 minutes).
	timeout time.Duration
}

// crashCase is one state directory going through an operation.
type crashCase struct {
	t    *testing.T
	env  *crashEnv
	dir  string
	inst string
	d    *daemon
	vars map[string]string // what setup made: machine, volume, ...
}

const crashNS = "http://schemas.dmtf.org/cimi/1"

func crashAction(name string, extra map[string]any) map[string]any {
	body := map[string]any{"resourceURI": crashNS + "/Action", "action": crashNS + "/action/" + name}
	for k, v := range extra {
		body[k] = v
	}
	return body
}

// crashOps are the operations of the matrix.
func crashOps() []crashOp {
	stopped := func(c *crashCase) {
		c.vars["machine"] = c.d.createMachine(c.d.tinyConfig(), c.d.registerImage(c.env.zero), "STOPPED")
	}
	started := func(c *crashCase) {
		c.vars["machine"] = c.d.createMachine(c.d.tinyConfig(), c.d.registerImage(c.env.zero), "STARTED")
	}
	withVolume := func(c *crashCase) {
		stopped(c)
		c.vars["volume"] = c.d.newVolume("data", map[string]any{"capacity": 1024})
	}
	imageOf := func(op string) func(c *crashCase) string {
		return func(c *crashCase) string {
			m := c.vars["machine"]
			return c.send(http.MethodPost, m+"/"+op, map[string]any{"resourceURI": crashNS + "/MachineImageCreate", "name": op, "imageLocation": m})
		}
	}
	ops := []crashOp{
		{name: "create", setup: func(c *crashCase) {
			c.vars["config"], c.vars["image"] = c.d.tinyConfig(), c.d.registerImage(c.env.zero)
		}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, "machines", map[string]any{"resourceURI": crashNS + "/MachineCreate", "name": "crash",
				"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": c.vars["config"]},
					"machineImage": map[string]any{"href": c.vars["image"]}, "initialState": "STARTED"}})
		}},
		{name: "start", setup: stopped, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/start", crashAction("start", nil))
		}},
		{name: "stop-force", setup: started, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/stop", crashAction("stop", map[string]any{"force": true}))
		}},
		{name: "stop-graceful", setup: func(c *crashCase) {
			m := c.d.createMachine(c.d.tinyConfig(), c.d.registerImage(testguest.Build(c.t).Disk), "STARTED")
			c.d.waitConsole(m, testguest.MarkerReady)
			c.vars["machine"] = m
		}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/stop", crashAction("stop", map[string]any{"stopTimeout": 120}))
		}, timeout: 3 * time.Minute},
		{name: "delete", setup: started, run: func(c *crashCase) string {
			return c.send(http.MethodDelete, c.vars["machine"], nil)
		}},
		{name: "delete-snapshots", setup: func(c *crashCase) {
			stopped(c)
			c.d.makeImage(c.vars["machine"], "snapshot", "first")
			c.d.makeImage(c.vars["machine"], "snapshot", "second")
		}, run: func(c *crashCase) string {
			return c.send(http.MethodDelete, c.vars["machine"], nil)
		}},
		{name: "attach", setup: withVolume, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/volumes", map[string]any{"resourceURI": crashNS + "/MachineVolume",
				"volume": map[string]any{"href": c.vars["volume"]}})
		}},
		{name: "detach", setup: func(c *crashCase) {
			withVolume(c)
			c.vars["attachment"] = c.d.attach(c.vars["machine"], c.vars["volume"], "")
		}, run: func(c *crashCase) string {
			return c.send(http.MethodDelete, c.vars["attachment"], nil)
		}},
		{name: "attach-live", setup: func(c *crashCase) {
			started(c)
			c.vars["volume"] = c.d.newVolume("data", map[string]any{"capacity": 1024})
		}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/volumes", map[string]any{"resourceURI": crashNS + "/MachineVolume",
				"volume": map[string]any{"href": c.vars["volume"]}})
		}},
		{name: "capture", setup: stopped, run: imageOf("capture")},
		{name: "snapshot", setup: stopped, run: imageOf("snapshot")},
		{name: "snapshot-live", setup: started, run: imageOf("snapshot")},
		{name: "restore", setup: func(c *crashCase) {
			stopped(c)
			c.vars["snapshot"] = c.d.makeImage(c.vars["machine"], "snapshot", "before")
		}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/restore", crashAction("restore", map[string]any{"image": map[string]any{"href": c.vars["snapshot"]}}))
		}},
		{name: "image", setup: func(*crashCase) {}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, "machineImages", map[string]any{"resourceURI": crashNS + "/MachineImageCreate", "name": "zeros",
				"imageLocation": "file://" + c.env.zero})
		}},
		{name: "volume", setup: func(*crashCase) {}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, "volumes", map[string]any{"resourceURI": crashNS + "/VolumeCreate", "name": "data",
				"volumeTemplate": map[string]any{"volumeConfig": map[string]any{"capacity": 1024}}})
		}},
		{name: "network", setup: func(*crashCase) {}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, "networks", map[string]any{"resourceURI": crashNS + "/NetworkCreate", "name": "crash",
				"networkTemplate": map[string]any{"networkConfig": map[string]any{"forwardMode": "isolated"}}})
		}},
		{name: "import", setup: func(c *crashCase) { c.vars["ova"] = c.env.smallOVA(c.t) }, run: func(c *crashCase) string {
			return c.send(http.MethodPost, "systems/import", crashAction("import", map[string]any{"source": "file://" + c.vars["ova"]}))
		}},
		{name: "export", setup: func(c *crashCase) {
			stopped(c)
			c.vars["destination"] = filepath.Join(c.t.TempDir(), "crash.ova")
		}, run: func(c *crashCase) string {
			return c.send(http.MethodPost, c.vars["machine"]+"/export", crashAction("export", map[string]any{"format": "application/ovf",
				"destination": "file://" + c.vars["destination"]}))
		}},
	}
	return ops
}

// crashStep is one call that changes something: a driver method or a
// qemu-img subcommand, and its count from the agent's start.
type crashStep struct {
	source, method string
	n              int
}

func (s crashStep) name() string {
	if s.source == "driver" {
		return s.method
	}
	return s.source + "." + s.method
}

// failpoint is the CIMID_FAILPOINT of a kill before or after the step.
func (s crashStep) failpoint(when string) string {
	return fmt.Sprintf("%s:%s:%d", s.name(), when, s.n)
}

// readTrace reads the trace lines from line skip on.
func readTrace(t *testing.T, path string, skip int) []crashStep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("trace: %v", err)
	}
	defer f.Close()
	var out []crashStep
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		if i < skip {
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			t.Fatalf("trace line %d: %q", i+1, sc.Text())
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil {
			t.Fatalf("trace line %d: %q", i+1, sc.Text())
		}
		out = append(out, crashStep{source: fields[0], method: fields[1], n: n})
	}
	return out
}

func traceLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n"))
}

// changingSteps keeps the steps that change something, and of a run of
// calls of one method (a graceful stop presses the power button every few
// seconds, as long as the guest takes) only the first.
func changingSteps(trace []crashStep) []crashStep {
	var out []crashStep
	for _, s := range trace {
		switch {
		case s.source == "driver" && crashReadMethods[s.method]:
			continue
		case s.source == "qemu-img" && crashReadQemuImg[s.method]:
			continue
		}
		if len(out) > 0 && out[len(out)-1].name() == s.name() && s.name() == "Shutdown" {
			continue
		}
		out = append(out, s)
	}
	return out
}

func TestCrashMatrix(t *testing.T) {
	full := os.Getenv("CIMID_CRASH_FULL") != ""
	env := &crashEnv{wrapper: qemuImgWrapper(t), zero: faultZeroImage(t), files: testguest.TempDir(t)}
	started := time.Now()
	var mu sync.Mutex
	var summary []string
	cases := 0
	for _, op := range crashOps() {
		t.Run(op.name, func(t *testing.T) {
			steps := discoverSteps(t, env, op)
			var points []string
			for _, s := range steps {
				points = append(points, s.failpoint("before"), s.failpoint("after"))
			}
			if !full {
				points = crashSubset(steps)
			}
			t.Logf("%s: steps %v; failpoints %v", op.name, stepNames(steps), points)
			for _, fp := range points {
				t.Run(fp, func(t *testing.T) {
					outcome := runCrashCase(t, env, op, fp)
					mu.Lock()
					summary = append(summary, fmt.Sprintf("%-14s %-30s %s", op.name, fp, outcome))
					cases++
					mu.Unlock()
				})
			}
		})
	}
	t.Logf("crash matrix: %d cases in %v (full=%v)\n%s", cases, time.Since(started).Round(time.Second), full, strings.Join(summary, "\n"))
}

func stepNames(steps []crashStep) []string {
	var out []string
	for _, s := range steps {
		out = append(out, fmt.Sprintf("%s#%d", s.name(), s.n))
	}
	return out
}

// crashSubset picks, for make test, a kill before the middle step of the
// work and one after its last step: the first interrupts the work, the
// second leaves only the bookkeeping to the next start. The Job's own
// transitions are left to the full matrix.
func crashSubset(steps []crashStep) []string {
	var work []crashStep
	for _, s := range steps {
		if s.source != "job" {
			work = append(work, s)
		}
	}
	if len(work) == 0 {
		return nil
	}
	return []string{work[(len(work)-1)/2].failpoint("before"), work[len(work)-1].failpoint("after")}
}

func (op crashOp) limit() time.Duration {
	if op.timeout > 0 {
		return op.timeout
	}
	return 2 * time.Minute
}

// discoverSteps runs the operation once with the trace on and returns the
// steps that change something. The run must succeed, and its outcome must
// pass the same checks as a crash's.
func discoverSteps(t *testing.T, env *crashEnv, op crashOp) []crashStep {
	t.Helper()
	c := newCrashCase(t, env)
	trace := filepath.Join(t.TempDir(), "trace")
	c.start()
	op.setup(c)
	c.d.stop()
	c.start("CIMID_FAILPOINT_TRACE=" + trace)
	skip := traceLines(trace)
	jobURI := op.run(c)
	if jobURI == "" {
		t.Fatalf("%s: the agent did not answer", op.name)
	}
	if j := c.d.waitJob(jobURI, op.limit()); j["state"] != "SUCCESS" {
		t.Fatalf("%s without failpoint: Job %v", op.name, j)
	}
	c.d.stop()
	steps := changingSteps(readTrace(t, trace, skip))
	if len(steps) == 0 {
		t.Fatalf("%s: the trace shows no step that changes anything", op.name)
	}
	c.start()
	c.checkConsistent()
	return steps
}

// runCrashCase kills the agent at failpoint fp of the operation, restarts
// it and checks what it recovered. It returns how the operation's Job
// ended.
func runCrashCase(t *testing.T, env *crashEnv, op crashOp, fp string) string {
	c := newCrashCase(t, env)
	trace := filepath.Join(t.TempDir(), "trace")
	c.start()
	op.setup(c)
	c.d.stop()
	c.start("CIMID_FAILPOINT="+fp, "CIMID_FAILPOINT_TRACE="+trace)
	jobURI := op.run(c)
	c.waitKilled(fp, jobURI, op.limit())
	c.start()
	outcome := c.settleJobs(jobURI)
	c.checkConsistent()
	if !t.Failed() {
		c.deleteMachines()
	}
	return outcome
}

func newCrashCase(t *testing.T, env *crashEnv) *crashCase {
	return &crashCase{t: t, env: env, dir: newStateDir(t), vars: map[string]string{}}
}

// start runs an agent on the case's state directory with the qemu-img
// wrapper first in PATH and waits until it serves. The first start
// arranges for the instance's libvirt objects to go when the test ends.
func (c *crashCase) start(env ...string) {
	c.t.Helper()
	env = append(env, "PATH="+c.env.wrapper+":"+os.Getenv("PATH"))
	c.d = launch(c.t, c.dir, env)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.d.client.Get("http://localhost/cimi/cloudEntryPoint")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-c.d.exited:
			c.t.Fatalf("cimid exited during start:\n%s", c.d.logText())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cimid did not serve within 60 s:\n%s", c.d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.inst == "" {
		c.inst = c.d.instance()
		inst := c.inst
		c.t.Cleanup(func() {
			removeInstanceFromLibvirt(inst)
			removeInstanceNetworks("cimid-" + inst + "-")
		})
	}
}

// send makes a request that the agent may die during; it returns the
// Job's URI, or "" when no answer came.
func (c *crashCase) send(method, path string, body any) string {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = "http://localhost/cimi/" + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.d.client.Do(req)
	if err != nil {
		c.t.Logf("%s %s: no answer: %v", method, path, err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	uri := resp.Header.Get("CIMI-Job-URI")
	if uri == "" {
		c.t.Fatalf("%s %s: no CIMI-Job-URI: %v", method, path, resp.Header)
	}
	return uri
}

// getJSON reads a document without failing the test when the agent is
// gone.
func (c *crashCase) getJSON(path string) (map[string]any, bool) {
	resp, err := c.d.client.Get("http://localhost/cimi/" + strings.TrimPrefix(strings.TrimPrefix(path, "http://localhost/cimi/"), "/"))
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&m) != nil {
		return nil, false
	}
	return m, true
}

func finalJob(state any) bool { return state == "SUCCESS" || state == "FAILED" || state == "STOPPED" }

// waitKilled waits until the failpoint killed the agent. An operation that
// ends with the agent alive did not reach the failpoint.
func (c *crashCase) waitKilled(fp, jobURI string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var endedAt time.Time
	for {
		select {
		case <-c.d.exited:
			ws, ok := c.d.cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				c.t.Fatalf("the agent ended with %v, not by the failpoint's SIGKILL:\n%s", c.d.cmd.ProcessState, c.d.logText())
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the agent still runs %v after the operation: failpoint %s not reached:\n%s", timeout, fp, c.d.logText())
		}
		if jobURI == "" {
			continue
		}
		if j, ok := c.getJSON(jobURI); ok && finalJob(j["state"]) {
			if endedAt.IsZero() {
				endedAt = time.Now()
			} else if time.Since(endedAt) > 3*time.Second {
				c.t.Fatalf("the Job ended %v (%v) and the agent still runs: failpoint %s not reached:\n%s", j["state"], j["statusMessage"], fp, c.d.logText())
			}
		}
	}
}

// settleJobs waits until every Job has ended and describes how the
// operation's Job did.
func (c *crashCase) settleJobs(jobURI string) string {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var open []string
		for _, j := range c.d.members("jobs", "jobs") {
			if !finalJob(j["state"]) {
				open = append(open, fmt.Sprintf("%v %v (%v)", j["id"], j["state"], j["action"]))
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("Jobs still not ended 3 minutes after the restart: %v", open)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if jobURI == "" {
		var all []string
		for _, j := range c.d.members("jobs", "jobs") {
			all = append(all, fmt.Sprintf("%v %v", j["name"], j["state"]))
		}
		return fmt.Sprintf("no answer before the kill; Jobs: %s", strings.Join(all, ", "))
	}
	j := c.d.get(jobURI).JSON(c.t)
	return fmt.Sprintf("%v: %v", j["state"], j["statusMessage"])
}

// checkConsistent waits for the store and libvirt to agree (a restarted
// agent resyncs within seconds) and reports every disagreement left.
func (c *crashCase) checkConsistent() {
	c.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		problems := c.problems()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				c.t.Error(p)
			}
			return
		}
		time.Sleep(time.Second)
	}
}

// deleteMachines deletes every Machine through the API, which must work
// after a recovery, and checks that their domains are gone with them.
func (c *crashCase) deleteMachines() {
	c.t.Helper()
	for _, m := range c.d.members("machines", "machines") {
		uri := m["id"].(string)
		r := c.d.do(http.MethodDelete, uri, "", nil)
		if r.Status != http.StatusAccepted {
			c.t.Errorf("delete %s (%v) after the recovery: %d %s", lastSegment(uri), m["state"], r.Status, r.Body)
			continue
		}
		if j := c.d.waitJob(r.Header.Get("CIMI-Job-URI"), 2*time.Minute); j["state"] != "SUCCESS" {
			c.t.Errorf("delete %s after the recovery: %v", lastSegment(uri), j)
		}
	}
	if left := faultDomainsWithPrefix(c.t, "cimid-"+c.inst+"-"); len(left) > 0 {
		c.t.Errorf("domains left after every Machine was deleted: %v", left)
	}
	for _, f := range c.d.poolFiles() {
		if strings.HasPrefix(f, "machine-") {
			c.t.Errorf("pool file %s left after every Machine was deleted", f)
		}
	}
}

// domainView is what libvirt shows of one domain.
type domainView struct {
	state     string            // as the Machine state it means; "" when none
	disks     map[string]string // target -> source, of the persistent definition
	snapshots []string
}

func crashDomain(t *testing.T, name string) domainView {
	t.Helper()
	v := domainView{disks: map[string]string{}}
	info, err := virsh("dominfo", name)
	if err != nil {
		return domainView{state: "unreadable: " + info}
	}
	var state string
	managed := false
	for _, line := range strings.Split(info, "\n") {
		k, val, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "State":
			state = strings.TrimSpace(val)
		case "Managed save":
			managed = strings.TrimSpace(val) == "yes"
		}
	}
	switch {
	case state == "running":
		v.state = "STARTED"
	case state == "paused":
		v.state = "PAUSED"
	case state == "shut off" && managed:
		v.state = "SUSPENDED"
	case state == "shut off":
		v.state = "STOPPED"
	default:
		v.state = "libvirt state " + state
	}
	out, err := virsh("domblklist", "--inactive", "--details", name)
	if err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 4 {
				v.disks[f[2]] = f[3]
			}
		}
	}
	if out, err := virsh("snapshot-list", "--name", name); err == nil {
		v.snapshots = strings.Fields(out)
	}
	return v
}

// libvirtNames lists the objects (list, net-list) named with prefix.
func libvirtNames(t *testing.T, prefix string, args ...string) map[string]bool {
	t.Helper()
	out, err := virsh(append(args, "--name")...)
	if err != nil {
		t.Fatalf("virsh %v: %v: %s", args, err, out)
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, prefix) {
			names[n] = true
		}
	}
	return names
}

// problems compares the store, as the API shows it, with libvirt and the
// state directory.
func (c *crashCase) problems() []string {
	t, d := c.t, c.d
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	prefix := "cimid-" + c.inst + "-"
	pool := filepath.Join(c.dir, "pool")
	expected := map[string]string{} // pool file -> what it belongs to

	for _, j := range d.members("jobs", "jobs") {
		if !finalJob(j["state"]) {
			add("Job %v (%v) is %v", lastSegment(j["id"].(string)), j["name"], j["state"])
		}
	}

	domains := libvirtNames(t, prefix, "list", "--all")
	machines := map[string]map[string]any{}
	views := map[string]domainView{}
	for _, m := range d.members("machines", "machines") {
		uri := m["id"].(string)
		id := lastSegment(uri)
		machines[id] = m
		dom := prefix + id
		if !domains[dom] {
			add("Machine %s (%v) has no domain %s", id, m["state"], dom)
			continue
		}
		delete(domains, dom)
		v := crashDomain(t, dom)
		views[id] = v
		if m["state"] != v.state {
			add("Machine %s is %v, its domain %s", id, m["state"], v.state)
		}
		known := map[string]string{} // target -> source the store accounts for
		disks := d.members(uri+"/disks", "disks")
		for i := range disks {
			f := fmt.Sprintf("machine-%s-disk%d.qcow2", id, i)
			expected[f] = "Machine " + id
			known[fmt.Sprintf("vd%c", 'a'+i)] = filepath.Join(pool, f)
		}
		for _, mv := range d.members(uri+"/volumes", "machineVolumes") {
			vid := lastSegment(href(mv, "volume"))
			target := strings.TrimPrefix(fmt.Sprint(mv["initialLocation"]), "/dev/")
			if mv["state"] != "ATTACHED" {
				add("the attachment of Volume %s to Machine %s is %v", vid, id, mv["state"])
				continue
			}
			files, _ := filepath.Glob(filepath.Join(pool, "volume-"+vid+".*"))
			if len(files) != 1 {
				add("attached Volume %s has files %v", vid, files)
				continue
			}
			known[target] = files[0]
		}
		for target, src := range v.disks {
			if want, ok := known[target]; ok && want == src {
				delete(known, target)
				continue
			}
			if strings.HasPrefix(src, filepath.Join(c.dir, "seed", "machine-"+id+"-")) {
				continue
			}
			add("domain %s has disk %s (%s), which the store does not know", dom, target, src)
		}
		for target, src := range known {
			add("domain %s lacks disk %s (%s), which the store knows", dom, target, src)
		}
	}
	for dom := range domains {
		add("domain %s is unknown to the store", dom)
	}

	snapshotsOf := map[string][]string{}
	for _, im := range d.members("machineImages", "machineImages") {
		id := lastSegment(im["id"].(string))
		if im["state"] != "AVAILABLE" {
			add("MachineImage %s (%v) is %v", id, im["type"], im["state"])
		}
		switch im["type"] {
		case "SNAPSHOT":
			loc := fmt.Sprint(im["imageLocation"])
			mid := lastSegment(strings.TrimSuffix(loc[:max(strings.Index(loc, "/snapshots/"), 0)], "/"))
			snapshotsOf[mid] = append(snapshotsOf[mid], id)
		default:
			expected["image-"+id+".qcow2"] = "MachineImage " + id
		}
	}
	for id, v := range views {
		want := snapshotsOf[id]
		got := slices.Clone(v.snapshots)
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(want, got) {
			add("Machine %s: the store knows snapshots %v, its domain has %v", id, want, got)
		}
		delete(snapshotsOf, id)
	}
	for mid, snaps := range snapshotsOf {
		if _, ok := machines[mid]; !ok {
			add("snapshots %v belong to Machine %s, which does not exist", snaps, mid)
		}
	}

	for _, v := range d.members("volumes", "volumes") {
		id := lastSegment(v["id"].(string))
		if v["state"] != "AVAILABLE" {
			add("Volume %s is %v", id, v["state"])
		}
		expected[fmt.Sprintf("volume-%s.%v", id, v["diskFormat"])] = "Volume " + id
	}
	for _, im := range d.members("volumeImages", "volumeImages") {
		id := lastSegment(im["id"].(string))
		if im["state"] != "AVAILABLE" {
			add("VolumeImage %s is %v", id, im["state"])
		}
		expected["volimage-"+id+".qcow2"] = "VolumeImage " + id
	}

	for _, f := range d.poolFiles() {
		if _, ok := expected[f]; !ok {
			add("pool file %s is unknown to the store", f)
		}
		delete(expected, f)
	}
	for f, owner := range expected {
		add("pool file %s of %s is missing", f, owner)
	}
	for _, sub := range []struct{ dir, re string }{
		{"console", `^([0-9a-f-]+)\.log$`},
		{"seed", `^machine-([0-9a-f-]+)-seed\.iso$`},
	} {
		entries, _ := os.ReadDir(filepath.Join(c.dir, sub.dir))
		for _, e := range entries {
			m := regexp.MustCompile(sub.re).FindStringSubmatch(e.Name())
			if m == nil {
				add("%s/%s is not a file of any Machine", sub.dir, e.Name())
			} else if _, ok := machines[m[1]]; !ok {
				add("%s/%s belongs to Machine %s, which does not exist", sub.dir, e.Name(), m[1])
			}
		}
	}

	nets := libvirtNames(t, prefix, "net-list", "--all")
	active := libvirtNames(t, prefix, "net-list")
	for _, n := range d.members("networks", "networks") {
		id := lastSegment(n["id"].(string))
		name := prefix + id
		switch {
		case !nets[name]:
			add("Network %s (%v) has no libvirt network %s", id, n["state"], name)
		case n["state"] == "STARTED" && !active[name], n["state"] == "STOPPED" && active[name]:
			add("Network %s is %v, libvirt network %s active=%v", id, n["state"], name, active[name])
		case n["state"] != "STARTED" && n["state"] != "STOPPED":
			add("Network %s is %v", id, n["state"])
		}
		delete(nets, name)
	}
	for n := range nets {
		add("libvirt network %s is unknown to the store", n)
	}

	for _, s := range d.members("systems", "systems") {
		uri := s["id"].(string)
		switch s["state"] {
		case "CREATING", "DELETING", "ERROR":
			add("System %s is %v", lastSegment(uri), s["state"])
		}
		for _, sm := range d.members(uri+"/machines", "systemMachines") {
			if _, ok := machines[lastSegment(href(sm, "machine"))]; !ok {
				add("System %s names Machine %s, which does not exist", lastSegment(uri), lastSegment(href(sm, "machine")))
			}
		}
	}

	if dest := c.vars["destination"]; dest != "" {
		// The destination did not exist: it holds a whole package if and
		// only if the export succeeded, and nothing else is left beside it.
		exported := false
		for _, j := range d.members("jobs", "jobs") {
			if j["action"] == crashNS+"/action/export" && j["state"] == "SUCCESS" {
				exported = true
			}
		}
		entries, _ := os.ReadDir(filepath.Dir(dest))
		for _, e := range entries {
			if e.Name() != filepath.Base(dest) {
				add("export directory holds %s", e.Name())
			}
		}
		f, err := os.Open(dest)
		switch {
		case err == nil && !exported:
			add("the export did not succeed, yet %s was written", dest)
		case err != nil && exported:
			add("the export succeeded, yet %s is not there: %v", dest, err)
		}
		if err == nil {
			fi, _ := f.Stat()
			pkg, err := ovf.OpenOVA(f, fi.Size(), ovf.Options{Strict: true})
			if err == nil {
				err = pkg.Verify(context.Background())
			}
			if err != nil {
				add("the export %s is broken: %v", dest, err)
			}
			f.Close()
		}
	}
	sort.Strings(p)
	return p
}

// TestCrashCheck shows that the matrix's checks see what they are meant
// to: each disagreement made behind the agent's back is reported.
func TestCrashCheck(t *testing.T) {
	env := &crashEnv{wrapper: qemuImgWrapper(t), zero: faultZeroImage(t), files: testguest.TempDir(t)}
	c := newCrashCase(t, env)

	// A failpoint that names nothing is a broken test: the agent says so.
	bad := launch(t, c.dir, []string{"CIMID_FAILPOINT=DefineDomian:after:1"})
	select {
	case <-bad.exited:
	case <-time.After(time.Minute):
		t.Fatal("the agent runs with a failpoint that names no point")
	}
	if !strings.Contains(bad.logText(), `no such point`) || bad.cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("the agent with a misspelt failpoint exited %d:\n%s", bad.cmd.ProcessState.ExitCode(), bad.logText())
	}

	c.start()
	m := c.d.createMachine(c.d.tinyConfig(), c.d.registerImage(env.zero), "STOPPED")
	image := lastSegment(c.d.makeImage(m, "capture", "captured"))
	c.d.attach(m, c.d.newVolume("data", map[string]any{"capacity": 1024}), "vdb")
	snapshot := lastSegment(c.d.makeImage(m, "snapshot", "snap"))
	c.checkConsistent()
	if t.Failed() {
		t.FailNow()
	}
	prefix := "cimid-" + c.inst + "-"
	dom := prefix + lastSegment(m)
	pool := filepath.Join(c.dir, "pool")
	expect := func(what, want string, undo func()) {
		t.Helper()
		problems := c.problems()
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("%s: no problem says %q; problems: %q", what, want, problems)
		}
		undo()
	}
	mustVirsh := func(args ...string) {
		t.Helper()
		if out, err := virsh(args...); err != nil {
			t.Fatalf("virsh %v: %v: %s", args, err, out)
		}
	}

	stray := filepath.Join(pool, "stray.qcow2")
	os.WriteFile(stray, nil, 0o644)
	expect("a file nobody made", "pool file stray.qcow2 is unknown", func() { os.Remove(stray) })

	file := filepath.Join(pool, "image-"+image+".qcow2")
	os.Rename(file, file+".aside")
	expect("an image file gone", "pool file image-"+image+".qcow2 of MachineImage "+image+" is missing", func() { os.Rename(file+".aside", file) })

	console := filepath.Join(c.dir, "console", "0000.log")
	os.WriteFile(console, nil, 0o644)
	expect("a console log of no Machine", "console/0000.log belongs to Machine 0000", func() { os.Remove(console) })

	xml := filepath.Join(t.TempDir(), "stray.xml")
	os.WriteFile(xml, []byte("<domain type='qemu'><name>"+prefix+"stray</name><memory unit='KiB'>65536</memory><os><type arch='x86_64'>hvm</type></os></domain>"), 0o644)
	mustVirsh("define", xml)
	expect("a domain nobody made", "domain "+prefix+"stray is unknown", func() { virsh("undefine", prefix+"stray") })

	os.WriteFile(xml, []byte("<network><name>"+prefix+"stray</name></network>"), 0o644)
	mustVirsh("net-define", xml)
	expect("a network nobody made", "libvirt network "+prefix+"stray is unknown", func() { virsh("net-undefine", prefix+"stray") })

	mustVirsh("detach-disk", dom, "vdb", "--config")
	expect("a volume detached behind the agent's back", "domain "+dom+" lacks disk vdb", func() {})

	mustVirsh("snapshot-delete", dom, snapshot, "--metadata")
	expect("a snapshot deleted behind the agent's back", "Machine "+lastSegment(m)+": the store knows snapshots ["+snapshot+"], its domain has []", func() {})
}
