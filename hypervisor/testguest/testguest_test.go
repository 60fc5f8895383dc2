package testguest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/cloudinit"
	"cimid/hypervisor/testguest"
)

const (
	libvirtURI = "qemu:///system"
	// namePrefix marks every domain these tests create.
	namePrefix = "cimid-test-testguest-"
	// bootTimeout is generous: under TCG on a busy two-core host the guest
	// needs several seconds to reach READY.
	bootTimeout = 3 * time.Minute
	stopTimeout = 60 * time.Second
)

// TestACPIShutdown boots the guest from disk.qcow2, presses the ACPI power
// button with virsh shutdown, and checks that the guest reports it and that
// the transient domain goes away.
func TestACPIShutdown(t *testing.T) {
	t.Parallel()
	g := testguest.Build(t)
	d := startGuest(t, g.Disk, "")

	line := d.waitConsole(t, testguest.MarkerReady, bootTimeout)
	t.Logf("%s after %v: %q", testguest.MarkerReady, time.Since(d.started).Round(time.Millisecond), line)

	ctx, cancel := context.WithTimeout(t.Context(), stopTimeout)
	defer cancel()
	shutdownAt := time.Now()
	if out, err := virsh(ctx, "shutdown", d.name); err != nil {
		t.Fatalf("virsh shutdown %s: %v: %s", d.name, err, out)
	}
	d.waitConsole(t, testguest.MarkerACPIPoweroff, stopTimeout)
	d.waitGone(t, stopTimeout)
	t.Logf("domain gone %v after virsh shutdown", time.Since(shutdownAt).Round(time.Millisecond))
}

// TestSelfPoweroff boots disk-poweroff.qcow2 and checks that the guest
// powers itself off and that the transient domain goes away.
func TestSelfPoweroff(t *testing.T) {
	t.Parallel()
	g := testguest.Build(t)
	d := startGuest(t, g.PoweroffDisk, "")

	d.waitConsole(t, testguest.MarkerReady, bootTimeout)
	readyAt := time.Now()
	t.Logf("%s after %v", testguest.MarkerReady, readyAt.Sub(d.started).Round(time.Millisecond))
	d.waitConsole(t, testguest.MarkerSelfPoweroff, stopTimeout)
	d.waitGone(t, stopTimeout)
	t.Logf("domain gone %v after READY", time.Since(readyAt).Round(time.Millisecond))
}

// TestSeedRunsUserData boots the guest with a cloud-init seed on an IDE
// CD-ROM whose user-data combines a credential with the user's own
// multipart document: the guest mounts the seed, finds the keys of both
// cloud-configs and runs both scripts, in order, on the console.
func TestSeedRunsUserData(t *testing.T) {
	t.Parallel()
	g := testguest.Build(t)
	own := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=own\n\n" +
		"--own\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho \"TESTGUEST: FIRST $(cat /run/seed/meta-data | head -n 1)\"\n" +
		"--own\nContent-Type: text/cloud-config\n\n#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAown one@x\n" +
		"--own\nContent-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho TESTGUEST: SECOND\nexit 3\n")) + "\n--own--\n"
	seed := cloudinit.Seed{InstanceID: "tg-seed", Hostname: "tg", UserName: "alice", UserData: []byte(own),
		SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example"}}
	iso := filepath.Join(testguest.TempDir(t), "seed.iso")
	if err := seed.WriteFile(iso, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	d := startGuest(t, g.Disk, iso)
	for _, c := range []struct{ marker, want string }{
		{testguest.MarkerSeed, " meta-data network-config user-data"},
		{testguest.MarkerUserData, " mime text/x-shellscript text/cloud-config text/x-shellscript text/cloud-config"},
		{testguest.MarkerSSHKeys, " 2"},
		{testguest.MarkerReady, ""},
		{testguest.MarkerScriptStart + " 1", ""},
		{"TESTGUEST: FIRST", ` instance-id: "tg-seed"`},
		{testguest.MarkerScriptExit + " 1", " 0"},
		{testguest.MarkerScriptStart + " 3", ""},
		{"TESTGUEST: SECOND", ""},
		{testguest.MarkerScriptExit + " 3", " 3"},
	} {
		line := d.waitConsole(t, c.marker, bootTimeout)
		if !strings.HasSuffix(line, c.marker+c.want) {
			t.Fatalf("console line %q, want it to end in %q", line, c.marker+c.want)
		}
	}
	t.Logf("scripts done %v after the start", time.Since(d.started).Round(time.Millisecond))
}

// TestBuildIsCached checks that a second Build with unchanged inputs is a
// quick no-op that returns the same files.
func TestBuildIsCached(t *testing.T) {
	first := testguest.Build(t)
	fi, err := os.Stat(first.Disk)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second := testguest.Build(t)
	took := time.Since(start)
	if second != first {
		t.Errorf("second Build returned %+v, first %+v", second, first)
	}
	fi2, err := os.Stat(second.Disk)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, fi2) || !fi.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("second Build rewrote %s", second.Disk)
	}
	if took > time.Second {
		t.Errorf("cached Build took %v, want well under a second", took)
	}
	t.Logf("cached Build took %v", took)
}

func TestWaitConsole(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "console.log")
	go func() {
		writes := []string{"noise\r\n", "TESTGUEST: BOO", "TED 1.5s\r\nTESTGUEST: DISKS vda\r\n", "TESTGUEST: REA"}
		for _, w := range writes {
			time.Sleep(20 * time.Millisecond)
			f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return
			}
			_, _ = f.WriteString(w)
			_ = f.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	line, err := testguest.WaitConsole(ctx, path, "DISKS")
	if err != nil {
		t.Fatal(err)
	}
	if line != "TESTGUEST: DISKS vda" {
		t.Errorf("WaitConsole returned %q", line)
	}
	line, err = testguest.WaitConsole(ctx, path, testguest.MarkerBooted)
	if err != nil || line != "TESTGUEST: BOOTED 1.5s" {
		t.Errorf("WaitConsole = %q, %v; want the joined BOOTED line", line, err)
	}

	short, cancelShort := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelShort()
	if line, err := testguest.WaitConsole(short, path, testguest.MarkerReady); err == nil {
		t.Errorf("WaitConsole matched the unfinished line %q", line)
	}
}

func TestDomainType(t *testing.T) {
	t.Setenv("CIMID_DOMAIN_TYPE", "kvm")
	if got := testguest.DomainType(); got != "kvm" {
		t.Errorf("DomainType() with CIMID_DOMAIN_TYPE=kvm = %q", got)
	}
	t.Setenv("CIMID_DOMAIN_TYPE", "")
	if got := testguest.DomainType(); got != "kvm" && got != "qemu" {
		t.Errorf("DomainType() = %q, want kvm or qemu", got)
	}
}

// domain is a running transient test domain.
type domain struct {
	name    string
	console string
	started time.Time
}

// startGuest boots a transient domain from an overlay of disk, with the
// ISO image seed (when not empty) as an IDE CD-ROM. The domain is
// destroyed when the test ends.
func startGuest(t *testing.T, disk, seed string) *domain {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	removeLeftovers(ctx, t)

	dir := testguest.TempDir(t)
	overlay, err := testguest.Overlay(ctx, dir, disk)
	if err != nil {
		t.Fatal(err)
	}
	d := &domain{
		name:    namePrefix + strconv.Itoa(os.Getpid()) + "-" + strings.ToLower(t.Name()),
		console: filepath.Join(dir, "console.log"),
	}
	xmlPath := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(xmlPath, []byte(domainXML(d.name, testguest.DomainType(), overlay, seed, d.console)), 0o644); err != nil {
		t.Fatal(err)
	}
	d.started = time.Now()
	if out, err := virsh(ctx, "create", xmlPath); err != nil {
		t.Fatalf("virsh create: %v: %s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := virsh(ctx, "destroy", d.name); err != nil && !strings.Contains(out, "failed to get domain") {
			t.Logf("virsh destroy %s: %v: %s", d.name, err, out)
		}
	})
	return d
}

func (d *domain) waitConsole(t *testing.T, marker string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	line, err := testguest.WaitConsole(ctx, d.console, marker)
	if err != nil {
		t.Fatalf("domain %s (type %s): %v", d.name, testguest.DomainType(), err)
	}
	return line
}

// waitGone waits until libvirt no longer lists the domain: a transient
// domain disappears once it is shut off.
func (d *domain) waitGone(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		names, err := domainNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range names {
			found = found || n == d.name
		}
		if !found {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("domain %s still exists after %v", d.name, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeLeftovers destroys and undefines domains left by earlier runs of
// these tests; domains of this process belong to tests running in parallel.
func removeLeftovers(ctx context.Context, t *testing.T) {
	t.Helper()
	names, err := domainNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own := namePrefix + strconv.Itoa(os.Getpid()) + "-"
	for _, n := range names {
		if !strings.HasPrefix(n, namePrefix) || strings.HasPrefix(n, own) {
			continue
		}
		t.Logf("removing leftover domain %s", n)
		_, _ = virsh(ctx, "destroy", n)
		_, _ = virsh(ctx, "undefine", "--nvram", n)
	}
}

func domainNames(ctx context.Context) ([]string, error) {
	out, err := virsh(ctx, "list", "--all", "--name")
	if err != nil {
		return nil, fmt.Errorf("virsh list: %w: %s", err, out)
	}
	return strings.Fields(out), nil
}

func virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", libvirtURI}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

func domainXML(name, domainType, disk, seed, consoleLog string) string {
	cdrom := ""
	if seed != "" {
		cdrom = fmt.Sprintf(`
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='%s'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>`, esc(seed))
	}
	return fmt.Sprintf(`<domain type='%s'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>%s
    <serial type='pty'>
      <log file='%s' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
`, esc(domainType), esc(name), esc(disk), cdrom, esc(consoleLog))
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
