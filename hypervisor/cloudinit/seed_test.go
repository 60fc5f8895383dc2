package cloudinit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example"

func testSeed() Seed {
	return Seed{
		InstanceID:   "4f1c-machine",
		Hostname:     "web-1",
		UserName:     "alice",
		SSHKeys:      []string{testKey},
		PasswordHash: "$6$saltsalt$abc",
		NICs:         []NIC{{MAC: "52:54:00:AA:bb:01"}, {MAC: "52:54:00:aa:bb:02"}},
	}
}

func TestSeedFiles(t *testing.T) {
	files, err := testSeed().Files()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"meta-data": `instance-id: "4f1c-machine"
local-hostname: "web-1"
public-keys:
  - "` + testKey + `"
`,
		"user-data": `#cloud-config
hostname: "web-1"
users:
  - default
  - name: "alice"
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    lock_passwd: false
    passwd: "$6$saltsalt$abc"
    ssh_authorized_keys:
      - "` + testKey + `"
ssh_pwauth: true
`,
		"network-config": `version: 2
ethernets:
  nic0:
    match:
      macaddress: "52:54:00:aa:bb:01"
    dhcp4: true
  nic1:
    match:
      macaddress: "52:54:00:aa:bb:02"
    dhcp4: true
`,
	}
	if len(files) != 3 {
		t.Fatalf("%d files", len(files))
	}
	for _, f := range files {
		if string(f.Data) != want[f.Name] {
			t.Errorf("%s:\n%s\nwant:\n%s", f.Name, f.Data, want[f.Name])
		}
	}
}

func TestSeedDefaultUserAndOwnUserData(t *testing.T) {
	s := Seed{InstanceID: "i", SSHKeys: []string{testKey}}
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(files[1].Data), "#cloud-config\nssh_authorized_keys:\n  - \""+testKey+"\"\n"; got != want {
		t.Errorf("user-data:\n%s\nwant:\n%s", got, want)
	}
	if got := string(files[2].Data); got != "version: 2\nethernets: {}\n" {
		t.Errorf("network-config without NICs:\n%s", got)
	}
	own := []byte("#!/bin/sh\necho hello\n")
	s.UserData = own
	files, err = s.Files()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(files[1].Data, []byte("Content-Type: multipart/mixed;")) {
		t.Errorf("user-data of keys and user data is not a multipart document:\n%s", files[1].Data)
	}
	if !strings.Contains(string(files[0].Data), "public-keys:") {
		t.Errorf("meta-data lost the key when user data is given:\n%s", files[0].Data)
	}

	// Without a user or keys, the user data is the user-data file as is.
	s = Seed{InstanceID: "i", Hostname: "h", UserData: own}
	if files, err = s.Files(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files[1].Data, own) {
		t.Errorf("user-data is not the given user data: %q", files[1].Data)
	}
}

func TestSeedRefusesBadInput(t *testing.T) {
	for name, s := range map[string]Seed{
		"no instance":        {},
		"password, no user":  {InstanceID: "i", PasswordHash: "$6$x$y"},
		"multi-line key":     {InstanceID: "i", SSHKeys: []string{"ssh-ed25519 AAAA\nssh-rsa AAAA"}},
		"bad MAC":            {InstanceID: "i", NICs: []NIC{{MAC: "52:54:00"}}},
		"MAC with garbage":   {InstanceID: "i", NICs: []NIC{{MAC: "zz:54:00:00:00:01"}}},
		"instance id spaces": {InstanceID: "  "},
	} {
		if _, err := s.Files(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{
		"Web 1":                  "web-1",
		"--a__b--":               "a-b",
		"":                       "fallback",
		"ÄÖÜ":                    "fallback",
		strings.Repeat("x", 100): strings.Repeat("x", 63),
		"db.example.org":         "db-example-org",
	} {
		if got := Hostname(in, "fallback"); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSeedParsesAsCloudInitDoes reads every file of a written seed back
// from the ISO and loads it with PyYAML, the parser cloud-init uses.
func TestSeedParsesAsCloudInitDoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := testSeed().WriteFile(path, time.Now()); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := readISO(t, img)
	if v.label != Label {
		t.Fatalf("label %q", v.label)
	}
	docs := map[string]any{}
	for _, name := range []string{"meta-data", "user-data", "network-config"} {
		data, ok := v.joliet[name]
		if !ok {
			t.Fatalf("no %s on the volume: %v", name, keys(v.joliet))
		}
		docs[name] = loadYAML(t, data)
	}
	user := docs["user-data"].(map[string]any)
	users := user["users"].([]any)
	if users[0] != "default" {
		t.Errorf("users[0] = %v", users[0])
	}
	alice := users[1].(map[string]any)
	if alice["name"] != "alice" || !reflect.DeepEqual(alice["ssh_authorized_keys"], []any{testKey}) || alice["lock_passwd"] != false {
		t.Errorf("user entry: %v", alice)
	}
	meta := docs["meta-data"].(map[string]any)
	if meta["instance-id"] != "4f1c-machine" || meta["local-hostname"] != "web-1" {
		t.Errorf("meta-data: %v", meta)
	}
	nc := docs["network-config"].(map[string]any)
	eth := nc["ethernets"].(map[string]any)["nic1"].(map[string]any)
	if nc["version"] != float64(2) || eth["dhcp4"] != true || eth["match"].(map[string]any)["macaddress"] != "52:54:00:aa:bb:02" {
		t.Errorf("network-config: %v", nc)
	}
	if !bytes.HasPrefix(v.joliet["user-data"], []byte("#cloud-config\n")) {
		t.Error("user-data does not start with #cloud-config")
	}
}

// loadYAML parses data with Debian's python3-yaml (installed by
// systemd/host-setup.sh) and returns it as decoded JSON.
func loadYAML(t *testing.T, data []byte) any {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("PyYAML cannot load\n%s\n%v: %s", data, err, stderr)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSeedReadsWithIsoinfo reads a seed with isoinfo (genisoimage,
// installed by systemd/host-setup.sh), a reader independent of this
// package, through its Joliet names as a guest kernel does.
func TestSeedReadsWithIsoinfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.iso")
	s := testSeed()
	if err := s.WriteFile(path, time.Now()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("blkid", "-p", "-o", "export", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "TYPE=iso9660") || !strings.Contains(string(out), "LABEL=cidata") {
		t.Errorf("blkid does not see an iso9660 volume labelled cidata:\n%s", out)
	}
	out, err = exec.Command("isoinfo", "-J", "-f", "-i", path).CombinedOutput()
	if err != nil {
		t.Fatalf("isoinfo -f: %v: %s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, ",") != "/meta-data,/network-config,/user-data" {
		t.Errorf("isoinfo lists %v", got)
	}
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := exec.Command("isoinfo", "-J", "-i", path, "-x", "/"+f.Name).Output()
		if err != nil {
			t.Errorf("isoinfo -x /%s: %v", f.Name, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s read by isoinfo differs:\n%s", f.Name, got)
		}
	}
	out, err = exec.Command("isoinfo", "-d", "-i", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Volume id: cidata") || !strings.Contains(string(out), "Joliet with UCS level 3") {
		t.Errorf("isoinfo -d: %v\n%s", err, out)
	}
}

// The credential's user comes with the image's default user, unless the
// user's own cloud-config lists users: then they chose, and the default
// user comes back only if they list it.
func TestCredentialKeepsTheUsersChoice(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("#cloud-config\nusers:\n  - name: bob\n"))
	mimeDoc := func(encoding, body string) string {
		return "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n" +
			"--b\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: " + encoding + "\n\n" + body + "\n--b--\n"
	}
	for _, c := range []struct {
		name, userData string
		withDefault    bool
	}{
		{"no user data", "", true},
		{"a script", "#!/bin/sh\necho hi\n", true},
		{"cloud-config without users", "#cloud-config\nruncmd:\n  - [touch, /run/x]\n", true},
		{"cloud-config whose users are nested or another key", "#cloud-config\nusers_extra: 1\nwrite_files:\n  - path: /etc/x\n    content: |\n      users: none\n", true},
		{"cloud-config listing users", "#cloud-config\nusers:\n  - name: bob\n", false},
		{"cloud-config listing no users at all", "#cloud-config\nusers : []\n", false},
		{"cloud-config listing the default user", "#cloud-config\nusers:\n  - default\n  - name: bob\n", false},
		{"cloud-config with the key quoted", "#cloud-config\n\"users\": [{name: bob}]\n", false},
		{"cloud-config written as JSON", "#cloud-config\n{\"runcmd\": [\"true\"], \"users\": [{\"name\": \"bob\"}]}\n", false},
		{"cloud-config written as JSON without users", "#cloud-config\n{\"write_files\": [{\"path\": \"/x\", \"users\": 1}]}\n", true},
		{"a MIME part in base64 listing users", mimeDoc("base64", b64), false},
		{"a MIME part in quoted-printable listing users", mimeDoc("quoted-printable", "#cloud-config\nusers=3A\n  - name: bob"), false},
	} {
		s := testSeed()
		s.UserData = []byte(c.userData)
		files, err := s.Files()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		doc := string(files[1].Data)
		credential := doc[strings.Index(doc, "#cloud-config\nhostname: \"web-1\""):]
		if got := strings.Contains(credential, "users:\n  - default\n  - name: \"alice\""); got != c.withDefault {
			t.Errorf("%s: the credential brings the default user: %v, want %v\n%s", c.name, got, c.withDefault, credential)
		}
		if !strings.Contains(credential, "  - name: \"alice\"") {
			t.Errorf("%s: the credential's user is missing:\n%s", c.name, credential)
		}
	}
}
