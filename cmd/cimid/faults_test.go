package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// The tests in this file put the agent's surroundings at fault: a storage
// pool that fills up, a qemu-img that fails, and a state file damaged
// while the agent was down. Each must end in a clear error and leave
// nothing behind.

// faultStart launches cimid with extra environment, waits until it serves
// and arranges for its libvirt objects to go when the test ends.
func faultStart(t *testing.T, stateDir string, env ...string) *daemon {
	t.Helper()
	d := launch(t, stateDir, env)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := d.client.Get("http://localhost/cimi/cloudEntryPoint")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("cimid exited during start:\n%s", d.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cimid did not serve within 60 s:\n%s", d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	inst := d.instance()
	t.Cleanup(func() {
		d.kill()
		removeInstanceFromLibvirt(inst)
		removeInstanceNetworks("cimid-" + inst + "-")
	})
	return d
}

// faultRegisterFails registers path as a MachineImage, expects its Job to
// fail with a message holding every one of words, and checks that neither
// a record nor a file of it is left and that the agent still serves.
func (d *daemon) faultRegisterFails(path string, words ...string) string {
	d.t.Helper()
	r := d.postJSON("machineImages", map[string]any{"resourceURI": crashNS + "/MachineImageCreate", "name": "fails",
		"imageLocation": "file://" + path})
	if r.Status != http.StatusAccepted {
		d.t.Fatalf("register %s: %d %s", path, r.Status, r.Body)
	}
	j := d.waitJob(r.Header.Get("CIMI-Job-URI"), 5*time.Minute)
	msg, _ := j["statusMessage"].(string)
	if j["state"] != "FAILED" {
		d.t.Fatalf("the registration's Job: %v", j)
	}
	for _, w := range words {
		if !strings.Contains(msg, w) {
			d.t.Errorf("the failed registration says %q, which does not say %q", msg, w)
		}
	}
	if got := d.get(r.Header.Get("Location")); got.Status != http.StatusNotFound {
		d.t.Errorf("the image of the failed registration: %d %s", got.Status, got.Body)
	}
	if n := d.count("machineImages"); n != 0 {
		d.t.Errorf("%d MachineImages after the failed registration", n)
	}
	if files := d.poolFiles(); len(files) != 0 {
		d.t.Errorf("pool files after the failed registration: %v", files)
	}
	return msg
}

// TestFaultPoolFull registers an image larger than the free space of the
// pool's file system (a 96 MiB tmpfs holding the whole state directory):
// the Job fails saying so, nothing of the image is left, and once the
// space is back a registration works.
func TestFaultPoolFull(t *testing.T) {
	if err := os.MkdirAll(testRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	mnt, err := os.MkdirTemp(testRoot, "TestFaultPoolFull-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m,mode=0711", "tmpfs", mnt).CombinedOutput(); err != nil {
		os.Remove(mnt)
		t.Fatalf("mount a tmpfs on %s: %v: %s", mnt, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			return
		}
		os.Remove(mnt)
	})
	stateDir := filepath.Join(mnt, "state")
	if err := os.Mkdir(stateDir, 0o711); err != nil {
		t.Fatal(err)
	}

	// Random bytes: qemu-img finds no zeros to leave out.
	big := filepath.Join(testguest.TempDir(t), "random.raw")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	chunk := make([]byte, 1<<20)
	for i := 0; i < 150; i++ {
		rng.Read(chunk)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(big, 0o644)

	d := faultStart(t, stateDir)
	msg := d.faultRegisterFails(big, "No space left on device")
	t.Logf("registration into a full pool: %s", msg)
	d.registerImage(faultZeroImage(t))
	d.stop()
	d = faultStart(t, stateDir)
	if n := d.count("machineImages"); n != 1 {
		t.Fatalf("%d MachineImages after a restart, want the one registered", n)
	}
}

// TestFaultQemuImgFails makes the first qemu-img convert fail: the
// registration fails with qemu-img's words, nothing is left, and the next
// registration works.
func TestFaultQemuImgFails(t *testing.T) {
	wrapper := qemuImgWrapper(t)
	trace := filepath.Join(t.TempDir(), "trace")
	d := faultStart(t, newStateDir(t), "PATH="+wrapper+":"+os.Getenv("PATH"),
		"CIMID_FAILPOINT=qemu-img.convert:fail:1", "CIMID_FAILPOINT_TRACE="+trace)
	zero := faultZeroImage(t)
	msg := d.faultRegisterFails(zero, "qemu-img convert", "failure injected by the test")
	t.Logf("registration with a failing qemu-img: %s", msg)
	d.registerImage(zero)
}

// TestFaultCorruptStateFile garbles the first page of the state file
// while the agent is down: the agent refuses to start, names the file and
// the way out the README gives, and leaves the file as it is.
func TestFaultCorruptStateFile(t *testing.T) {
	dir := newStateDir(t)
	d := faultStart(t, dir)
	d.tinyConfig()
	d.stop()

	db := filepath.Join(dir, "cimid.db")
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, os.Getpagesize())
	rand.NewChaCha8([32]byte{2}).Read(garbage)
	if _, err := f.WriteAt(garbage, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sum := func() [32]byte {
		b, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const section = "When the state file is damaged"
	if !bytes.Contains(readme, []byte("## "+section)) {
		t.Fatalf("the README has no section %q", section)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, cimidBinary(t), "--state-dir", dir, "--socket", filepath.Join(dir, "cimid.sock"),
			"--domain-type", testguest.DomainType())
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("cimid kept running on a damaged state file:\n%s", out)
		}
		if err == nil {
			t.Fatalf("cimid exited 0 on a damaged state file:\n%s", out)
		}
		for _, want := range []string{db, "damaged", "mv " + db + " " + db + ".broken", section} {
			if !strings.Contains(string(out), want) {
				t.Errorf("attempt %d: the error does not say %q:\n%s", attempt, want, out)
			}
		}
		if sum() != before {
			t.Fatalf("attempt %d: cimid changed the damaged state file", attempt)
		}
		if attempt == 1 {
			t.Logf("cimid on a damaged state file:\n%s", out)
		}
	}
}
