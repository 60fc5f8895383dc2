package hostcmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTiedCommandDiesWithItsParent runs a process that starts a tied tool
// (a stand-in that sleeps) and kills that process: the tool goes with it.
func TestTiedCommandDiesWithItsParent(t *testing.T) {
	if stand := os.Getenv("HOSTCMD_TEST_STANDIN"); stand != "" {
		// The child: the tool runs until the parent kills this process.
		cmd := exec.Command(stand, os.Getenv("HOSTCMD_TEST_PIDFILE"))
		Tie(cmd)
		defer Hold()()
		t.Fatalf("the stand-in ended: %v", cmd.Run())
	}
	dir := t.TempDir()
	stand, pidFile := filepath.Join(dir, "tool"), filepath.Join(dir, "pid")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\necho $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestTiedCommandDiesWithItsParent$")
	child.Env = append(os.Environ(), "HOSTCMD_TEST_STANDIN="+stand, "HOSTCMD_TEST_PIDFILE="+pidFile)
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
			t.Fatal("the stand-in did not start")
		}
	}
	child.Process.Kill()
	child.Wait()
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the tool (pid %d) outlived the process that started it", pid)
		}
	}
}

func TestTie(t *testing.T) {
	cmd := exec.Command("true")
	if Tied(cmd) {
		t.Fatal("a plain command is tied")
	}
	Tie(cmd)
	if !Tied(cmd) {
		t.Fatal("a tied command is not")
	}
}
