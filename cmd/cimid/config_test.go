package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestCheckConfig validates configurations without starting: the file is
// read, flags override it, and mistakes are reported with their line.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "cimid.conf")
	os.WriteFile(conf, []byte("# test\nstate-dir = "+dir+"/state\nlisten = 127.0.0.1:8443\ndrain-timeout = 45s\n"), 0o644)

	code, out, errOut := runMain(t, "--config", conf, "--check-config")
	if code != exitOK || !strings.Contains(out, "configuration OK") || !strings.Contains(out, "drain-timeout = 45s\n") ||
		!strings.Contains(out, "listen = 127.0.0.1:8443\n") || !strings.Contains(out, "log-format = text\n") {
		t.Fatalf("--check-config: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runMain(t, "--config", conf, "--drain-timeout", "50s", "--log-format=json", "--check-config")
	if code != exitOK || !strings.Contains(out, "drain-timeout = 50s\n") || !strings.Contains(out, "log-format = json\n") {
		t.Fatalf("flags do not override the file: %d\n%s", code, out)
	}

	os.WriteFile(conf, []byte("state-dir = /srv\ndrian-timeout = 1m\n"), 0o644)
	code, _, errOut = runMain(t, "--config", conf, "--check-config")
	if code != exitUsage || !strings.Contains(errOut, "cimid.conf:2: unknown key \"drian-timeout\"") {
		t.Fatalf("unknown key: %d %s", code, errOut)
	}
	if code, _, errOut = runMain(t, "--config", filepath.Join(dir, "absent.conf"), "--check-config"); code != exitUsage || !strings.Contains(errOut, "absent.conf") {
		t.Fatalf("an explicit missing file: %d %s", code, errOut)
	}
	if code, _, errOut = runMain(t, "--config", filepath.Join(dir, "absent.conf"), "--log-level", "loud"); code != exitUsage || !strings.Contains(errOut, "must be one of") {
		t.Fatalf("a bad flag value: %d %s", code, errOut)
	}
	if code, _, _ = runMain(t, "--config", "/dev/null", "frobnicate"); code != exitUsage {
		t.Fatalf("unknown subcommand: %d", code)
	}
}

// TestTokenAndTrustCommands drives the administrative subcommands on a
// state directory.
func TestTokenAndTrustCommands(t *testing.T) {
	state := t.TempDir()
	base := []string{"--config", "/dev/null", "--state-dir", state}
	code, secret, errOut := runMain(t, append(base, "token", "create", "ci", "--expires", "24h")...)
	if code != exitOK || !strings.HasPrefix(secret, "cimid_") || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("token create: %d %q %s", code, secret, errOut)
	}
	code, out, _ := runMain(t, append(base, "token", "list")...)
	if code != exitOK || !strings.Contains(out, "ci") || strings.Contains(out, strings.TrimSpace(secret)) {
		t.Fatalf("token list: %d\n%s", code, out)
	}
	if code, _, _ = runMain(t, append(base, "token", "revoke", "ci")...); code != exitOK {
		t.Fatalf("token revoke: %d", code)
	}
	if code, _, _ = runMain(t, append(base, "token", "revoke", "ci")...); code != exitFailure {
		t.Fatalf("revoking twice: %d", code)
	}
	if code, _, _ = runMain(t, append(base, "token", "create")...); code != exitUsage {
		t.Fatalf("token create without a name: %d", code)
	}

	_, pemFile := testCert(t, t.TempDir(), "laptop")
	if code, out, errOut = runMain(t, append(base, "trust", "add", pemFile, "--name", "my-laptop")...); code != exitOK || !strings.Contains(out, "trusted my-laptop") {
		t.Fatalf("trust add: %d %s %s", code, out, errOut)
	}
	if code, out, _ = runMain(t, append(base, "trust", "list")...); code != exitOK || !strings.Contains(out, "my-laptop") {
		t.Fatalf("trust list: %d\n%s", code, out)
	}
	if code, _, _ = runMain(t, append(base, "trust", "add", pemFile)...); code != exitFailure {
		t.Fatalf("trusting the same certificate twice: %d", code)
	}
	if code, _, _ = runMain(t, append(base, "trust", "remove", "my-laptop")...); code != exitOK {
		t.Fatalf("trust remove: %d", code)
	}
	code, fp1, _ := runMain(t, append(base, "fingerprint")...)
	_, fp2, _ := runMain(t, append(base, "fingerprint")...)
	if code != exitOK || len(strings.TrimSpace(fp1)) != 64 || fp1 != fp2 {
		t.Fatalf("fingerprint: %d %q %q", code, fp1, fp2)
	}
}
