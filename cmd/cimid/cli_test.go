package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// cimiBinary builds the cimi command for this test.
func cimiBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cimi")
	if out, err := exec.Command("go", "build", "-o", path, "../cimi").CombinedOutput(); err != nil {
		t.Fatalf("build cimi: %v\n%s", err, out)
	}
	return path
}

// cli runs cimi against the daemon and returns its stdout (its stderr
// when wantErr); it fails the test when the command fails, unless wantErr.
func (d *daemon) cli(bin string, wantErr bool, args ...string) string {
	d.t.Helper()
	cmd := exec.Command(bin, append([]string{"--socket", d.socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if (err != nil) != wantErr {
		d.t.Fatalf("cimi %s: err=%v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if wantErr {
		return stderr.String()
	}
	return string(out)
}

func TestCLIDrivesMachineLifecycle(t *testing.T) {
	guest := testguest.Build(t)
	bin := cimiBinary(t)
	d := machineDaemon(t, newStateDir(t))

	if out := d.cli(bin, false, "get"); !strings.Contains(out, `"baseURI"`) {
		t.Fatalf("cimi get:\n%s", out)
	}
	img := d.cli(bin, false, "image", "create", "--name", "guest", "--location", "file://"+guest.Disk)
	cfg := d.tinyConfig()
	out := d.cli(bin, false, "machine", "create", "--name", "cli-vm", "--config", cfg, "--image", strings.TrimSpace(lastLine(img)), "--initial-state", "STARTED")
	m := strings.TrimSpace(lastLine(out))
	if !strings.Contains(m, "/cimi/machines/") || d.state(m) != "STARTED" {
		t.Fatalf("machine create printed %q; state %s", out, d.state(m))
	}
	id := lastSegment(m)
	if list := d.cli(bin, false, "machine", "list"); !strings.Contains(list, id) || !strings.Contains(list, "STARTED") {
		t.Fatalf("machine list:\n%s", list)
	}
	if show := d.cli(bin, false, "machine", "show", id); !strings.Contains(show, `"cli-vm"`) {
		t.Fatalf("machine show:\n%s", show)
	}
	// an action the Machine does not offer now is refused with a reason
	if out := d.cli(bin, true, "machine", "start", id); !strings.Contains(out, "start") {
		t.Fatalf("start of a running machine:\n%s", out)
	}
	d.cli(bin, false, "machine", "pause", id)
	if st := d.state(m); st != "PAUSED" {
		t.Fatalf("after cimi machine pause: %s", st)
	}
	d.cli(bin, false, "machine", "start", id)
	d.cli(bin, false, "machine", "stop", "--force", id)
	if st := d.state(m); st != "STOPPED" {
		t.Fatalf("after cimi machine stop --force: %s", st)
	}
	if jobs := d.cli(bin, false, "list", "jobs"); !strings.Contains(jobs, "SUCCESS") {
		t.Fatalf("list jobs:\n%s", jobs)
	}
	jobURI := strings.TrimSpace(lastLine(d.cli(bin, false, "machine", "delete", "--no-wait", id)))
	d.cli(bin, false, "job", "wait", jobURI)
	if r := d.get(m); r.Status != 404 {
		t.Fatalf("machine after cimi delete: %d", r.Status)
	}
	os.Remove(bin)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestCLIEvents(t *testing.T) {
	bin := cimiBinary(t)
	d := machineDaemon(t, newStateDir(t))
	img := filepath.Join(d.stateDir, "blank.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m := d.createMachine(d.tinyConfig(), d.registerImage(img), "STOPPED")
	path := strings.TrimPrefix(m, "http://localhost/cimi/")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	follow := exec.CommandContext(ctx, bin, "--socket", d.socket, "events", "--follow", path)
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(500 * time.Millisecond) // the stream is open before the change
	d.act(m, "start", nil)
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("cimi events --follow ended")
			}
			seen = strings.Contains(l, path) && strings.Contains(l, "-> STARTED")
		case <-ctx.Done():
			t.Fatal("cimi events --follow printed no start")
		}
	}
	history := d.cli(bin, false, "events", path)
	if !strings.Contains(history, "-> STARTED") || !strings.Contains(history, "create") {
		t.Fatalf("cimi events %s:\n%s", path, history)
	}
}
