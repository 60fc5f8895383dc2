package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cimid/agent/config"
)

// unitFile is a systemd unit as key → values per section (a key may
// repeat).
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: unparsable line %q", path, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one returns the single value of a key.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s: want exactly one value, have %q", section, key, vs)
		return ""
	}
	return vs[0]
}

// words returns every space-separated word of every value of a key.
func (u unitFile) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// TestUnitDirectives checks the unit file against what the agent needs to
// be operated safely: readiness after reconciliation, guests untouched by
// a stop, enough time to drain, and hardening that leaves libvirt, the
// state directory and /dev/kvm reachable.
func TestUnitDirectives(t *testing.T) {
	u := readUnit(t, "../../systemd/cimid.service")
	want := map[string]map[string]string{
		"Service": {
			"Type": "notify", "NotifyAccess": "main", "KillMode": "process", "Restart": "on-failure",
			"StateDirectory": "cimid", "RuntimeDirectory": "cimid", "RuntimeDirectoryPreserve": "yes",
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
		},
	}
	for section, keys := range want {
		for k, v := range keys {
			if got := u.one(t, section, k); got != v {
				t.Errorf("[%s] %s = %q, want %q", section, k, got, v)
			}
		}
	}
	if _, ok := u["Service"]["ExecStop"]; ok {
		t.Error("ExecStop is set: stopping the agent must never touch guests")
	}
	for _, key := range []string{"After", "Wants"} {
		if !slices.Contains(u.words("Unit", key), "libvirtd.service") {
			t.Errorf("[Unit] %s lacks libvirtd.service", key)
		}
	}
	exec := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(exec) < 3 || exec[0] != "/usr/local/bin/cimid" || exec[1] != "--config" || exec[2] != config.DefaultPath {
		t.Errorf("ExecStart = %q, want /usr/local/bin/cimid --config %s", exec, config.DefaultPath)
	}
	stop, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := config.Default().DrainTimeout; stop <= drain+10*time.Second {
		t.Errorf("TimeoutStopSec %v leaves no margin over the drain deadline %v", stop, drain)
	}
	rw := u.words("Service", "ReadWritePaths")
	for _, p := range []string{config.Default().StateDir, filepath.Dir(config.Default().Socket)} {
		if !slices.Contains(rw, p) {
			t.Errorf("ReadWritePaths lacks %s", p)
		}
	}
	families := u.words("Service", "RestrictAddressFamilies")
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6"} {
		if !slices.Contains(families, f) {
			t.Errorf("RestrictAddressFamilies lacks %s (libvirt's socket and the HTTPS listeners)", f)
		}
	}
	// libvirt is reached through /run/libvirt/libvirt-sock and /dev/kvm
	// decides the domain type: neither may be hidden.
	for _, key := range []string{"InaccessiblePaths", "TemporaryFileSystem"} {
		for _, p := range u.words("Service", key) {
			p = strings.TrimRight(strings.TrimLeft(p, "-+"), "/")
			if p == "" || strings.HasPrefix("/run/libvirt/libvirt-sock", p+"/") || strings.HasPrefix("/dev/kvm", p+"/") {
				t.Errorf("%s hides %s, needed to reach libvirt or /dev/kvm", key, p)
			}
		}
	}
	if v := u["Service"]["PrivateDevices"]; len(v) > 0 && v[0] == "yes" {
		t.Error("PrivateDevices=yes hides /dev/kvm, which chooses between KVM and emulation")
	}
	if v := u["Service"]["PrivateNetwork"]; len(v) > 0 && v[0] == "yes" {
		t.Error("PrivateNetwork=yes cuts the HTTPS listeners off")
	}
	caps := u.words("Service", "CapabilityBoundingSet")
	for _, c := range []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"} {
		if len(caps) > 0 && !slices.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet lacks %s (socket group, images owned by the QEMU user)", c)
		}
	}
	if !slices.Contains(u.words("Install", "WantedBy"), "multi-user.target") {
		t.Error("[Install] WantedBy lacks multi-user.target")
	}
}

// TestUnitVerify runs systemd-analyze verify on the unit (make test
// installs the systemd package for it). Where systemd-analyze cannot be
// installed the directives test above still checks the file.
func TestUnitVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed (package systemd): only the directives are checked")
		return
	}
	// verify checks that ExecStart exists: point it at a real build.
	unit, err := os.ReadFile("../../systemd/cimid.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cimid.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/cimid", cimidBinary(t))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", path).CombinedOutput()
	// verify exits 0 on unknown keys and bad values and only warns: any
	// line about the unit file is a failure.
	if err != nil || strings.Contains(string(out), "cimid.service") {
		t.Fatalf("systemd-analyze verify rejects systemd/cimid.service (%v):\n%s", err, out)
	}
	t.Logf("systemd-analyze verify accepts the unit%s", strings.TrimSpace("\n"+string(out)))
}
