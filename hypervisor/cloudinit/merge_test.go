package cloudinit

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// cloudInitCacheEnv names the variable that overrides where the cloud-init
// package is kept for TestCloudInitMergesCredential.
const cloudInitCacheEnv = "CIMID_CLOUDINIT_CACHE"

// cloudInitSource returns a directory holding cloud-init's Python package,
// taken from Debian's cloud-init package (downloaded once with apt-get,
// unpacked, never installed).
func cloudInitSource(t *testing.T) string {
	t.Helper()
	cache := os.Getenv(cloudInitCacheEnv)
	if cache == "" {
		cache = "/var/cache/cimid-cloud-init"
	}
	const pkgDir = "usr/lib/python3/dist-packages"
	find := func() string {
		found, _ := filepath.Glob(filepath.Join(cache, "cloud-init_*", pkgDir, "cloudinit", "mergers", "__init__.py"))
		if len(found) == 0 {
			return ""
		}
		sort.Strings(found)
		return strings.TrimSuffix(found[len(found)-1], "/cloudinit/mergers/__init__.py")
	}
	if dir := find(); dir != "" {
		return dir
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	dl, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dl)
	download := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "cloud-init")
		cmd.Dir = dl
		return cmd.CombinedOutput()
	}
	if out, err := download(); err != nil {
		if up, uerr := exec.Command("apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			t.Fatalf("apt-get download cloud-init: %v: %s\napt-get update: %v: %s", err, out, uerr, up)
		}
		if out, err := download(); err != nil {
			t.Fatalf("apt-get download cloud-init: %v: %s", err, out)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "cloud-init_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download cloud-init left %v", debs)
	}
	unpacked := filepath.Join(dl, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], unpacked).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	final := filepath.Join(cache, strings.TrimSuffix(filepath.Base(debs[0]), ".deb"))
	// Another test process may have kept the same package meanwhile.
	if err := os.Rename(unpacked, final); err != nil && find() == "" {
		t.Fatalf("keep cloud-init: %v", err)
	}
	dir := find()
	if dir == "" {
		t.Fatalf("no cloud-init mergers below %s", final)
	}
	return dir
}

// mergeLikeCloudInit reads a user-data file with Python's email package
// and merges its text/cloud-config parts in order with cloud-init's own
// mergers, choosing each part's mergers as cloud-init's cloud-config
// handler does: merge_how in the part, then its Merge-Type header, else
// cloud-init's default. It returns the merged configuration.
func mergeLikeCloudInit(t *testing.T, source string, doc []byte) map[string]any {
	t.Helper()
	const script = `import sys, json, email, importlib.util, yaml
# importlib.util: cloud-init's importer uses it without importing it
sys.path.insert(0, sys.argv[1])
from cloudinit import mergers
msg = email.message_from_string(sys.stdin.buffer.read().decode("utf-8"))
buf = {}
for part in msg.walk():
    if part.get_content_type() != "text/cloud-config":
        continue
    payload = part.get_payload(decode=True).decode("utf-8")
    cfg = yaml.safe_load(payload) or {}
    header = part.get("Merge-Type", "") or part.get("X-Merge-Type", "")
    chosen = mergers.dict_extract_mergers(cfg) + mergers.string_extract_mergers(header)
    if not chosen:
        chosen = mergers.string_extract_mergers("dict(replace)+list()+str()")
    buf = mergers.construct(chosen).merge(buf, cfg)
json.dump(buf, sys.stdout)
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, source)
	cmd.Stdin = bytes.NewReader(doc)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("merging with cloud-init's mergers: %v: %s", err, out)
	}
	var merged map[string]any
	if err := json.Unmarshal(out, &merged); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return merged
}

// TestCloudInitKeepsDefaultUser merges a credential's named user into a
// cloud-config that lists no users: the image's default user is created
// as well, as without the credential.
func TestCloudInitKeepsDefaultUser(t *testing.T) {
	source := cloudInitSource(t)
	s := testSeed()
	s.UserData = []byte("#cloud-config\nruncmd:\n  - [touch, /run/own]\n")
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	got := mergeLikeCloudInit(t, source, files[1].Data)
	users, _ := got["users"].([]any)
	if len(users) != 2 || users[0] != "default" || users[1].(map[string]any)["name"] != "alice" {
		t.Fatalf("users %v: want the default user and alice", users)
	}
}

// TestCloudInitMergesCredential merges the cloud-config parts of combined
// user data with cloud-init's own merging code: the user's users, keys
// and commands stay, the credential's user and key are appended, and the
// user's host name wins over the credential's.
func TestCloudInitMergesCredential(t *testing.T) {
	source := cloudInitSource(t)
	const userKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBobBobBobBobBobBobBobBobBobBobBobBobBobBob bob@example"
	own := "#cloud-config\nhostname: mine\nusers:\n  - name: bob\nssh_authorized_keys:\n  - " + userKey + "\nruncmd:\n  - [touch, /run/own]\n"
	for name, s := range map[string]Seed{
		"named user": func() Seed { s := testSeed(); s.UserData = []byte(own); return s }(),
		"default user": {InstanceID: "i", Hostname: "web-1", SSHKeys: []string{testKey},
			UserData: []byte("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--b\nContent-Type: text/cloud-config\n\n" + own + "--b--\n")},
	} {
		t.Run(name, func(t *testing.T) {
			files, err := s.Files()
			if err != nil {
				t.Fatal(err)
			}
			got := mergeLikeCloudInit(t, source, files[1].Data)
			if got["hostname"] != "mine" {
				t.Errorf("hostname %v: the user's should stay", got["hostname"])
			}
			if !reflect.DeepEqual(got["runcmd"], []any{[]any{"touch", "/run/own"}}) {
				t.Errorf("runcmd %v", got["runcmd"])
			}
			users, _ := got["users"].([]any)
			wantKeys := []any{userKey}
			if s.UserName == "" {
				// Keys for the default user are appended to the user's own.
				wantKeys = append(wantKeys, testKey)
				if len(users) != 1 || users[0].(map[string]any)["name"] != "bob" {
					t.Errorf("users %v: want bob alone", users)
				}
			} else {
				// The user listed bob alone: the default user stays out.
				if len(users) != 2 || users[0].(map[string]any)["name"] != "bob" {
					t.Fatalf("users %v: want bob, then the credential's alice", users)
				}
				alice := users[1].(map[string]any)
				if alice["name"] != "alice" || !reflect.DeepEqual(alice["ssh_authorized_keys"], []any{testKey}) || alice["passwd"] != s.PasswordHash {
					t.Errorf("the credential's user after the merge: %v", alice)
				}
			}
			if !reflect.DeepEqual(got["ssh_authorized_keys"], wantKeys) {
				t.Errorf("ssh_authorized_keys %v, want %v", got["ssh_authorized_keys"], wantKeys)
			}
		})
	}
}
