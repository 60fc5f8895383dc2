package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// Integration tests on the host's real libvirtd. They fail, rather than skip,
// when it cannot be reached: `make test` sets the host up first.
const (
	systemURI    = "qemu:///system"
	systemPrefix = "cimid-test-hv-"
	// systemRoot holds the files of these tests; unlike a mktemp directory
	// it is traversable by the QEMU user.
	systemRoot      = "/var/lib/cimid-test"
	libvirtdPIDFile = "/run/libvirtd.pid"
	hostEnvFile     = "/run/cimid/host.env"
	libvirtdLog     = "LIBVIRT_LOG_OUTPUTS=3:file:/var/log/libvirt/libvirtd.log"
)

// hostDomainType returns the domain type systemd/host-setup.sh chose for
// this host, or decides the same way when it has not run: KVM when the CPU
// has hardware virtualization, TCG otherwise (a software /dev/kvm cannot
// boot guests).
func hostDomainType(t *testing.T) hypervisor.DomainType {
	if env, err := os.ReadFile(hostEnvFile); err == nil {
		for _, line := range strings.Split(string(env), "\n") {
			if v, ok := strings.CutPrefix(line, "CIMID_DOMAIN_TYPE="); ok {
				return hypervisor.DomainType(strings.TrimSpace(v))
			}
		}
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Fatalf("read /proc/cpuinfo: %v", err)
	}
	for _, field := range strings.Fields(string(cpuinfo)) {
		if field == "vmx" || field == "svm" {
			return hypervisor.DomainKVM
		}
	}
	return hypervisor.DomainQEMU
}

func systemSpec(t *testing.T, name string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{
		Name:       name,
		Type:       hostDomainType(t),
		VCPUs:      1,
		MemoryKiB:  64 * 1024,
		ConsoleLog: filepath.Join(systemRoot, name+".console.log"),
		Metadata: hypervisor.Metadata{
			Instance:     "cimid-test",
			MachineID:    name,
			DesiredState: "STARTED",
		},
	}
}

// openSystem opens qemu:///system and removes what earlier runs left behind.
func openSystem(t *testing.T) *Driver {
	t.Helper()
	if err := makeTraversableDir(systemRoot); err != nil {
		t.Fatalf("create %s: %v", systemRoot, err)
	}
	d := openDriver(t, systemURI)
	removeLeftoverDomains(t, d)
	return d
}

func removeLeftoverDomains(t *testing.T, d *Driver) {
	t.Helper()
	ctx := t.Context()
	list, err := d.ListDomains(ctx)
	must(t, "list domains", err)
	for _, st := range list {
		if !strings.HasPrefix(st.Name, systemPrefix) {
			continue
		}
		t.Logf("removing leftover domain %s", st.Name)
		must(t, "destroy leftover", d.Destroy(ctx, st.Name))
		must(t, "undefine leftover", d.UndefineDomain(ctx, st.Name))
	}
}

// timed runs op, fails the test on error and logs how long it took.
func timed(t *testing.T, what string, op func() error) time.Duration {
	t.Helper()
	start := time.Now()
	err := op()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%-24s %8.1f ms", what, float64(elapsed.Microseconds())/1000)
	return elapsed
}

func TestSystemDomainLifecycle(t *testing.T) {
	d := openSystem(t)
	ctx := t.Context()
	events := d.Events()
	name := systemPrefix + "lifecycle"
	spec := systemSpec(t, name)
	_ = os.Remove(spec.ConsoleLog)
	t.Cleanup(func() {
		_ = d.Destroy(context.Background(), name)
		_ = d.UndefineDomain(context.Background(), name)
		_ = os.Remove(spec.ConsoleLog)
	})
	expect := func(kind hypervisor.EventKind) {
		t.Helper()
		waitEvent(t, events, domainEvent(name, kind), "event "+kindName(kind)+" of "+name)
	}

	timed(t, "define", func() error { return d.DefineDomain(ctx, spec) })
	expect(hypervisor.EventDefined)
	if st := wantState(t, d, name, hypervisor.StateShutoff); st.Metadata == nil || st.Metadata.MachineID != name {
		t.Fatalf("metadata after define: %+v", st.Metadata)
	}

	timed(t, "start", func() error { return d.Start(ctx, name) })
	expect(hypervisor.EventStarted)
	wantState(t, d, name, hypervisor.StateRunning)
	if _, err := os.Stat(spec.ConsoleLog); err != nil {
		t.Errorf("console log: %v", err)
	}

	timed(t, "pause", func() error { return d.Pause(ctx, name) })
	expect(hypervisor.EventSuspended)
	wantState(t, d, name, hypervisor.StatePaused)
	timed(t, "resume", func() error { return d.Resume(ctx, name) })
	expect(hypervisor.EventResumed)
	wantState(t, d, name, hypervisor.StateRunning)

	stopping := spec.Metadata
	stopping.DesiredState, stopping.StopDeadline = "STOPPED", time.Now().Add(time.Minute).Truncate(time.Second)
	timed(t, "set metadata (live)", func() error { return d.SetMetadata(ctx, name, stopping) })
	if st := mustStatus(t, d, name); st.Metadata == nil || !sameMetadata(*st.Metadata, stopping) {
		t.Fatalf("live metadata %+v, want %+v", st.Metadata, stopping)
	}

	timed(t, "managed save", func() error { return d.ManagedSave(ctx, name) })
	expect(hypervisor.EventStopped)
	if st := wantState(t, d, name, hypervisor.StateShutoff); !st.HasManagedSave {
		t.Fatal("no managed save image after ManagedSave")
	} else if st.Metadata == nil || !sameMetadata(*st.Metadata, stopping) {
		t.Fatalf("persistent metadata %+v, want %+v", st.Metadata, stopping)
	}

	timed(t, "start (restore)", func() error { return d.Start(ctx, name) })
	expect(hypervisor.EventStarted)
	if st := wantState(t, d, name, hypervisor.StateRunning); st.HasManagedSave {
		t.Fatal("managed save image left after restore")
	}

	timed(t, "destroy", func() error { return d.Destroy(ctx, name) })
	expect(hypervisor.EventStopped)
	wantState(t, d, name, hypervisor.StateShutoff)
	timed(t, "destroy (stopped)", func() error { return d.Destroy(ctx, name) })

	timed(t, "undefine", func() error { return d.UndefineDomain(ctx, name) })
	expect(hypervisor.EventUndefined)
	_, err := d.DomainStatus(ctx, name)
	wantErrorIs(t, "status after undefine", err, hypervisor.ErrNotFound)
}

func TestSystemUndefineWithManagedSave(t *testing.T) {
	d := openSystem(t)
	ctx := t.Context()
	name := systemPrefix + "saved"
	spec := systemSpec(t, name)
	spec.ConsoleLog = ""
	t.Cleanup(func() {
		_ = d.Destroy(context.Background(), name)
		_ = d.UndefineDomain(context.Background(), name)
	})
	must(t, "define", d.DefineDomain(ctx, spec))
	must(t, "start", d.Start(ctx, name))
	must(t, "managed save", d.ManagedSave(ctx, name))
	must(t, "undefine", d.UndefineDomain(ctx, name))
	_, err := d.DomainStatus(ctx, name)
	wantErrorIs(t, "status after undefine", err, hypervisor.ErrNotFound)
}

func TestSystemEnsurePool(t *testing.T) {
	d := openSystem(t)
	ctx := t.Context()
	name := systemPrefix + "pool"
	removeSystemPool(t, name)
	dir := filepath.Join(systemRoot, fmt.Sprintf("pool-%d", time.Now().UnixNano()), "images")
	t.Cleanup(func() {
		removeSystemPool(t, name)
		_ = os.RemoveAll(filepath.Dir(dir))
	})

	timed(t, "ensure pool (create)", func() error { return d.EnsurePool(ctx, name, dir) })
	for _, p := range []string{filepath.Dir(dir), dir} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm()&0o111 != 0o111 {
			t.Fatalf("%s not traversable by all: %v %v", p, info.Mode(), err)
		}
	}
	timed(t, "ensure pool (exists)", func() error { return d.EnsurePool(ctx, name, dir) })
	assertPoolRunning(t, name)

	image := filepath.Join(dir, "disk.raw")
	must(t, "write image", os.WriteFile(image, make([]byte, 1<<20), 0o644))
	timed(t, "refresh pool", func() error { return d.RefreshPool(ctx, name) })
	vols, err := d.ListPoolVolumes(ctx, name)
	must(t, "list volumes", err)
	if len(vols) != 1 || vols[0].Name != "disk.raw" || vols[0].Path != image {
		t.Fatalf("volumes %+v, want disk.raw at %s", vols, image)
	}

	// A stopped pool is started again.
	withSystemConn(t, func(c *libvirt.Connect) error {
		pool, err := c.LookupStoragePoolByName(name)
		if err != nil {
			return err
		}
		defer pool.Free()
		return pool.Destroy()
	})
	must(t, "ensure stopped pool", d.EnsurePool(ctx, name, dir))
	assertPoolRunning(t, name)
}

func assertPoolRunning(t *testing.T, name string) {
	t.Helper()
	withSystemConn(t, func(c *libvirt.Connect) error {
		pool, err := c.LookupStoragePoolByName(name)
		if err != nil {
			return err
		}
		defer pool.Free()
		active, err := pool.IsActive()
		if err != nil {
			return err
		}
		autostart, err := pool.GetAutostart()
		if err != nil {
			return err
		}
		if !active || !autostart {
			return fmt.Errorf("pool %s active=%t autostart=%t", name, active, autostart)
		}
		return nil
	})
}

// removeSystemPool stops and undefines pool name, leaving its directory.
func removeSystemPool(t *testing.T, name string) {
	t.Helper()
	withSystemConn(t, func(c *libvirt.Connect) error {
		pool, err := c.LookupStoragePoolByName(name)
		if hasCode(err, libvirt.ERR_NO_STORAGE_POOL) {
			return nil
		}
		if err != nil {
			return err
		}
		defer pool.Free()
		if active, _ := pool.IsActive(); active {
			if err := pool.Destroy(); err != nil {
				return err
			}
		}
		return pool.Undefine()
	})
}

// withSystemConn runs fn on a connection of its own to qemu:///system, for
// what the Driver does not offer.
func withSystemConn(t *testing.T, fn func(*libvirt.Connect) error) {
	t.Helper()
	c, err := libvirt.NewConnect(systemURI)
	if err != nil {
		t.Fatalf("connect to %s: %v", systemURI, err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatal(err)
	}
}

// TestSystemReconnect restarts libvirtd under the driver's feet: the driver
// must report itself unavailable, reconnect, say so with a Reconnected event,
// and deliver events again. libvirtd is running again when the test ends,
// whatever happened.
func TestSystemReconnect(t *testing.T) {
	t.Cleanup(func() { ensureLibvirtd(t) })
	d := openSystem(t)
	ctx := t.Context()
	name := systemPrefix + "reconnect"
	spec := systemSpec(t, name)
	spec.ConsoleLog = ""
	t.Cleanup(func() {
		_ = d.Destroy(context.Background(), name)
		_ = d.UndefineDomain(context.Background(), name)
	})
	must(t, "define", d.DefineDomain(ctx, spec))
	must(t, "start", d.Start(ctx, name))

	stopLibvirtd(t)
	waitUnavailable(t, d)
	startLibvirtd(t)
	start := time.Now()
	waitEvent(t, d.Events(), isReconnected, "reconnected event")
	t.Logf("reconnected %s after restarting libvirtd", time.Since(start).Round(time.Millisecond))

	must(t, "ping after reconnect", d.Ping(ctx))
	wantState(t, d, name, hypervisor.StateRunning) // guests survive a libvirtd restart

	// Event callbacks are registered again. Pause first: libvirtd may still be
	// reattaching to the guest's monitor, and a destroy at that moment stops
	// the guest without any lifecycle event; pause waits for the reattachment.
	must(t, "pause after reconnect", d.Pause(ctx, name))
	waitEvent(t, d.Events(), domainEvent(name, hypervisor.EventSuspended), "suspended event after reconnect")
	must(t, "destroy after reconnect", d.Destroy(ctx, name))
	waitEvent(t, d.Events(), domainEvent(name, hypervisor.EventStopped), "stopped event after reconnect")
	must(t, "undefine", d.UndefineDomain(ctx, name))
}

// waitUnavailable waits until the driver notices that libvirtd is gone.
func waitUnavailable(t *testing.T, d *Driver) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.Ping(t.Context())
		if errors.Is(err, hypervisor.ErrUnavailable) {
			t.Logf("while libvirtd is down: %v", err)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver still answers without libvirtd: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// libvirtdPID returns the pid of the running libvirtd, or 0.
func libvirtdPID() int {
	data, err := os.ReadFile(libvirtdPIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !isLiveLibvirtd(pid) {
		return 0
	}
	return pid
}

// isLiveLibvirtd tells whether pid is a libvirtd that has not exited
// (a zombie waiting to be reaped has).
func isLiveLibvirtd(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...
	s := string(stat)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 >= len(s) {
		return false
	}
	return s[open+1:close] == "libvirtd" && s[close+2] != 'Z'
}

// stopLibvirtd terminates the libvirtd named by its pid file and waits for
// it to exit.
func stopLibvirtd(t *testing.T) {
	t.Helper()
	pid := libvirtdPID()
	if pid == 0 {
		t.Fatal("libvirtd is not running")
	}
	must(t, "signal libvirtd", syscall.Kill(pid, syscall.SIGTERM))
	deadline := time.Now().Add(30 * time.Second)
	for isLiveLibvirtd(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stopped libvirtd (pid %d)", pid)
}

// startLibvirtd starts libvirtd the way the host setup does: in a session
// of its own, under tini as subreaper so that QEMU processes are reaped at
// once.
func startLibvirtd(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll("/var/log/libvirt", 0o755); err != nil {
		t.Fatalf("create libvirt log directory: %v", err)
	}
	cmd := exec.Command("tini", "-s", "--", "libvirtd")
	cmd.Env = append(os.Environ(), libvirtdLog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start libvirtd: %v", err)
	}
	go func() { _ = cmd.Wait() }()
	t.Logf("started libvirtd under tini (pid %d)", cmd.Process.Pid)
}

// ensureLibvirtd leaves the host with a libvirtd that accepts connections.
func ensureLibvirtd(t *testing.T) {
	if libvirtdPID() == 0 {
		startLibvirtd(t)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := libvirt.NewConnect(systemURI)
		if err == nil {
			_, _ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("libvirtd does not accept connections: %v", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
