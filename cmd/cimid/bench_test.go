package main

// The benchmark in this file compares the cost of Machine operations through
// the cimid API with the same work done directly through the hypervisor
// driver and qemu-img (the baseline). It prints one line per operation:
//
//	bench: <row> ours=<median>ms base=<median>ms ratio=<ours/base> target=<=<bound>
//
// Run it with `make bench`. It is a testing.B so that `go test ./...` (make
// test) does not run it. It only reports timings and never fails on them;
// it fails when an operation does.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cimid/hypervisor"
	"cimid/hypervisor/libvirt"
	"cimid/hypervisor/qemuimg"
	"cimid/hypervisor/testguest"
	"cimid/ovf"
	"cimid/store"
)

const (
	// benchRuns is the number of measured runs of every operation, on each
	// side; one more unmeasured run warms both sides up.
	benchRuns = 20
	// benchMemoryKiB is the memory of every guest (128 MiB).
	benchMemoryKiB = 128 * 1024
	// benchPollMin is how often the baseline polls libvirt for a domain's
	// state. (The API client asks the agent to answer once a Job has
	// ended: Prefer: wait.)
	benchPollMin = time.Millisecond
	// benchJobWait is the wait each GET of a Job asks for, in seconds.
	benchJobWait = "wait=60"
	// benchDomainPrefix names the baseline's domains.
	benchDomainPrefix = "cimid-bench-"
	// benchDirPrefix names the state directories of benchmark daemons below
	// testRoot.
	benchDirPrefix = "bench-"
)

// benchRow is one line of the table.
type benchRow struct {
	name   string
	target float64
	ours   []time.Duration
	base   []time.Duration
}

func (r *benchRow) line() string {
	o, bs := benchMedian(r.ours), benchMedian(r.base)
	target := "none"
	if r.target > 0 {
		target = fmt.Sprintf("<=%.2f", r.target)
	}
	return fmt.Sprintf("bench: %s ours=%.1fms base=%.1fms ratio=%.2f target=%s",
		r.name, benchMS(o), benchMS(bs), float64(o)/float64(bs), target)
}

func benchMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func BenchmarkMachineOperations(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root and libvirtd (make bench prepares the host)")
	}
	benchLock(b)
	guest := testguest.Build(b)

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
	b.Cleanup(func() { benchRemoveInstance(drv, instance) }) // after the daemon stopped
	d := benchStartDaemon(b, dir)
	instance = strings.TrimPrefix(d.getJSON("cloudEntryPoint")["name"].(string), "cimid-")
	d.instance = instance

	image := d.createAndWait("machineImages", map[string]any{
		"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineImageCreate", "name": "bench",
		"imageLocation": "file://" + guest.Disk})
	config := d.createAndWait("machineConfigs", map[string]any{"name": "bench", "cpu": 1, "memory": benchMemoryKiB})
	imagePath := filepath.Join(dir, "pool", "image-"+lastSegment(image)+".qcow2")
	info, err := qemuimg.Info(ctx, imagePath)
	if err != nil {
		b.Fatalf("the agent's copy of the image: %v", err)
	}

	baseDir := filepath.Join(dir, "bench-base")
	if err := os.MkdirAll(filepath.Join(baseDir, "console"), 0o711); err != nil {
		b.Fatal(err)
	}
	base := &benchBase{b: b, drv: drv, dir: baseDir, image: imagePath, imageFormat: info.Format,
		size: info.VirtualSize, domainType: hypervisor.DomainType(testguest.DomainType())}
	b.Cleanup(base.removeAll)

	rows := []*benchRow{
		{name: "machine create to STARTED", target: 1.25},
		{name: "machine force-stop", target: 1.25},
		// A delete of a stopped machine takes ~2 ms directly: the API's
		// request, durable Job record and poll cannot be within 25% of that,
		// so its row informs; the target applies to stop and delete together.
		{name: "machine delete (stopped)"},
		{name: "machine force-stop and delete", target: 1.25},
	}
	oursCycle := func(record bool) {
		times := d.machineCycle(config, image, drv)
		if record {
			for i, t := range times {
				rows[i].ours = append(rows[i].ours, t)
			}
			rows[3].ours = append(rows[3].ours, times[1]+times[2])
		}
	}
	baseCycle := func(record bool, i int) {
		times := base.cycle(fmt.Sprintf("%s%d-%d", benchDomainPrefix, os.Getpid(), i))
		if record {
			for i, t := range times {
				rows[i].base = append(rows[i].base, t)
			}
			rows[3].base = append(rows[3].base, times[1]+times[2])
		}
	}

	b.ResetTimer()
	for i := 0; i <= benchRuns; i++ {
		record := i > 0 // run 0 warms both sides up
		// Alternate which side goes first, so that neither always runs
		// right after the other.
		if i%2 == 0 {
			oursCycle(record)
			baseCycle(record, i)
		} else {
			baseCycle(record, i)
			oursCycle(record)
		}
	}
	b.StopTimer()

	var out strings.Builder
	for _, r := range rows {
		fmt.Fprintln(&out, r.line())
		unit := strings.ReplaceAll(strings.ReplaceAll(r.name, " ", "-"), "STARTED", "started")
		b.ReportMetric(benchMS(benchMedian(r.ours)), unit+"-ours-ms")
		b.ReportMetric(benchMS(benchMedian(r.base)), unit+"-base-ms")
	}
	for _, r := range rows {
		b.Logf("%s: ours %v base %v", r.name, benchRound(r.ours), benchRound(r.base))
	}
	fmt.Print(out.String())
}

func benchRound(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}

// ---- the API side ----

// benchDaemon is a cimid process driven by the benchmark. (The harness's
// daemon needs a *testing.T, which a benchmark does not have.)
type benchDaemon struct {
	tb       testing.TB
	stateDir string
	socket   string
	instance string
	cmd      *exec.Cmd
	logMu    sync.Mutex
	log      bytes.Buffer
	client   *http.Client
	exited   chan struct{}
}

func (d *benchDaemon) Write(p []byte) (int, error) {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.Write(p)
}

func (d *benchDaemon) logText() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// fatalf fails the benchmark with the daemon's log.
func (d *benchDaemon) fatalf(format string, args ...any) {
	d.tb.Helper()
	d.tb.Fatalf(format+"\ncimid log:\n%s", append(args, d.logText())...)
}

// benchBinary builds cimid as it ships (without test hooks).
func benchBinary(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "cimid")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		tb.Fatalf("build cimid: %v\n%s", err, out)
	}
	return bin
}

// benchStateDir makes a QEMU-traversable state directory below testRoot.
func benchStateDir(tb testing.TB) string {
	tb.Helper()
	if err := os.MkdirAll(testRoot, 0o711); err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp(testRoot, benchDirPrefix)
	if err != nil {
		tb.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func benchStartDaemon(tb testing.TB, stateDir string) *benchDaemon {
	tb.Helper()
	d := &benchDaemon{tb: tb, stateDir: stateDir, socket: filepath.Join(stateDir, "cimid.sock"), exited: make(chan struct{})}
	d.cmd = exec.Command(benchBinary(tb), "--state-dir", stateDir, "--socket", d.socket,
		"--domain-type", testguest.DomainType())
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	d.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", d.socket)
		},
	}}
	tb.Cleanup(d.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := d.client.Get("http://localhost/cimi/cloudEntryPoint"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case <-d.exited:
			d.fatalf("cimid exited during start")
		default:
		}
		if time.Now().After(deadline) {
			d.fatalf("cimid did not serve within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the daemon: SIGTERM, then SIGKILL after 30 s.
func (d *benchDaemon) stop() {
	if d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
}

type benchResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; header holds extra header names and values.
func (d *benchDaemon) do(method, path string, body any, header ...string) benchResponse {
	d.tb.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = "http://localhost/cimi/" + strings.TrimPrefix(path, "/")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		d.tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.fatalf("%s %s: reading the response: %v", method, path, err)
	}
	return benchResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

func (d *benchDaemon) getJSON(path string, header ...string) map[string]any {
	d.tb.Helper()
	r := d.do(http.MethodGet, path, nil, header...)
	if r.status != http.StatusOK {
		d.fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		d.fatalf("GET %s: not JSON (%v): %s", path, err, r.body)
	}
	return m
}

// accepted checks that a request started a Job, finished or not, and
// returns the Job's URI.
func (d *benchDaemon) accepted(what string, r benchResponse) string {
	d.tb.Helper()
	job := r.header.Get("CIMI-Job-URI")
	if (r.status != http.StatusAccepted && r.status != http.StatusCreated && r.status != http.StatusOK) || job == "" {
		d.fatalf("%s: %d %s (headers %v)", what, r.status, r.body, r.header)
	}
	return job
}

// waitJob waits until a Job ends, each GET of it answered once it has
// ended (Prefer: wait), and fails unless it succeeded.
func (d *benchDaemon) waitJob(what, jobURI string) {
	d.tb.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		j := d.getJSON(jobURI, "Prefer", benchJobWait)
		switch j["state"] {
		case "SUCCESS":
			return
		case "FAILED", "STOPPED":
			d.fatalf("%s: job %v", what, j)
		}
		if time.Now().After(deadline) {
			d.fatalf("%s: job still %v after 3 min: %v", what, j["state"], j)
		}
	}
}

// change sends a change asking to be answered once its Job has ended
// (Prefer: wait): a 201 or 200 says it succeeded; after a 202, the Job
// is waited for. It fails the benchmark unless the change succeeded.
func (d *benchDaemon) change(what, method, href string, body map[string]any) benchResponse {
	d.tb.Helper()
	r := d.do(method, href, body, "Prefer", benchJobWait)
	job := d.accepted(what, r)
	if r.status == http.StatusAccepted {
		d.waitJob(what, job)
	}
	return r
}

// createAndWait POSTs a create to a collection or an operation href and
// returns the Location of what was made, once made.
func (d *benchDaemon) createAndWait(href string, body map[string]any) string {
	d.tb.Helper()
	return d.change("POST "+href, http.MethodPost, href, body).header.Get("Location")
}

// machineCycle creates a Machine STARTED, forces it off and deletes it,
// through the API; it returns the time of each of the three, each measured
// from the request until its Job shows SUCCESS. It checks the outcome of
// every step outside the measured time.
func (d *benchDaemon) machineCycle(config, image string, drv *libvirt.Driver) [3]time.Duration {
	d.tb.Helper()
	ctx := context.Background()
	var times [3]time.Duration

	create := map[string]any{
		"resourceURI": "http://schemas.dmtf.org/cimi/1/MachineCreate", "name": "bench",
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": config},
			"machineImage": map[string]any{"href": image}, "initialState": "STARTED"}}
	start := time.Now()
	r := d.change("create Machine", http.MethodPost, "machines", create)
	times[0] = time.Since(start)
	m := r.header.Get("Location")
	if m == "" {
		d.fatalf("create Machine: no Location")
	}
	doc := d.getJSON(m)
	domain := "cimid-" + d.instance + "-" + lastSegment(m)
	if st, err := drv.DomainStatus(ctx, domain); doc["state"] != "STARTED" || err != nil || st.State != hypervisor.StateRunning {
		d.fatalf("after create: Machine %v, domain %s %v (%v)", doc["state"], domain, st.State, err)
	}
	stopHref := opHref(doc, "http://schemas.dmtf.org/cimi/1/action/stop")
	if stopHref == "" {
		d.fatalf("a STARTED Machine offers no stop: %v", doc["operations"])
	}

	stop := map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
		"action": "http://schemas.dmtf.org/cimi/1/action/stop", "force": true}
	start = time.Now()
	d.change("force-stop Machine", http.MethodPost, stopHref, stop)
	times[1] = time.Since(start)
	doc = d.getJSON(m)
	if st, err := drv.DomainStatus(ctx, domain); doc["state"] != "STOPPED" || err != nil || st.State != hypervisor.StateShutoff {
		d.fatalf("after force-stop: Machine %v, domain %s %v (%v)", doc["state"], domain, st.State, err)
	}

	start = time.Now()
	d.change("delete Machine", http.MethodDelete, m, nil)
	times[2] = time.Since(start)
	if g := d.do(http.MethodGet, m, nil); g.status != http.StatusNotFound {
		d.fatalf("deleted Machine: GET %d", g.status)
	}
	if _, err := drv.DomainStatus(ctx, domain); !errors.Is(err, hypervisor.ErrNotFound) {
		d.fatalf("domain %s after delete: %v", domain, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.stateDir, "pool", "machine-"+lastSegment(m)+"*")); len(left) > 0 {
		d.fatalf("files left after delete: %v", left)
	}
	return times
}

// ---- the baseline ----

// benchBase does the agent's work on libvirt and qemu-img directly.
type benchBase struct {
	b           *testing.B
	drv         *libvirt.Driver
	dir         string
	image       string
	imageFormat string
	size        int64
	domainType  hypervisor.DomainType
}

func (x *benchBase) must(what string, err error) {
	x.b.Helper()
	if err != nil {
		x.b.Fatalf("baseline: %s: %v", what, err)
	}
}

// waitState polls the domain until it is in want.
func (x *benchBase) waitState(name string, want hypervisor.State) {
	x.b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := x.drv.DomainStatus(ctx, name)
		x.must("status of "+name, err)
		if st.State == want {
			return
		}
		if time.Now().After(deadline) {
			x.b.Fatalf("baseline: %s still %s after 1 min, want %s", name, st.State, want)
		}
		time.Sleep(benchPollMin)
	}
}

// cycle creates domain name running on an overlay of the image, forces it
// off and deletes it with its overlay; it returns the time of each step.
func (x *benchBase) cycle(name string) [3]time.Duration {
	x.b.Helper()
	ctx := context.Background()
	var times [3]time.Duration
	disk := filepath.Join(x.dir, name+"-disk0.qcow2")
	console := filepath.Join(x.dir, "console", name+".log")
	// The shape of compute's domainSpec.
	spec := hypervisor.DomainSpec{
		Name: name, Type: x.domainType, VCPUs: 1, MemoryKiB: benchMemoryKiB, ConsoleLog: console,
		Metadata: hypervisor.Metadata{Instance: "bench", MachineID: name, DesiredState: "STARTED"},
		Disks:    []hypervisor.Disk{{Path: disk, Format: "qcow2", Target: "vda", Bus: "virtio", Serial: "disk0"}},
	}

	start := time.Now()
	x.must("overlay", qemuimg.CreateOverlay(ctx, disk, x.image, x.imageFormat, x.size))
	x.must("define", x.drv.DefineDomain(ctx, spec))
	x.must("start", x.drv.Start(ctx, name))
	x.waitState(name, hypervisor.StateRunning)
	times[0] = time.Since(start)

	start = time.Now()
	x.must("destroy", x.drv.Destroy(ctx, name))
	x.waitState(name, hypervisor.StateShutoff)
	times[1] = time.Since(start)

	start = time.Now()
	st, err := x.drv.DomainStatus(ctx, name)
	x.must("status", err)
	if st.State != hypervisor.StateShutoff {
		x.must("destroy", x.drv.Destroy(ctx, name))
	}
	x.must("undefine", x.drv.UndefineDomain(ctx, name))
	x.must("remove overlay", os.Remove(disk))
	if err := os.Remove(console); err != nil && !errors.Is(err, os.ErrNotExist) {
		x.must("remove console log", err)
	}
	times[2] = time.Since(start)

	if _, err := x.drv.DomainStatus(ctx, name); !errors.Is(err, hypervisor.ErrNotFound) {
		x.b.Fatalf("baseline: %s after delete: %v", name, err)
	}
	return times
}

// removeAll removes the baseline's domains after a failed run.
func (x *benchBase) removeAll() { benchRemoveDomains(x.drv, benchDomainPrefix) }

// ---- cleanup ----

// benchLock keeps two benchmark runs from cleaning up each other's domains.
func benchLock(tb testing.TB) {
	tb.Helper()
	if err := os.MkdirAll(testRoot, 0o711); err != nil {
		tb.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(testRoot, "bench.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
}

// benchRemoveDomains powers off and undefines every domain whose name
// starts with prefix.
func benchRemoveDomains(drv *libvirt.Driver, prefix string) {
	ctx := context.Background()
	doms, err := drv.ListDomains(ctx)
	if err != nil {
		return
	}
	for _, dom := range doms {
		if strings.HasPrefix(dom.Name, prefix) {
			drv.Destroy(ctx, dom.Name)
			drv.UndefineDomain(ctx, dom.Name)
		}
	}
}

// benchRemoveInstance removes what a benchmark daemon may leave in libvirt:
// its domains and its storage pool.
func benchRemoveInstance(drv *libvirt.Driver, instance string) {
	if instance == "" {
		return
	}
	benchRemoveDomains(drv, "cimid-"+instance+"-")
	removeInstanceNetworks("cimid-" + instance + "-")
	virsh("pool-destroy", "cimid-"+instance)
	virsh("pool-undefine", "cimid-"+instance)
}

// benchRemoveLeftovers removes what an interrupted earlier run left: the
// baseline's domains, and the daemons' state directories with their
// domains and pools.
func benchRemoveLeftovers(tb testing.TB, drv *libvirt.Driver) {
	tb.Helper()
	benchRemoveDomains(drv, benchDomainPrefix)
	dirs, _ := filepath.Glob(filepath.Join(testRoot, benchDirPrefix+"*"))
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		if db, err := store.Open(filepath.Join(dir, "cimid.db")); err == nil {
			instance, _ := db.InstanceID(func() string { return "" })
			db.Close()
			benchRemoveInstance(drv, instance)
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Logf("leftover %s: %v", dir, err)
		}
	}
}

// ---- OVF import and export ----

const (
	// benchOVFRuns is the number of measured imports and exports on each
	// side; one more unmeasured run warms both sides up. An export of the
	// benchmark's disk takes about 20 s, so there are few.
	benchOVFRuns = 3
	// benchOVFDiskBytes is the virtual size of the benchmark's disk: its
	// first half random bytes, its second half text.
	benchOVFDiskBytes = 1 << 30
)

// BenchmarkOVF compares an import of an OVA holding a 1 GiB disk (half
// random data) through the API with a plain qemu-img convert of the same
// VMDK to qcow2, and an export of the imported Machine with a plain
// qemu-img convert of its disk to a streamOptimized VMDK.
func BenchmarkOVF(b *testing.B) {
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
	d.instance = instance

	work := filepath.Join(dir, "bench-ovf")
	if err := os.MkdirAll(work, 0o711); err != nil {
		b.Fatal(err)
	}
	vmdk, ova := benchOVFPackage(b, work)

	importRow := &benchRow{name: "ovf import 1GiB (half random) vs qemu-img convert", target: 1.25}
	exportRow := &benchRow{name: "ovf export 1GiB (half random) vs qemu-img convert streamOptimized", target: 1.25}

	// The Machine every export reads, imported once.
	kept := d.benchImport(ova)
	machine := d.benchSystemMachine(kept)
	disk := filepath.Join(dir, "pool", "machine-"+lastSegment(machine)+"-disk0.qcow2")

	oursImport := func(record bool) {
		start := time.Now()
		sys := d.benchImport(ova)
		if record {
			importRow.ours = append(importRow.ours, time.Since(start))
		}
		d.benchDelete(sys)
	}
	baseImport := func(record bool) {
		out := filepath.Join(work, "base-import.qcow2")
		start := time.Now()
		if err := qemuimg.Convert(ctx, vmdk, qemuimg.FormatVMDK, out, qemuimg.FormatQCOW2, nil); err != nil {
			b.Fatalf("baseline import: %v", err)
		}
		if record {
			importRow.base = append(importRow.base, time.Since(start))
		}
		os.Remove(out)
	}
	oursExport := func(record bool) {
		dest := filepath.Join(work, "ours-export.ova")
		start := time.Now()
		d.change("export Machine", http.MethodPost, machine+"/export", map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
			"action": "http://schemas.dmtf.org/cimi/1/action/export", "format": "application/ovf", "destination": "file://" + dest})
		if record {
			exportRow.ours = append(exportRow.ours, time.Since(start))
		}
		os.Remove(dest)
	}
	baseExport := func(record bool) {
		out := filepath.Join(work, "base-export.vmdk")
		start := time.Now()
		if err := qemuimg.Convert(ctx, disk, qemuimg.FormatQCOW2, out, qemuimg.FormatVMDK, nil); err != nil {
			b.Fatalf("baseline export: %v", err)
		}
		if record {
			exportRow.base = append(exportRow.base, time.Since(start))
		}
		os.Remove(out)
	}

	b.ResetTimer()
	for i := 0; i <= benchOVFRuns; i++ {
		record := i > 0
		if i%2 == 0 {
			oursImport(record)
			baseImport(record)
			oursExport(record)
			baseExport(record)
		} else {
			baseImport(record)
			oursImport(record)
			baseExport(record)
			oursExport(record)
		}
	}
	b.StopTimer()

	var out strings.Builder
	for _, r := range []*benchRow{importRow, exportRow} {
		fmt.Fprintln(&out, r.line())
		unit := strings.Fields(r.name)[1]
		b.ReportMetric(benchMS(benchMedian(r.ours)), "ovf-"+unit+"-ours-ms")
		b.ReportMetric(benchMS(benchMedian(r.base)), "ovf-"+unit+"-base-ms")
		b.Logf("%s: ours %v base %v", r.name, benchRound(r.ours), benchRound(r.base))
	}
	fmt.Print(out.String())
}

// benchOVFPackage writes the benchmark's disk as a streamOptimized VMDK
// and an OVA holding it, in dir.
func benchOVFPackage(tb testing.TB, dir string) (vmdk, ova string) {
	tb.Helper()
	ctx := context.Background()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		tb.Fatal(err)
	}
	rng := mrand.NewChaCha8([32]byte{'c', 'i', 'm', 'i', 'd'})
	if _, err := io.CopyN(f, rng, benchOVFDiskBytes/2); err != nil {
		tb.Fatal(err)
	}
	line := []byte("The quick brown fox jumps over the lazy dog; cimid benchmarks its OVF import and export.\n")
	text := bytes.Repeat(line, (1<<20)/len(line)+1)[:1<<20]
	for i := 0; i < benchOVFDiskBytes/2>>20; i++ {
		if _, err := f.Write(text); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	vmdk = filepath.Join(dir, "disk.vmdk")
	if err := qemuimg.Convert(ctx, raw, qemuimg.FormatRaw, vmdk, qemuimg.FormatVMDK, nil); err != nil {
		tb.Fatal(err)
	}
	os.Remove(raw)
	fi, err := os.Stat(vmdk)
	if err != nil {
		tb.Fatal(err)
	}
	desc, err := ovf.Encode(ovf.Spec{Name: "bench", Systems: []ovf.SystemSpec{{Name: "bench", CPUs: 1, MemoryBytes: benchMemoryKiB * 1024,
		Disks: []ovf.DiskSpec{{Href: "disk.vmdk", Size: fi.Size(), Capacity: benchOVFDiskBytes}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	ova = filepath.Join(dir, "bench.ova")
	out, err := os.Create(ova)
	if err != nil {
		tb.Fatal(err)
	}
	pkg := ovf.OVA{DescriptorName: "bench.ovf", Descriptor: desc, Files: []ovf.OVAFile{{Name: "disk.vmdk", Size: fi.Size(),
		Open: func() (io.ReadCloser, error) { return os.Open(vmdk) }}}}
	if err := pkg.Write(ctx, out); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return vmdk, ova
}

// benchImport imports an OVA through the API and returns the System.
func (d *benchDaemon) benchImport(ova string) string {
	d.tb.Helper()
	return d.change("import System", http.MethodPost, "systems/import", map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action",
		"action": "http://schemas.dmtf.org/cimi/1/action/import", "source": "file://" + ova}).header.Get("Location")
}

// benchSystemMachine returns the only Machine of a System.
func (d *benchDaemon) benchSystemMachine(sys string) string {
	d.tb.Helper()
	c := d.getJSON(sys + "/machines")
	list, _ := c["systemMachines"].([]any)
	if len(list) != 1 {
		d.fatalf("System %s: machines %v", sys, c)
	}
	return list[0].(map[string]any)["machine"].(map[string]any)["href"].(string)
}

// benchDelete deletes a resource and waits for its Job.
func (d *benchDaemon) benchDelete(href string) {
	d.tb.Helper()
	d.change("delete "+href, http.MethodDelete, href, nil)
}
