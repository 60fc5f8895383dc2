package qemuimg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQemuImgDiesWithItsParent runs a process that starts qemu-img (a
// stand-in that sleeps, first in PATH) and kills that process: qemu-img
// goes with it.
func TestQemuImgDiesWithItsParent(t *testing.T) {
	if pidFile := os.Getenv("QEMUIMG_TEST_PIDFILE"); pidFile != "" {
		// The child: qemu-img runs until the parent kills this process.
		_, err := run(context.Background(), "info", pidFile)
		t.Fatalf("the stand-in ended: %v", err)
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "qemu-img")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\necho $$ > \"$2.tmp\" && mv \"$2.tmp\" \"$2\"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "pid")
	child := exec.Command(os.Args[0], "-test.run=^TestQemuImgDiesWithItsParent$")
	child.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "QEMUIMG_TEST_PIDFILE="+pidFile)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(30 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the stand-in qemu-img did not start")
		}
	}
	child.Process.Kill()
	child.Wait()
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("qemu-img (pid %d) outlived the process that started it", pid)
		}
	}
}
