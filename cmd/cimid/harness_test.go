package main

import (
	"bytes"
	"cimid/store"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests in this package run the real cimid binary against the real
// libvirtd, each with its own state directory and socket.

var binaries struct {
	once sync.Once
	path string
	err  error
}

// cimidBinary builds cimid once per test process, with the test hooks.
func cimidBinary(t *testing.T) string {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "cimid-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.path = filepath.Join(dir, "cimid")
		out, err := exec.Command("go", "build", "-tags", "testhooks", "-o", binaries.path, ".").CombinedOutput()
		if err != nil {
			binaries.err = fmt.Errorf("build cimid: %v\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.path
}

// testRoot is where test state directories live: QEMU's user must be able
// to traverse every directory above a disk image, which rules out 0700
// temporary directories.
const testRoot = "/var/lib/cimid-test"

// daemon is one cimid process under test.
type daemon struct {
	t        *testing.T
	stateDir string
	socket   string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	logMu    *sync.Mutex
	client   *http.Client
	exited   chan struct{}
}

// newStateDir makes a fresh, QEMU-traversable state directory.
func newStateDir(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll(testRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(testRoot, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o711)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemon runs cimid on stateDir and waits until it serves.
func startDaemon(t *testing.T, stateDir string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, stateDir: stateDir, socket: filepath.Join(stateDir, "cimid.sock"),
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}, exited: make(chan struct{})}
	args := append([]string{"--state-dir", stateDir, "--socket", d.socket, "--log-level", "debug"}, extra...)
	d.cmd = exec.Command(cimidBinary(t), args...)
	d.cmd.Stderr = lockedWriter{d.logMu, d.log}
	d.cmd.Stdout = d.cmd.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	d.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", d.socket)
		},
	}}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("cimid log:\n%s", d.logText())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := d.client.Get("http://localhost/cimi/cloudEntryPoint")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				d.removeLibvirtObjectsAtCleanup()
				return d
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("cimid exited during start:\n%s", d.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cimid did not serve within 30 s:\n%s", d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) logText() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	if d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
}

// stop sends SIGTERM and waits.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		d.t.Fatal("cimid did not stop within 60 s of SIGTERM")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not JSON (%v):\n%s", err, r.Body)
	}
	return m
}

// do sends a request; path is relative to /cimi/ or an absolute URL.
func (d *daemon) do(method, path, contentType string, body []byte, header ...string) response {
	d.t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = "http://localhost/cimi/" + strings.TrimPrefix(path, "/")
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (d *daemon) get(path string, header ...string) response {
	d.t.Helper()
	return d.do(http.MethodGet, path, "", nil, header...)
}

func (d *daemon) postJSON(path string, v any) response {
	d.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.do(http.MethodPost, path, "application/json", b)
}

// waitJob polls a Job until it ends and returns it.
func (d *daemon) waitJob(jobURI string, timeout time.Duration) map[string]any {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// The agent holds the answer until the Job ends (Prefer: wait).
		r := d.get(jobURI, "Prefer", "wait=5")
		if r.Status != 200 {
			d.t.Fatalf("GET %s: %d %s", jobURI, r.Status, r.Body)
		}
		j := r.JSON(d.t)
		switch j["state"] {
		case "SUCCESS", "FAILED", "STOPPED":
			return j
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("job %s still %v after %v: %v", jobURI, j["state"], timeout, j)
		}
		if r.Header.Get("Preference-Applied") == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// removeLibvirtObjectsAtCleanup removes, when the test ends and after the
// daemon is gone, everything its instance made in libvirt. The state
// directory itself is removed by newStateDir's cleanup.
func (d *daemon) removeLibvirtObjectsAtCleanup() {
	instance := d.instance()
	d.t.Cleanup(func() {
		d.kill()
		removeInstanceObjects(instance)
	})
}

// removeStateDirObjectsAtCleanup does the same for an agent the test ran
// by hand on dir, whose instance id is in its state file.
func removeStateDirObjectsAtCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		db, err := store.Open(filepath.Join(dir, "cimid.db"))
		if err != nil {
			return
		}
		instance, _ := db.InstanceID(func() string { return "" })
		db.Close()
		if instance != "" {
			removeInstanceObjects(instance)
		}
	})
}

// removeInstanceObjects removes an instance's domains (with their managed
// saves and snapshot metadata), networks and pool from libvirt.
func removeInstanceObjects(instance string) {
	prefix := "cimid-" + instance
	if out, err := virsh("list", "--all", "--name"); err == nil {
		for _, n := range strings.Fields(out) {
			if strings.HasPrefix(n, prefix+"-") {
				virsh("destroy", n)
				virsh("undefine", "--managed-save", "--snapshots-metadata", n)
			}
		}
	}
	removeInstanceNetworks(prefix + "-")
	virsh("pool-destroy", prefix)
	virsh("pool-undefine", prefix)
}
