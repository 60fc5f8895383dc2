package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// startTLSFake serves the fake API over HTTPS with a bearer token and
// returns its URL and certificate fingerprint.
func startTLSFake(t *testing.T, token string) (*fakeServer, string, string) {
	t.Helper()
	f := newFakeServer()
	f.token = token
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(srv.Certificate().Raw)
	return f, srv.URL, hex.EncodeToString(sum[:])
}

func TestRemotes(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	_, url, fp := startTLSFake(t, "s3cret")

	// A wrong fingerprint is refused and nothing is stored.
	r := runArgs(t, "remote", "add", "h1", url, "--fingerprint", strings.Repeat("ab", 32), "--token", "s3cret")
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, fp) {
		t.Fatalf("the mismatch does not show the presented fingerprint: %s", r.stderr)
	}
	// Without a fingerprint and without a terminal, cimi says what the host presents.
	r = runArgs(t, "remote", "add", "h1", url, "--token", "s3cret")
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, fp) || !strings.Contains(r.stderr, "cimid fingerprint") {
		t.Fatalf("no guidance without --fingerprint: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(cfgHome, "cimi", "remotes.json")); err == nil {
		t.Fatal("a refused remote was stored")
	}

	wantCode(t, runArgs(t, "remote", "add", "h1", url, "--fingerprint", strings.ToUpper(fp), "--token", "s3cret"), exitOK)
	fi, err := os.Stat(filepath.Join(cfgHome, "cimi", "remotes.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("remotes file: %v %v", err, fi)
	}
	wantCode(t, runArgs(t, "remote", "add", "h1", url, "--accept-fingerprint"), exitFailure)
	wantCode(t, runArgs(t, "remote", "add", "local", url, "--accept-fingerprint"), exitUsage)

	r = runArgs(t, "remote", "list")
	wantCode(t, r, exitOK)
	if !currentIs(r.stdout, "local") || !strings.Contains(r.stdout, "h1") || !strings.Contains(r.stdout, "token") {
		t.Fatalf("remote list:\n%s", r.stdout)
	}

	// One command on the remote, then the remote as the default.
	r = runArgs(t, "--remote", "h1", "list", "machines")
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stdout, "web-1") {
		t.Fatalf("list over the remote:\n%s", r.stdout)
	}
	wantCode(t, runArgs(t, "remote", "switch", "h1"), exitOK)
	r = runArgs(t, "-o", "xml", "get", "machines/m1")
	wantCode(t, r, exitOK)
	if !strings.HasPrefix(r.stdout, "<") || !strings.Contains(r.stdout, "machines/m1") {
		t.Fatalf("-o xml over the current remote:\n%s", r.stdout)
	}
	r = runArgs(t, "remote", "list", "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 || list[1]["current"] != true || list[1]["fingerprint"] != fp {
		t.Fatalf("remote list -o json: %v\n%s", err, r.stdout)
	}
	wantCode(t, runArgs(t, "-o", "yaml", "get"), exitUsage)
	wantCode(t, runArgs(t, "--xml", "-o", "json", "get"), exitUsage)

	// The pin holds: once the host presents another certificate (here: the
	// pin no longer matches), cimi refuses to talk to it.
	path := filepath.Join(cfgHome, "cimi", "remotes.json")
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.ReplaceAll(string(raw), fp, strings.Repeat("0", 64))), 0o600)
	r = runArgs(t, "get")
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, "not the pinned") {
		t.Fatalf("a different certificate was accepted: %s", r.stderr)
	}

	// local is the socket; removing the current remote returns to it.
	r = runArgs(t, "--remote", "local", "--timeout", "2s", "get")
	wantCode(t, r, exitFailure)
	if !strings.Contains(r.stderr, "via /run/cimid/cimid.sock") && !strings.Contains(r.stderr, "cimid.sock") {
		t.Fatalf("--remote local did not use the socket: %s", r.stderr)
	}
	wantCode(t, runArgs(t, "remote", "remove", "h1"), exitOK)
	r = runArgs(t, "remote", "list")
	if !currentIs(r.stdout, "local") || strings.Contains(r.stdout, "h1") {
		t.Fatalf("after remove:\n%s", r.stdout)
	}
	wantCode(t, runArgs(t, "remote", "switch", "nowhere"), exitUsage)
}

// currentIs reports whether the remote list marks name as current.
func currentIs(table, name string) bool {
	return regexp.MustCompile(`(?m)^\*\s+` + regexp.QuoteMeta(name) + `\s`).MatchString(table)
}

func TestRemoteClientCert(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	_, url, _ := startTLSFake(t, "")
	r := runArgs(t, "remote", "add", "h", url, "--accept-fingerprint", "--client-cert")
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stderr, "cimid trust add") {
		t.Fatalf("no hint to trust the client certificate: %s", r.stderr)
	}
	for _, f := range []string{"client.crt", "client.key"} {
		if _, err := os.Stat(filepath.Join(cfgHome, "cimi", f)); err != nil {
			t.Fatalf("client certificate not created: %v", err)
		}
	}
	wantCode(t, runArgs(t, "--remote", "h", "get"), exitOK)
}

func TestCompletion(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, url, _ := startTLSFake(t, "")
	wantCode(t, runArgs(t, "remote", "add", "lab", url, "--accept-fingerprint"), exitOK)
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runArgs(t, "completion", shell)
		wantCode(t, r, exitOK)
		if !strings.Contains(r.stdout, "cimi") {
			t.Fatalf("%s completion script:\n%s", shell, r.stdout)
		}
	}
	r := runArgs(t, "__complete", "remote", "switch", "")
	if !strings.Contains(r.stdout, "lab\n") || !strings.Contains(r.stdout, "local\n") {
		t.Fatalf("remote names not completed:\n%s", r.stdout)
	}
	r = runArgs(t, "__complete", "--output", "")
	if !strings.Contains(r.stdout, "xml\n") {
		t.Fatalf("output formats not completed:\n%s", r.stdout)
	}
}
