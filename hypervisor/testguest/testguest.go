// Package testguest owns the tiny bootable guest that integration tests run
// under libvirt: build.sh makes it from Debian packages (a cloud kernel, a
// busybox initramfs and two SYSLINUX disks), and the helpers here build it on
// demand, pick the domain type the host can boot it with, give tests
// directories QEMU can read, and watch the guest's serial console.
//
// The guest prints one "TESTGUEST: ..." line per event on ttyS0; build.sh
// documents every line and the kernel command line options it honours. It
// reads a cloud-init NoCloud seed (a volume labelled cidata) as a tiny
// cloud-init would, and runs the shell scripts of its user data with their
// output on the console, so that a test can make a guest act.
package testguest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Console markers printed by the guest.
const (
	MarkerBooted       = "TESTGUEST: BOOTED"
	MarkerReady        = "TESTGUEST: READY"
	MarkerACPIPoweroff = "TESTGUEST: ACPI-POWEROFF"
	MarkerSelfPoweroff = "TESTGUEST: SELF-POWEROFF"

	// MarkerSeed is followed by the files of the seed volume, or "none".
	MarkerSeed = "TESTGUEST: SEED"
	// MarkerUserData is followed by what the seed's user-data holds:
	// "mime" and the content type of each part of a MIME document, or the
	// one content type of the whole.
	MarkerUserData = "TESTGUEST: USER-DATA"
	// MarkerSSHKeys is followed by the number of ssh_authorized_keys
	// entries in the user data's cloud-config.
	MarkerSSHKeys = "TESTGUEST: SSH-KEYS"
	// MarkerScriptStart is followed by the number of the user data's part
	// whose script starts (1 for user data that is a script).
	MarkerScriptStart = "TESTGUEST: SCRIPT-START"
	// MarkerScriptExit is followed by the part's number and the script's
	// exit status.
	MarkerScriptExit = "TESTGUEST: SCRIPT-EXIT"
)

// DefaultCacheDir keeps the downloaded kernel package and the built guest.
// The environment variable CacheEnv overrides it.
const DefaultCacheDir = "/var/cache/cimid-testguest"

// CacheEnv names the environment variable that overrides DefaultCacheDir.
const CacheEnv = "CIMID_TESTGUEST_CACHE"

// HostEnvFile is written by systemd/host-setup.sh with the host's choice of
// domain type.
const HostEnvFile = "/run/cimid/host.env"

// DomainTypeEnv names the variable that carries the domain type, both in the
// environment and in HostEnvFile.
const DomainTypeEnv = "CIMID_DOMAIN_TYPE"

// buildTimeout bounds one run of build.sh, including a first download.
const buildTimeout = 20 * time.Minute

// Guest holds absolute paths to the built guest files. All of them are
// readable by the QEMU user, and so are the directories above them.
type Guest struct {
	// Disk boots the guest, which then waits for the ACPI power button.
	Disk string
	// PoweroffDisk boots the same guest, which powers itself off 8 s
	// after READY (kernel options tg.after=poweroff tg.delay=8).
	PoweroffDisk string
	// Kernel and Initrd allow a direct kernel boot; the command line must
	// contain console=ttyS0 for the console markers.
	Kernel string
	Initrd string
}

// Build makes sure the test guest is built and returns its files. The build
// runs once per cache directory; later calls, in this process or another,
// only check build.sh's stamp and return in milliseconds. build.sh holds a
// file lock in the cache directory, so test binaries of different packages
// that call Build at the same time do not race. A failed build fails tb with
// the script's output.
func Build(tb testing.TB) Guest {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), buildTimeout)
	defer cancel()
	g, err := build(ctx, cacheDir())
	if err != nil {
		tb.Fatalf("testguest: %v", err)
	}
	return g
}

func cacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

func build(ctx context.Context, cache string) (Guest, error) {
	script, err := buildScript()
	if err != nil {
		return Guest{}, err
	}
	cache, err = filepath.Abs(cache)
	if err != nil {
		return Guest{}, fmt.Errorf("cache directory %s: %w", cache, err)
	}
	out := filepath.Join(cache, "guest")
	cmd := exec.CommandContext(ctx, "bash", script, out)
	cmd.Env = append(os.Environ(), CacheEnv+"="+cache)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return Guest{}, fmt.Errorf("%s %s: %w\n%s", script, out, err, output.Bytes())
	}
	g := Guest{
		Disk:         filepath.Join(out, "disk.qcow2"),
		PoweroffDisk: filepath.Join(out, "disk-poweroff.qcow2"),
		Kernel:       filepath.Join(out, "vmlinuz"),
		Initrd:       filepath.Join(out, "initrd.img"),
	}
	for _, f := range []string{g.Disk, g.PoweroffDisk, g.Kernel, g.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return Guest{}, fmt.Errorf("after %s: %w\n%s", script, err, output.Bytes())
		}
	}
	return g, nil
}

// buildScript finds build.sh next to this source file, or else below the
// module root that contains the working directory.
func buildScript() (string, error) {
	var tried []string
	if _, src, _, ok := runtime.Caller(0); ok && filepath.IsAbs(src) {
		p := filepath.Join(filepath.Dir(src), "build.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating build.sh: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "hypervisor", "testguest", "build.sh")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			tried = append(tried, p)
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("build.sh not found (tried %s)", strings.Join(tried, ", "))
}

// TempDir returns a new directory, removed when the test ends, that the QEMU
// user can enter: the directories made by tb.TempDir are private to root,
// and QEMU fails to open disk images below them. It fails the test when a
// directory above the system temporary directory is not traversable.
func TempDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := makeTraversable(dir, os.TempDir()); err != nil {
		tb.Fatalf("testguest: %v", err)
	}
	return dir
}

// makeTraversable gives others search permission on dir and on every
// directory between dir and base, and checks that the directories from base
// up to the root already allow it.
func makeTraversable(dir, base string) error {
	base = filepath.Clean(base)
	inside := true
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if d == base {
			inside = false
		}
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("making %s reachable for QEMU: %w", dir, err)
		}
		if perm := fi.Mode().Perm(); perm&0o001 == 0 {
			if !inside {
				return fmt.Errorf("QEMU cannot reach %s: %s has mode %v", dir, d, perm)
			}
			if err := os.Chmod(d, perm|0o755); err != nil {
				return fmt.Errorf("making %s reachable for QEMU: %w", dir, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// Overlay creates a qcow2 image in dir backed by base, so that a test can
// boot and write to its own copy of a guest disk. Several domains may boot
// overlays of the same base at once; they cannot share the base itself,
// which QEMU locks for writing.
func Overlay(ctx context.Context, dir, base string) (string, error) {
	name := strings.TrimSuffix(filepath.Base(base), filepath.Ext(base))
	f, err := os.CreateTemp(dir, name+"-*.qcow2")
	if err != nil {
		return "", fmt.Errorf("creating overlay of %s: %w", base, err)
	}
	path := f.Name()
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("creating overlay of %s: %w", base, err)
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2",
		"-F", "qcow2", "-b", base, path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("qemu-img create overlay of %s: %w: %s", base, err, bytes.TrimSpace(out))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		return "", fmt.Errorf("overlay %s: %w", path, err)
	}
	return path, nil
}

// consolePoll is how often WaitConsole looks at the console log.
const consolePoll = 50 * time.Millisecond

// WaitConsole polls the console log file at path until a line containing
// marker appears and returns that line (without the line end). The file may
// not exist yet. It fails when ctx ends, with the end of the log in the error.
func WaitConsole(ctx context.Context, path, marker string) (string, error) {
	var (
		offset  int64
		partial []byte
		tail    []string
	)
	ticker := time.NewTicker(consolePoll)
	defer ticker.Stop()
	for {
		lines, next, err := readLines(path, offset, partial)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("reading console log: %w", err)
		}
		offset, partial = next, partial[:0]
		for _, l := range lines {
			if l.complete {
				if strings.Contains(l.text, marker) {
					return l.text, nil
				}
				tail = append(tail, l.text)
				if len(tail) > 20 {
					tail = tail[1:]
				}
			} else {
				partial = append(partial, l.text...)
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no %q in %s: %w; last console lines:\n%s",
				marker, path, ctx.Err(), strings.Join(tail, "\n"))
		case <-ticker.C:
		}
	}
}

type consoleLine struct {
	text     string
	complete bool
}

// readLines reads path from offset on. partial is an unfinished line left
// from the previous read; it is prepended to the first line. The last line
// is returned incomplete when it lacks a line end, and the returned offset
// points after everything read.
func readLines(path string, offset int64, partial []byte) ([]consoleLine, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return partialOnly(partial), offset, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < offset {
		offset = 0 // the file was truncated or replaced
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return partialOnly(partial), offset, fmt.Errorf("seek %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return partialOnly(partial), offset, fmt.Errorf("read %s: %w", path, err)
	}
	offset += int64(len(data))
	data = append(append([]byte(nil), partial...), data...)
	var lines []consoleLine
	r := bufio.NewReader(bytes.NewReader(data))
	for {
		s, err := r.ReadString('\n')
		if err != nil {
			if s != "" {
				lines = append(lines, consoleLine{text: s})
			}
			return lines, offset, nil
		}
		lines = append(lines, consoleLine{text: strings.TrimRight(s, "\r\n"), complete: true})
	}
}

func partialOnly(partial []byte) []consoleLine {
	if len(partial) == 0 {
		return nil
	}
	return []consoleLine{{text: string(partial)}}
}

// DomainType returns the libvirt domain type ("kvm" or "qemu") that boots the
// test guest on this host: CIMID_DOMAIN_TYPE from the environment, else from
// /run/cimid/host.env, else "kvm" only when /dev/kvm exists and the CPU has
// hardware virtualization (vmx or svm), "qemu" (TCG emulation) otherwise.
func DomainType() string {
	if t := validDomainType(os.Getenv(DomainTypeEnv)); t != "" {
		return t
	}
	if t := validDomainType(readEnvFile(HostEnvFile, DomainTypeEnv)); t != "" {
		return t
	}
	if hasHardwareKVM() {
		return "kvm"
	}
	return "qemu"
}

func validDomainType(s string) string {
	switch s = strings.TrimSpace(s); s {
	case "kvm", "qemu":
		return s
	}
	return ""
}

// readEnvFile returns the value of key in a shell-style KEY=VALUE file, or ""
// when the file or the key is missing.
func readEnvFile(path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	value := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") || strings.TrimPrefix(k, "export ") != key {
			continue
		}
		value = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return value
}

func hasHardwareKVM() bool {
	if fi, err := os.Stat("/dev/kvm"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, flags, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
