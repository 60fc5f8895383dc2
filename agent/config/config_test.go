package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := Default()
	if c.StateDir != "/var/lib/cimid" || c.Socket != "/run/cimid/cimid.sock" || c.DrainTimeout != 30*time.Second ||
		c.StatsInterval != 15*time.Second || c.LogFormat != "text" || c.SocketGroup != "cimid" || len(c.Listen) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	if c.CertFile() != "/var/lib/cimid/tls/server.crt" || c.KeyFile() != "/var/lib/cimid/tls/server.key" || c.AuditFile() != "/var/lib/cimid/audit.log" {
		t.Fatalf("derived paths: %s %s %s", c.CertFile(), c.KeyFile(), c.AuditFile())
	}
}

func TestParse(t *testing.T) {
	c := Default()
	err := c.Parse(strings.NewReader(`
# comment
state-dir = /srv/cimid
listen = 127.0.0.1:8443, [::1]:9443
drain-timeout=45s
log-format = json
audit-log = none
socket-group = "kvm users"
`), "test.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/srv/cimid" || !slices.Equal(c.Listen, []string{"127.0.0.1:8443", "[::1]:9443"}) ||
		c.DrainTimeout != 45*time.Second || c.LogFormat != "json" || c.AuditFile() != "" || c.SocketGroup != "kvm users" {
		t.Fatalf("parsed: %+v", c)
	}
	if got, _ := c.Get("listen"); got != "127.0.0.1:8443, [::1]:9443" {
		t.Fatalf("Get(listen) = %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"statedir = /x", `x.conf:1: unknown key "statedir"`},
		{"state-dir = relative", "must be an absolute path"},
		{"drain-timeout = 30", "must be a duration"},
		{"drain-timeout = 10ms", "at least 1s"},
		{"log-format = yaml", "must be one of text, json"},
		{"listen = 8443", "is not host:port"},
		{"listen = example.com:8443", "must be an IP address"},
		{"just words", `expected "key = value"`},
		{"log-level = info\nlog-level = debug", "x.conf:2: log-level is already set on line 1"},
		{"socket = /run/x.sock # trailing", "comment must be on a line of its own"},
		{`socket = "/run/x.sock`, "bad quoted value"},
	} {
		c := Default()
		err := c.Parse(strings.NewReader(tc.text), "x.conf")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want error containing %q", tc.text, err, tc.want)
		}
	}
	c := Default()
	c.TLSCert = "/etc/cimid/cert.pem"
	if err := c.Validate(); err == nil {
		t.Error("tls-cert without tls-key accepted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "absent.conf"), false); err == nil {
		t.Error("missing file given explicitly was accepted")
	}
	if c, err := Load(filepath.Join(dir, "absent.conf"), true); err != nil || c.StateDir != "/var/lib/cimid" {
		t.Errorf("optional missing file: %v %+v", err, c)
	}
	p := filepath.Join(dir, "c.conf")
	os.WriteFile(p, []byte("stats-interval = 2s\n"), 0o644)
	if c, err := Load(p, false); err != nil || c.StatsInterval != 2*time.Second {
		t.Errorf("load: %v %+v", err, c)
	}
}

// TestShippedConfig checks the packaged systemd/cimid.conf: it parses, it
// documents every key with its default, and sets none.
func TestShippedConfig(t *testing.T) {
	b, err := os.ReadFile("../../systemd/cimid.conf")
	if err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.Parse(strings.NewReader(string(b)), "cimid.conf"); err != nil {
		t.Fatalf("shipped config does not parse: %v", err)
	}
	if c.StateDir != Default().StateDir {
		t.Fatal("shipped config changes a default")
	}
	text := string(b)
	for _, k := range Keys() {
		if k.Usage == "" || k.Doc == "" {
			t.Errorf("key %s lacks its --help line or its documentation", k.Name)
		}
		line := strings.TrimSpace("#" + k.Name + " = " + k.Default)
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Errorf("systemd/cimid.conf does not document %s with its default (%q)", k.Name, line)
		}
	}
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("systemd/cimid.conf sets %q: the packaged file only documents defaults", l)
		}
	}
}
