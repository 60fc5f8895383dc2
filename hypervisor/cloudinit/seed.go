// Package cloudinit builds cloud-init NoCloud seeds: the meta-data,
// user-data and network-config files a guest reads on first boot, written
// as an ISO 9660 volume labelled "cidata" that is attached as a CD-ROM.
// It knows nothing of CIMI or of the agent's store: callers hand it the
// instance's identity, keys, user data and NICs.
package cloudinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Label is the volume label cloud-init's NoCloud data source looks for.
const Label = "cidata"

// Seed is what a guest is told on first boot.
type Seed struct {
	// InstanceID identifies this instance; cloud-init runs its per-instance
	// modules again when it changes.
	InstanceID string
	// Hostname is the guest's local host name (an RFC 1123 label).
	Hostname string
	// UserData is the user's own user data. Without a credential
	// (UserName or SSHKeys) it is the user-data file as is; with one, the
	// user-data file is a MIME multipart document of UserData's parts
	// followed by the credential's #cloud-config, which cloud-init merges
	// into UserData's own cloud-config (see MergeType); the image's default
	// user is kept unless that cloud-config lists users of its own. When
	// UserData is empty, the user-data file is the credential's
	// #cloud-config alone.
	UserData []byte
	// UserName, when set, is a user created with SSHKeys (and PasswordHash);
	// otherwise SSHKeys go to the image's default user.
	UserName string
	// SSHKeys are OpenSSH public key lines.
	SSHKeys []string
	// PasswordHash is a crypt(3) hash ("$6$...") set as UserName's password.
	PasswordHash string
	// NICs are configured by DHCP, matched by MAC address.
	NICs []NIC
}

// NIC is one network interface of the guest.
type NIC struct {
	MAC string
}

// Files renders the seed's three files.
func (s Seed) Files() ([]File, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	user, err := s.userData()
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: "meta-data", Data: s.metaData()},
		{Name: "user-data", Data: user},
		{Name: "network-config", Data: s.networkConfig()},
	}, nil
}

func (s Seed) validate() error {
	if strings.TrimSpace(s.InstanceID) == "" {
		return errors.New("cloud-init seed: instance id is empty")
	}
	if s.PasswordHash != "" && s.UserName == "" {
		return errors.New("cloud-init seed: a password needs a user name")
	}
	for _, k := range s.SSHKeys {
		if strings.ContainsAny(k, "\r\n") {
			return errors.New("cloud-init seed: an SSH key spans several lines")
		}
	}
	for _, n := range s.NICs {
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return fmt.Errorf("cloud-init seed: NIC MAC %q: %w", n.MAC, err)
		}
	}
	return nil
}

// quote renders s as a YAML double-quoted scalar: JSON string syntax is a
// subset of it.
func quote(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

func (s Seed) metaData() []byte {
	var b strings.Builder
	b.WriteString("instance-id: " + quote(s.InstanceID) + "\n")
	if s.Hostname != "" {
		b.WriteString("local-hostname: " + quote(s.Hostname) + "\n")
	}
	if len(s.SSHKeys) > 0 {
		b.WriteString("public-keys:\n")
		for _, k := range s.SSHKeys {
			b.WriteString("  - " + quote(k) + "\n")
		}
	}
	return []byte(b.String())
}

// hasUser tells whether the seed has a credential: a user to create or
// keys to install.
func (s Seed) hasUser() bool { return s.UserName != "" || len(s.SSHKeys) > 0 }

// userData renders the user-data file.
func (s Seed) userData() ([]byte, error) {
	switch {
	case len(s.UserData) == 0:
		return s.cloudConfig(true), nil
	case !s.hasUser():
		return s.UserData, nil
	}
	parts, err := userParts(s.UserData)
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed: user data %w", err)
	}
	// A user's cloud-config that lists users chose them: the credential's
	// user joins them, and the image's default user comes back only if
	// they list it.
	listed := false
	for _, p := range parts {
		listed = listed || p.listsUsers()
	}
	cred := newPart("text/cloud-config", credentialFile, s.cloudConfig(!listed), [][2]string{{"Merge-Type", MergeType}})
	return multipartDocument(append(parts, cred)), nil
}

// cloudConfig is the cloud-config of the credential: its keys (and
// password) for the named user or the default one. A named user comes
// with the image's default user when withDefault is set, as cloud-init
// creates it when no users are listed.
func (s Seed) cloudConfig(withDefault bool) []byte {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	if s.Hostname != "" {
		b.WriteString("hostname: " + quote(s.Hostname) + "\n")
	}
	keys := func(indent string) {
		b.WriteString(indent + "ssh_authorized_keys:\n")
		for _, k := range s.SSHKeys {
			b.WriteString(indent + "  - " + quote(k) + "\n")
		}
	}
	if s.UserName == "" {
		if len(s.SSHKeys) > 0 {
			keys("")
		}
		return []byte(b.String())
	}
	b.WriteString("users:\n")
	if withDefault {
		b.WriteString("  - default\n")
	}
	b.WriteString("  - name: " + quote(s.UserName) + "\n")
	b.WriteString("    sudo: " + quote("ALL=(ALL) NOPASSWD:ALL") + "\n")
	b.WriteString("    shell: /bin/bash\n")
	if s.PasswordHash != "" {
		b.WriteString("    lock_passwd: false\n")
		b.WriteString("    passwd: " + quote(s.PasswordHash) + "\n")
	} else {
		b.WriteString("    lock_passwd: true\n")
	}
	if len(s.SSHKeys) > 0 {
		keys("    ")
	}
	if s.PasswordHash != "" {
		b.WriteString("ssh_pwauth: true\n")
	}
	return []byte(b.String())
}

// networkConfig is version 2 network configuration: DHCP on every NIC,
// each matched by its MAC address.
func (s Seed) networkConfig() []byte {
	var b strings.Builder
	b.WriteString("version: 2\n")
	if len(s.NICs) == 0 {
		b.WriteString("ethernets: {}\n")
		return []byte(b.String())
	}
	b.WriteString("ethernets:\n")
	for i, n := range s.NICs {
		mac, _ := net.ParseMAC(n.MAC)
		fmt.Fprintf(&b, "  nic%d:\n", i)
		b.WriteString("    match:\n")
		b.WriteString("      macaddress: " + quote(mac.String()) + "\n")
		b.WriteString("    dhcp4: true\n")
	}
	return []byte(b.String())
}

// ISO renders the seed as an ISO 9660 volume labelled "cidata".
func (s Seed) ISO(modified time.Time) ([]byte, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := WriteISO(&buf, Label, files, modified); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes the seed ISO to path, replacing what is there, through
// a temporary file renamed into place: a reader sees the old or the new
// volume, never a part. The file is readable by QEMU's user (0644).
func (s Seed) WriteFile(path string, modified time.Time) error {
	img, err := s.ISO(modified)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(img); err != nil {
		tmp.Close()
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	return nil
}

// Hostname turns a display name into an RFC 1123 host name label: lower
// case letters, digits and inner hyphens, at most 63 characters. It
// returns fallback when nothing usable remains.
func Hostname(name, fallback string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= 63 {
			break
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	if h == "" {
		return fallback
	}
	return h
}
