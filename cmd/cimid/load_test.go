package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// TestLoad is the load generator: concurrent clients hit a real daemon over
// its unix socket for a bounded time with a mix of reads (the entry point,
// collections, single resources), queries on machineConfigs and jobs,
// MachineConfiguration creates and deletes, and a few Machine lifecycles
// (create STOPPED, start, force stop, delete; at most loadMachines at once).
// It fails on any 5xx, on a request that gets no answer, on an unexpected
// 4xx, on a Job that is not in a final state soon after the load stops,
// and on a daemon RSS above loadMaxRSS. It prints, on lines starting with
// "load:", the p50/p99 latency of each request class and the throughput.
//
// CIMID_LOAD_CLIENTS (default 8) and CIMID_LOAD_DURATION (default 20s)
// change the size of the run; `make load` runs it longer.

const (
	loadNS          = "http://schemas.dmtf.org/cimi/1"
	loadClientsEnv  = "CIMID_LOAD_CLIENTS"
	loadDurationEnv = "CIMID_LOAD_DURATION"
	// loadMachines bounds the Machines alive at once: guests run under TCG
	// on two shared cores.
	loadMachines = 2
	// loadMaxRSS is the most resident memory the daemon may use.
	loadMaxRSS = 150 << 20
	// loadJobGrace is how long Jobs have to end once the load stops.
	loadJobGrace = 2 * time.Minute
	// loadStepTimeout bounds each Machine lifecycle step.
	loadStepTimeout = 3 * time.Minute
)

func TestLoad(t *testing.T) {
	clients, duration := 8, 20*time.Second
	if s := os.Getenv(loadClientsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", loadClientsEnv, s)
		}
		clients = n
	}
	if s := os.Getenv(loadDurationEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 2m", loadDurationEnv, s)
		}
		duration = d
	}

	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	cleanupInstanceLibvirt(t, d)
	image := d.registerImage(guest.Disk)
	config := d.tinyConfig()
	template := d.create("machineTemplates", map[string]any{"name": "load", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"href": config}, "machineImage": map[string]any{"href": image}, "initialState": "STOPPED"}})
	for i := range 20 {
		d.create("machineConfigs", map[string]any{"name": fmt.Sprintf("seed-%02d", i), "cpu": 1 + i%4,
			"memory": (128 + 32*i) * 1024, "properties": map[string]any{"load": "seed"}})
	}
	singles := []string{config, image, template, "machineConfigs/small", "networks/default", "volumeConfigs/small"}

	l := &loadRun{
		client: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: clients + loadMachines,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dd net.Dialer
				return dd.DialContext(ctx, "unix", d.socket)
			},
		}},
		config: config, image: image, singles: singles,
		latency: map[string][]time.Duration{}, machineSlots: make(chan struct{}, loadMachines),
	}
	pid := d.cmd.Process.Pid
	rssBefore := loadRSS(t, pid)
	peak := rssBefore
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				if rss, err := readRSS(pid); err == nil && rss > peak {
					peak = rss
				}
			}
		}
	}()

	started := time.Now()
	deadline := started.Add(duration)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.clientLoop(i, deadline)
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	close(stopSampling)
	<-sampled
	l.mu.Lock()
	l.done = true // the checks below are not part of the load
	l.mu.Unlock()

	// every Job ends within the grace period
	jobsStart := time.Now()
	pending := slices.Clone(l.jobs)
	slices.Sort(pending)
	pending = slices.Compact(pending)
	total := len(pending)
	var failed []string
	for len(pending) > 0 && time.Since(jobsStart) < loadJobGrace {
		var still []string
		for _, uri := range pending {
			status, _, body, err := l.send("job", http.MethodGet, uri, nil)
			if err != nil || status != http.StatusOK {
				l.errorf("Job %s lost: GET answered %d %v: %s", uri, status, err, loadShort(body))
				continue
			}
			var j struct{ State, Action, StatusMessage string }
			json.Unmarshal(body, &j)
			switch j.State {
			case "SUCCESS":
			case "FAILED", "STOPPED":
				failed = append(failed, fmt.Sprintf("%s %s %s: %s", uri, j.Action, j.State, j.StatusMessage))
			default:
				still = append(still, uri)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	jobsChecked := time.Since(jobsStart)
	for _, uri := range pending {
		l.errorf("Job %s stuck: not in a final state %v after the load stopped", uri, loadJobGrace)
	}
	for _, f := range failed {
		l.errorf("Job failed under load: %s", f)
	}
	rssAfter := loadRSS(t, pid)
	peak = max(peak, rssAfter)

	// the report
	report := func(format string, args ...any) {
		line := fmt.Sprintf("load: "+format, args...)
		t.Log(line)
		fmt.Println(line)
	}
	requests := 0
	for _, class := range slices.Sorted(maps.Keys(l.latency)) {
		ds := l.latency[class]
		requests += len(ds)
		slices.Sort(ds)
		report("class=%-10s n=%-6d p50=%7.2fms p99=%7.2fms max=%7.2fms", class, len(ds),
			loadMS(ds[len(ds)*50/100]), loadMS(ds[min(len(ds)-1, len(ds)*99/100)]), loadMS(ds[len(ds)-1]))
	}
	report("clients=%d duration=%v requests=%d throughput=%.0f req/s 5xx=%d unanswered=%d machine-lifecycles=%d config-create-delete=%d",
		clients, elapsed.Round(time.Millisecond), requests, float64(requests)/elapsed.Seconds(), l.fiveHundreds, l.dropped, l.lifecycles, l.configCycles)
	report("jobs=%d final=%d failed=%d stuck=%d (checked within %v of the load stopping)", total, total-len(pending),
		len(failed), len(pending), jobsChecked.Round(time.Millisecond))
	report("rss before=%.1fMiB after=%.1fMiB peak=%.1fMiB limit=%dMiB", loadMiB(rssBefore), loadMiB(rssAfter), loadMiB(peak), loadMaxRSS>>20)

	if peak > loadMaxRSS {
		t.Errorf("daemon RSS reached %.1f MiB, above the %d MiB bound", loadMiB(peak), loadMaxRSS>>20)
	}
	if l.lifecycles == 0 {
		t.Errorf("no Machine lifecycle completed in %v", duration)
	}
	for i, e := range l.errs {
		if i == 30 {
			t.Errorf("... and %d more", len(l.errs)-30)
			break
		}
		t.Error(e)
	}
	if r := d.get("cloudEntryPoint"); r.Status != http.StatusOK {
		t.Errorf("cloudEntryPoint after the load: %d", r.Status)
	}
	checkDaemonLog(t, d)
}

// loadRun is the shared state of one run.
type loadRun struct {
	client                *http.Client
	config, image         string
	singles               []string
	machineSlots          chan struct{} // one token per Machine alive
	mu                    sync.Mutex
	done                  bool                       // the load is over: latencies are no longer recorded
	latency               map[string][]time.Duration // by request class
	jobs                  []string                   // every CIMI-Job-URI answered
	errs                  []string
	lifecycles            int
	configCycles          int
	fiveHundreds, dropped int
}

func (l *loadRun) errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

// send makes one request and records its latency under class. A 5xx or a
// request without an answer is recorded as an error here; other statuses
// are for the caller to judge.
func (l *loadRun) send(class, method, path string, body any) (int, http.Header, []byte, error) {
	target := path
	if !strings.HasPrefix(path, "http") {
		target = "http://localhost/cimi/" + strings.TrimPrefix(path, "/")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	var respBody []byte
	if err == nil {
		respBody, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.dropped++
		l.errs = append(l.errs, fmt.Sprintf("%s %s: no answer: %v", method, path, err))
		return 0, nil, nil, err
	}
	if !l.done {
		l.latency[class] = append(l.latency[class], took)
	}
	if resp.StatusCode >= 500 {
		l.fiveHundreds++
		l.errs = append(l.errs, fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, loadShort(respBody)))
	}
	if j := resp.Header.Get("CIMI-Job-URI"); j != "" && resp.StatusCode < 300 {
		l.jobs = append(l.jobs, j)
	}
	return resp.StatusCode, resp.Header, respBody, nil
}

// expect sends a request and records an error unless the status is want.
func (l *loadRun) expect(want int, class, method, path string, body any) (http.Header, []byte, bool) {
	status, h, b, err := l.send(class, method, path, body)
	if err != nil {
		return nil, nil, false
	}
	if status != want {
		if status < 500 { // 5xx are recorded by send
			l.errorf("%s %s: %d, want %d: %s", method, path, status, want, loadShort(b))
		}
		return nil, nil, false
	}
	return h, b, true
}

var loadCollections = []string{"machines", "machineConfigs", "machineImages", "machineTemplates", "jobs",
	"volumes", "volumeConfigs", "networks", "eventLogs", "meters"}

var loadQueries = []struct{ collection, query string }{
	{"machineConfigs", "$filter=cpu>=1 and memory>0&$orderby=memory:desc,name"},
	{"machineConfigs", "$filter=name='seed-03' or cpu=2&$select=name,cpu,memory"},
	{"machineConfigs", "$orderby=created:desc&$first=1&$last=5"},
	{"machineConfigs", "$filter=properties['load']='seed'&$first=2&$last=3&$select=name"},
	{"jobs", "$filter=state='SUCCESS'&$orderby=created:desc&$first=1&$last=20"},
	{"jobs", "$filter=action='add' and progress=100&$select=state,action,targetResource"},
	{"jobs", "$orderby=timeOfStatusChange:desc&$last=10"},
	{"jobs", "$filter=state!='FAILED' and state!='QUEUED'&$first=5&$last=15&$select=state"},
}

// clientLoop runs one client until the deadline; an operation under way
// then is finished.
func (l *loadRun) clientLoop(id int, deadline time.Time) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(deadline.UnixNano())))
	for n := 0; time.Now().Before(deadline); n++ {
		switch p := rng.IntN(100); {
		case p < 15:
			l.expect(http.StatusOK, "entrypoint", http.MethodGet, "cloudEntryPoint", nil)
		case p < 40:
			l.expect(http.StatusOK, "collection", http.MethodGet, loadCollections[rng.IntN(len(loadCollections))], nil)
		case p < 60:
			l.expect(http.StatusOK, "resource", http.MethodGet, l.singles[rng.IntN(len(l.singles))], nil)
		case p < 85:
			q := loadQueries[rng.IntN(len(loadQueries))]
			l.expect(http.StatusOK, "query", http.MethodGet, q.collection+"?"+loadEncode(q.query), nil)
		case p < 95:
			l.configCycle(id, n)
		default:
			select {
			case l.machineSlots <- struct{}{}:
				l.machineLifecycle()
				<-l.machineSlots
			default: // both Machine slots are taken: read instead
				l.expect(http.StatusOK, "collection", http.MethodGet, "machines", nil)
			}
		}
	}
}

// loadEncode escapes a query written readably.
func loadEncode(q string) string {
	v := url.Values{}
	for _, kv := range strings.Split(q, "&") {
		k, val, _ := strings.Cut(kv, "=")
		v.Set(k, val)
	}
	return v.Encode()
}

// configCycle creates a MachineConfiguration and deletes it.
func (l *loadRun) configCycle(id, n int) {
	h, _, ok := l.expect(http.StatusCreated, "create", http.MethodPost, "machineConfigs", map[string]any{
		"name": fmt.Sprintf("load-%d-%d", id, n), "cpu": 1, "memory": 160 * 1024, "properties": map[string]any{"load": "cycle"}})
	if !ok {
		return
	}
	if _, _, ok := l.expect(http.StatusOK, "delete", http.MethodDelete, h.Get("Location"), nil); ok {
		l.mu.Lock()
		l.configCycles++
		l.mu.Unlock()
	}
}

// machineLifecycle creates a STOPPED Machine, starts it, forces it off and
// deletes it, each step waiting for its Job.
func (l *loadRun) machineLifecycle() {
	h, _, ok := l.expect(http.StatusAccepted, "create", http.MethodPost, "machines", map[string]any{
		"resourceURI": loadNS + "/MachineCreate", "name": "load",
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": l.config},
			"machineImage": map[string]any{"href": l.image}, "initialState": "STOPPED"}})
	if !ok || !l.waitJob("create", h.Get("CIMI-Job-URI")) {
		return
	}
	m := h.Get("Location")
	steps := []struct {
		name string
		body map[string]any
	}{
		{"start", map[string]any{"action": loadNS + "/action/start"}},
		{"stop", map[string]any{"action": loadNS + "/action/stop", "force": true}},
	}
	for _, s := range steps {
		s.body["resourceURI"] = loadNS + "/Action"
		h, _, ok := l.expect(http.StatusAccepted, "action", http.MethodPost, m+"/"+s.name, s.body)
		if !ok || !l.waitJob(s.name, h.Get("CIMI-Job-URI")) {
			return
		}
	}
	status, h, b, err := l.send("delete", http.MethodDelete, m, nil)
	if err != nil {
		return
	}
	if status != http.StatusAccepted && status != http.StatusOK {
		l.errorf("DELETE %s: %d %s", m, status, loadShort(b))
		return
	}
	if j := h.Get("CIMI-Job-URI"); j != "" && !l.waitJob("delete", j) {
		return
	}
	l.mu.Lock()
	l.lifecycles++
	l.mu.Unlock()
}

// waitJob polls a Job until it ends; it reports whether it succeeded.
func (l *loadRun) waitJob(step, uri string) bool {
	if uri == "" {
		l.errorf("Machine %s: no CIMI-Job-URI", step)
		return false
	}
	end := time.Now().Add(loadStepTimeout)
	for time.Now().Before(end) {
		status, _, body, err := l.send("job", http.MethodGet, uri, nil)
		if err != nil {
			return false
		}
		if status != http.StatusOK {
			l.errorf("GET %s: %d %s", uri, status, loadShort(body))
			return false
		}
		var j struct{ State, StatusMessage string }
		json.Unmarshal(body, &j)
		switch j.State {
		case "SUCCESS":
			return true
		case "FAILED", "STOPPED":
			return false // reported with the other Jobs at the end
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false // reported as stuck at the end
}

// readRSS reads a process's resident set size from /proc.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func loadRSS(t *testing.T, pid int) int64 {
	t.Helper()
	rss, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

func loadMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func loadMiB(b int64) float64        { return float64(b) / (1 << 20) }

func loadShort(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
