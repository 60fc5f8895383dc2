package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cimid/hypervisor/libvirt"
	"cimid/hypervisor/testguest"
)

// scaleMachines is how many Machines the scale rows are measured with.
const scaleMachines = 1000

// BenchmarkScale measures the agent with 1,000 Machines defined: listing
// them in one GET against 1,000 single GETs, the time from start to READY,
// and the agent's resident memory idle and with the Machines.
func BenchmarkScale(b *testing.B) {
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
	b.Cleanup(func() { benchRemoveInstance(drv, instance) })
	bin := benchBinary(b)
	d, _ := scaleStart(b, bin, dir)
	instance = strings.TrimPrefix(d.getJSON("cloudEntryPoint")["name"].(string), "cimid-")
	time.Sleep(2 * time.Second)
	idleRSS := rssKiB(d.cmd.Process.Pid)

	image := d.createAndWait("machineImages", map[string]any{"name": "scale", "imageLocation": "file://" + guest.Disk})
	config := d.createAndWait("machineConfigs", map[string]any{"name": "scale", "cpu": 1, "memory": benchMemoryKiB})
	createMachines(b, d, config, image, scaleMachines)
	time.Sleep(2 * time.Second)
	fullRSS := rssKiB(d.cmd.Process.Pid)

	// One GET of the whole collection against 1,000 single GETs, over one
	// keep-alive connection each, alternating.
	list := d.getJSON("machines")
	var ids []string
	for _, m := range list["machines"].([]any) {
		ids = append(ids, m.(map[string]any)["id"].(string))
	}
	if len(ids) != scaleMachines {
		b.Fatalf("%d machines listed, want %d", len(ids), scaleMachines)
	}
	var coll, singles []time.Duration
	for i := 0; i < 11; i++ {
		c := timeIt(func() { d.getJSON("machines") })
		s := timeIt(func() {
			for _, id := range ids {
				d.getJSON(id)
			}
		})
		if i > 0 {
			coll, singles = append(coll, c), append(singles, s)
		}
	}

	// A query (filter, order, page) against the plain listing.
	q := "machines?$filter=" + url.QueryEscape("state='STOPPED' and name>='scale-5'") + "&$orderby=" + url.QueryEscape("name:desc") + "&$first=11&$last=60"
	var queried, plain []time.Duration
	for i := 0; i < 11; i++ {
		qt := timeIt(func() {
			if got := d.getJSON(q); len(got["machines"].([]any)) != 50 {
				d.fatalf("query returned %d machines, want 50", len(got["machines"].([]any)))
			}
		})
		pt := timeIt(func() { d.getJSON("machines") })
		if i > 0 {
			queried, plain = append(queried, qt), append(plain, pt)
		}
	}

	// Start to READY with the Machines defined.
	d.stop()
	var readies []time.Duration
	for i := 0; i < 10; i++ {
		var r time.Duration
		d, r = scaleStart(b, bin, dir)
		readies = append(readies, r)
		d.stop()
	}

	med := func(ds []time.Duration) time.Duration { return benchMedian(ds) }
	p99 := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[(len(s)*99)/100]
	}
	reqPerSec := float64(scaleMachines) / med(singles).Seconds()
	fmt.Printf("bench: GET machine collection with %d machines ours=%.1fms base=%.1fms ratio=%.2f target=<=0.20 (collection p50=%.1fms p99=%.1fms; single GETs %.0f req/s)\n",
		scaleMachines, benchMS(med(coll)), benchMS(med(singles)), float64(med(coll))/float64(med(singles)),
		benchMS(med(coll)), benchMS(p99(coll)), reqPerSec)
	fmt.Printf("bench: $filter+$orderby+$first/$last over %d machines ours=%.1fms base=%.1fms ratio=%.2f target=<=1.50\n",
		scaleMachines, benchMS(med(queried)), benchMS(med(plain)), float64(med(queried))/float64(med(plain)))
	fmt.Printf("bench: agent startup to READY with %d machines ours=%.0fms target=<2000ms\n", scaleMachines, benchMS(med(readies)))
	fmt.Printf("bench: agent RSS idle ours=%.1fMiB target=<40MiB\n", float64(idleRSS)/1024)
	fmt.Printf("bench: agent RSS with %d machines ours=%.1fMiB target=<100MiB\n", scaleMachines, float64(fullRSS)/1024)
}

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// scaleStart starts cimid and returns it with the time until it reported
// READY on its notification socket (the systemd protocol).
func scaleStart(tb testing.TB, bin, stateDir string) (*benchDaemon, time.Duration) {
	tb.Helper()
	notifyPath := filepath.Join(stateDir, "notify.sock")
	os.Remove(notifyPath)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	defer os.Remove(notifyPath)
	d := &benchDaemon{tb: tb, stateDir: stateDir, socket: filepath.Join(stateDir, "cimid.sock"), exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "--state-dir", stateDir, "--socket", d.socket, "--domain-type", testguest.DomainType())
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	d.cmd.Stdout, d.cmd.Stderr = d, d
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	tb.Cleanup(d.stop)
	d.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", d.socket)
		},
	}}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			d.fatalf("no READY notification: %v", err)
		}
		if bytes.Contains(buf[:n], []byte("READY=1")) {
			return d, time.Since(start)
		}
	}
}

// createMachines creates n STOPPED Machines through the API, a few at a
// time.
func createMachines(tb testing.TB, d *benchDaemon, config, image string, n int) {
	tb.Helper()
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs <- createStopped(d, config, image, i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			d.fatalf("create machines: %v", err)
		}
	}
}

func createStopped(d *benchDaemon, config, image string, i int) error {
	body, _ := json.Marshal(map[string]any{"name": "scale-" + strconv.Itoa(i),
		"machineTemplate": map[string]any{"machineConfig": map[string]any{"href": config},
			"machineImage": map[string]any{"href": image}, "initialState": "STOPPED"}})
	resp, err := d.client.Post("http://localhost/cimi/machines", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	job := resp.Header.Get("CIMI-Job-URI")
	if resp.StatusCode != http.StatusAccepted || job == "" {
		return fmt.Errorf("create machine %d: %s", i, resp.Status)
	}
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		req, err := http.NewRequest(http.MethodGet, job, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Prefer", benchJobWait)
		r, err := d.client.Do(req)
		if err != nil {
			return err
		}
		var j map[string]any
		err = json.NewDecoder(r.Body).Decode(&j)
		r.Body.Close()
		if err != nil {
			return err
		}
		switch j["state"] {
		case "SUCCESS":
			return nil
		case "FAILED", "STOPPED":
			return fmt.Errorf("create machine %d: %v", i, j["statusMessage"])
		}
	}
	return fmt.Errorf("create machine %d: job did not end", i)
}

// rssKiB reads a process's resident memory.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
