// Package config reads cimid's configuration: one file of "key = value"
// lines, every key also settable by a command-line flag of the same name.
//
// The format is deliberately small: one setting per line, '#' starts a
// comment line, blank lines are ignored, values may be quoted with double
// quotes (needed only to keep leading or trailing spaces or a '#').
// Unknown keys, repeated keys and malformed values are errors that name the
// file and line, so a typo never silently falls back to a default.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the packaged configuration file lives.
const DefaultPath = "/etc/cimid/cimid.conf"

// Config is every setting of the daemon.
type Config struct {
	StateDir      string
	Socket        string
	SocketGroup   string
	LibvirtURI    string
	Listen        []string
	TLSCert       string
	TLSKey        string
	DomainType    string
	LogLevel      string
	LogFormat     string
	DrainTimeout  time.Duration
	StatsInterval time.Duration
	AuditLog      string
}

// Key describes one setting.
type Key struct {
	Name    string
	Default string // as written in the file
	Doc     string // for the documented file
	Usage   string // one line for --help; a `word` names the value
	set     func(c *Config, v string) error
	get     func(c *Config) string
}

// Keys lists every setting, in the order the documented file uses.
func Keys() []Key { return slices.Clone(keys) }

var keys = []Key{
	{Name: "state-dir", Usage: "state `directory` (state file, pool, console logs, TLS, tokens)", Default: "/var/lib/cimid",
		Doc: "Directory of the state file (cimid.db), the storage pool, console logs, the TLS\ncertificate and the trusted clients and tokens. Created 0711 so QEMU can reach the pool.",
		set: func(c *Config, v string) error { return setPath(&c.StateDir, v) },
		get: func(c *Config) string { return c.StateDir }},
	{Name: "socket", Usage: "unix socket `path` serving the API", Default: "/run/cimid/cimid.sock",
		Doc: "Unix socket serving the API to local users.",
		set: func(c *Config, v string) error { return setPath(&c.Socket, v) },
		get: func(c *Config) string { return c.Socket }},
	{Name: "socket-group", Usage: "`group` allowed on the socket (0660); absent: root only (0600)", Default: "cimid",
		Doc: "Group whose members may use the socket (mode 0660). When the group does not\nexist the socket is root-only (0600) and a warning is logged.",
		set: func(c *Config, v string) error { c.SocketGroup = v; return nil },
		get: func(c *Config) string { return c.SocketGroup }},
	{Name: "libvirt-uri", Usage: "libvirt connection `URI`", Default: "qemu:///system",
		Doc: "libvirt connection URI.",
		set: func(c *Config, v string) error {
			if v == "" {
				return errors.New("must not be empty")
			}
			c.LibvirtURI = v
			return nil
		},
		get: func(c *Config) string { return c.LibvirtURI }},
	{Name: "listen", Usage: "HTTPS `addresses` (host:port, comma-separated); empty: none", Default: "",
		Doc: "TCP addresses (host:port, separated by commas) serving the API over HTTPS only.\nClients authenticate with a trusted certificate or a bearer token. Empty: none.\nExample: listen = [::]:8443 (all addresses, IPv4 and IPv6), or 192.0.2.10:8443",
		set: setListen,
		get: func(c *Config) string { return strings.Join(c.Listen, ", ") }},
	{Name: "tls-cert", Usage: "server certificate `file` (PEM); empty: self-signed in <state-dir>/tls", Default: "",
		Doc: "Server certificate (PEM) for the TCP listeners. Empty: <state-dir>/tls/server.crt,\ncreated self-signed at first start (its fingerprint is logged).",
		set: func(c *Config, v string) error { return setPath(&c.TLSCert, v) },
		get: func(c *Config) string { return c.TLSCert }},
	{Name: "tls-key", Usage: "server key `file` (PEM) of tls-cert", Default: "",
		Doc: "Private key (PEM) of tls-cert. Empty: <state-dir>/tls/server.key.",
		set: func(c *Config, v string) error { return setPath(&c.TLSKey, v) },
		get: func(c *Config) string { return c.TLSKey }},
	{Name: "domain-type", Usage: "how guests run: `kvm|qemu|auto`", Default: "auto",
		Doc: "How guests run: kvm, qemu (software emulation) or auto (kvm when /dev/kvm exists\nand the CPU shows vmx or svm).",
		set: func(c *Config, v string) error { return setEnum(&c.DomainType, v, "kvm", "qemu", "auto") },
		get: func(c *Config) string { return c.DomainType }},
	{Name: "log-level", Usage: "`debug|info|warn|error`", Default: "info",
		Doc: "debug, info, warn or error.",
		set: func(c *Config, v string) error { return setEnum(&c.LogLevel, v, "debug", "info", "warn", "error") },
		get: func(c *Config) string { return c.LogLevel }},
	{Name: "log-format", Usage: "`text|json`", Default: "text",
		Doc: "text (logfmt-style key=value) or json (one object per line).",
		set: func(c *Config, v string) error { return setEnum(&c.LogFormat, v, "text", "json") },
		get: func(c *Config) string { return c.LogFormat }},
	{Name: "drain-timeout", Usage: "how long a stop waits for running Jobs (`duration`)", Default: "30s",
		Doc: "How long a stop (SIGTERM) waits for running Jobs; those still running then are\nresumed or ended by rule at the next start. The unit's TimeoutStopSec must be longer.",
		set: func(c *Config, v string) error { return setDuration(&c.DrainTimeout, v, time.Second) },
		get: func(c *Config) string { return c.DrainTimeout.String() }},
	{Name: "stats-interval", Usage: "period of the libvirt check and per-machine statistics (`duration`)", Default: "15s",
		Doc: "How often libvirt's connection and the per-machine counters (one bulk statistics\ncall) are read for /metrics and /readyz.",
		set: func(c *Config, v string) error { return setDuration(&c.StatsInterval, v, 100*time.Millisecond) },
		get: func(c *Config) string { return c.StatsInterval.String() }},
	{Name: "audit-log", Usage: "audit `file` (JSON lines); empty: <state-dir>/audit.log; none: main log only", Default: "",
		Doc: "File receiving the audit log (JSON lines: who changed what, and the Job). Empty:\n<state-dir>/audit.log; \"none\": audit records go to the main log only (they always do).",
		set: func(c *Config, v string) error {
			if v != "none" {
				return setPath(&c.AuditLog, v)
			}
			c.AuditLog = v
			return nil
		},
		get: func(c *Config) string { return c.AuditLog }},
}

// Default returns the configuration with every key at its default.
func Default() Config {
	var c Config
	for _, k := range keys {
		if err := k.set(&c, k.Default); err != nil {
			panic(fmt.Sprintf("default of %s: %v", k.Name, err))
		}
	}
	return c
}

// Set assigns one key from its textual value.
func (c *Config) Set(key, value string) error {
	k, ok := lookup(key)
	if !ok {
		return fmt.Errorf("unknown key %q", key)
	}
	if err := k.set(c, value); err != nil {
		return fmt.Errorf("%s = %q: %w", key, value, err)
	}
	return nil
}

// Get returns one key's value as it would be written in the file.
func (c *Config) Get(key string) (string, bool) {
	k, ok := lookup(key)
	if !ok {
		return "", false
	}
	return k.get(c), true
}

func lookup(key string) (Key, bool) {
	for _, k := range keys {
		if k.Name == key {
			return k, true
		}
	}
	return Key{}, false
}

// Load reads the file at path over the defaults. A missing file is an
// error unless optional is set, in which case the defaults are returned.
func Load(path string, optional bool) (Config, error) {
	c := Default()
	f, err := os.Open(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	if err := c.Parse(f, path); err != nil {
		return c, err
	}
	return c, nil
}

// Parse applies the settings read from r (named name in errors).
func (c *Config) Parse(r io.Reader, name string) error {
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected \"key = value\", got %q", name, line, text)
		}
		key = strings.TrimSpace(key)
		value, err := unquote(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %w", name, line, key, err)
		}
		if _, ok := lookup(key); !ok {
			return fmt.Errorf("%s:%d: unknown key %q (known: %s)", name, line, key, strings.Join(names(), ", "))
		}
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: %s is already set on line %d", name, line, key, prev)
		}
		seen[key] = line
		if err := c.Set(key, value); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

func names() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Name
	}
	return out
}

func unquote(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		if i := strings.Index(v, " #"); i >= 0 {
			return "", errors.New("a comment must be on a line of its own (or quote the value)")
		}
		return v, nil
	}
	s, err := strconv.Unquote(v)
	if err != nil {
		return "", fmt.Errorf("bad quoted value %s", v)
	}
	return s, nil
}

// Validate checks what single keys cannot: combinations.
func (c *Config) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key must be set together")
	}
	if c.StateDir == "" {
		return errors.New("state-dir must be set")
	}
	if c.Socket == "" {
		return errors.New("socket must be set")
	}
	return nil
}

// CertFile is the server certificate path, defaults applied.
func (c *Config) CertFile() string {
	if c.TLSCert != "" {
		return c.TLSCert
	}
	return filepath.Join(c.StateDir, "tls", "server.crt")
}

// KeyFile is the server key path, defaults applied.
func (c *Config) KeyFile() string {
	if c.TLSKey != "" {
		return c.TLSKey
	}
	return filepath.Join(c.StateDir, "tls", "server.key")
}

// AuditFile is the audit log path, or "" when only the main log gets it.
func (c *Config) AuditFile() string {
	switch c.AuditLog {
	case "none":
		return ""
	case "":
		return filepath.Join(c.StateDir, "audit.log")
	}
	return c.AuditLog
}

func setPath(dst *string, v string) error {
	if v != "" && !filepath.IsAbs(v) {
		return errors.New("must be an absolute path")
	}
	*dst = v
	return nil
}

func setEnum(dst *string, v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
	*dst = v
	return nil
}

func setDuration(dst *time.Duration, v string, min time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("must be a duration such as 30s or 2m")
	}
	if d < min {
		return fmt.Errorf("must be at least %s", min)
	}
	*dst = d
	return nil
}

func setListen(c *Config, v string) error {
	var out []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("%q is not host:port: %w", a, err)
		}
		if host != "" && host != "localhost" && net.ParseIP(host) == nil {
			return fmt.Errorf("%q: the host must be an IP address, localhost or empty", a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("%q: bad port", a)
		}
		out = append(out, a)
	}
	c.Listen = out
	return nil
}

// Document writes the documented configuration file with every key at its
// default, commented out.
func Document(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# cimid configuration. Every key is shown with its default, commented out.\n")
	b.WriteString("# Format: one \"key = value\" per line; '#' starts a comment line; values may be\n")
	b.WriteString("# double-quoted. Command-line flags of the same name (--key=value) override\n")
	b.WriteString("# this file. Check a change with: cimid --check-config\n")
	for _, k := range keys {
		b.WriteString("\n")
		for _, l := range strings.Split(k.Doc, "\n") {
			b.WriteString("# " + l + "\n")
		}
		fmt.Fprintf(&b, "%s\n", strings.TrimSpace("#"+k.Name+" = "+k.Default))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
