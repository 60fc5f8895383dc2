package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientCert makes a self-signed client certificate and its PEM.
func clientCert(t *testing.T, cn string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestTokens(t *testing.T) {
	tokens := OpenTokens(t.TempDir())
	now := time.Now()
	secret, tok, err := tokens.Create("ci", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "cimid_"+tok.ID+".") {
		t.Fatalf("secret %q does not name token %s", secret, tok.ID)
	}
	raw, _ := os.ReadFile(tokens.file.path)
	if strings.Contains(string(raw), strings.SplitN(secret, ".", 2)[1]) {
		t.Fatal("the token file holds the secret in clear")
	}
	if got, err := tokens.Verify(secret, now); err != nil || got.Name != "ci" {
		t.Fatalf("verify: %v %+v", err, got)
	}
	if _, err := tokens.Verify(secret+"x", now); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
	if _, _, err := tokens.Create("ci", 0, now); err == nil {
		t.Fatal("a second token of the same name was created")
	}
	short, _, err := tokens.Create("short", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(short, now.Add(2*time.Minute)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	if _, err := tokens.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(secret, now); err == nil {
		t.Fatal("a revoked token was accepted")
	}
	list, _ := tokens.List()
	if len(list) != 1 || list[0].Name != "short" {
		t.Fatalf("list after revoke: %+v", list)
	}
}

func TestClients(t *testing.T) {
	clients := OpenClients(t.TempDir())
	_, pemA := clientCert(t, "alice")
	a, err := clients.Add(pemA, "", time.Now())
	if err != nil || a.Name != "alice" || len(a.Fingerprint) != 64 {
		t.Fatalf("add: %v %+v", err, a)
	}
	if _, err := clients.Add(pemA, "other", time.Now()); err == nil {
		t.Fatal("the same certificate was trusted twice")
	}
	_, pemB := clientCert(t, "alice")
	if _, err := clients.Add(pemB, "", time.Now()); err == nil {
		t.Fatal("two clients named alice")
	}
	if _, err := clients.Add([]byte("not pem"), "x", time.Now()); err == nil {
		t.Fatal("garbage accepted as a certificate")
	}
	if _, ok, _ := clients.Lookup(a.Fingerprint); !ok {
		t.Fatal("lookup by fingerprint failed")
	}
	if _, err := clients.Remove(strings.ToUpper(a.Fingerprint[:12])); err != nil {
		t.Fatalf("remove by fingerprint prefix: %v", err)
	}
	if _, ok, _ := clients.Lookup(a.Fingerprint); ok {
		t.Fatal("still trusted after remove")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Now()
	l := &Limiter{Free: 2, Base: 100 * time.Millisecond, Max: time.Second, Window: time.Minute, Now: func() time.Time { return now }}
	var got []time.Duration
	for range 7 {
		got = append(got, l.Fail("10.0.0.1"))
	}
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	if d := l.Fail("10.0.0.2"); d != 0 {
		t.Fatalf("another address is slowed down: %v", d)
	}
	now = now.Add(2 * time.Minute)
	if d := l.Fail("10.0.0.1"); d != 0 {
		t.Fatalf("failures not forgotten after the window: %v", d)
	}
}

// testServer serves an identity echo behind the middleware on TLS.
type testServer struct {
	url    string
	auth   *Authenticator
	dir    string
	audit  string
	pool   *x509.CertPool
	server *httptest.Server
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	cert, _, err := ServerCert(filepath.Join(dir, "tls", "server.crt"), filepath.Join(dir, "tls", "server.key"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(dir, "audit.log")
	audit, err := OpenAudit(auditPath, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	lim := &Limiter{Free: 2, Base: 150 * time.Millisecond, Max: time.Second, Window: time.Minute, Now: time.Now}
	a := New(Options{Dir: filepath.Join(dir, "authn"), SocketGID: -1, Audit: audit, Limiter: lim})
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		if r.Method == http.MethodPost {
			w.Header().Set("CIMI-Job-URI", "https://x/cimi/jobs/j1")
			w.WriteHeader(http.StatusAccepted)
		}
		io.WriteString(w, id.String())
	}))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = ConnContext
	srv.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelError)
	srv.TLS = a.TLSConfig(cert)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &testServer{url: srv.URL, auth: a, dir: dir, audit: auditPath, pool: pool, server: srv}
}

func (s *testServer) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool, Certificates: certs}}}
}

func get(t *testing.T, c *http.Client, method, url, token string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestTLSAuthentication(t *testing.T) {
	s := newTestServer(t)

	code, body, h := get(t, s.client(), "GET", s.url+"/cimi/cloudEntryPoint", "")
	if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" || !strings.Contains(body, `"returnCode":401`) {
		t.Fatalf("anonymous: %d %v %s", code, h, body)
	}

	alice, alicePEM := clientCert(t, "alice")
	if _, err := s.auth.clients.Add(alicePEM, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, s.client(alice), "GET", s.url+"/", ""); code != 200 || body != "cert:alice" {
		t.Fatalf("trusted certificate: %d %s", code, body)
	}

	mallory, _ := clientCert(t, "mallory")
	_, err := s.client(mallory).Get(s.url + "/")
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("untrusted certificate got past the handshake: %v", err)
	}
	t.Logf("untrusted certificate: %v", err)

	secret, tok, err := s.auth.tokens.Create("laptop", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, s.client(), "POST", s.url+"/cimi/machines", secret); code != http.StatusAccepted || body != "token:laptop("+tok.ID+")" {
		t.Fatalf("token: %d %s", code, body)
	}
	if _, err := s.auth.tokens.Revoke("laptop"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, s.client(), "GET", s.url+"/", secret); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", code)
	}

	// Failures so far from 127.0.0.1: anonymous, mallory, revoked. The
	// limiter allows 2; the third waited 150 ms, these wait 300 and 600 ms.
	var took []time.Duration
	for range 2 {
		start := time.Now()
		code, _, _ := get(t, s.client(), "GET", s.url+"/", "cimid_000000000000.wrong")
		took = append(took, time.Since(start))
		if code != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", code)
		}
	}
	if took[0] < 290*time.Millisecond || took[1] < 590*time.Millisecond {
		t.Fatalf("repeated failures are not slowed down: %v", took)
	}

	// The audit trail has the refusals and the change with its Job.
	raw, err := os.ReadFile(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	var sawChange, sawTLS, sawRefused bool
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		switch rec["event"] {
		case "request":
			sawChange = rec["who"] == "token:laptop("+tok.ID+")" && rec["job"] == "https://x/cimi/jobs/j1" && rec["method"] == "POST"
		case "tls-refused":
			sawTLS = strings.Contains(rec["reason"].(string), "untrusted client certificate")
		case "refused":
			sawRefused = true
		}
	}
	if !sawChange || !sawTLS || !sawRefused {
		t.Fatalf("audit trail incomplete (change %v, tls %v, refused %v):\n%s", sawChange, sawTLS, sawRefused, raw)
	}
}

func TestPlainTCPRefused(t *testing.T) {
	a := New(Options{Dir: t.TempDir(), SocketGID: -1})
	srv := httptest.NewUnstartedServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	srv.Config.ConnContext = ConnContext
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("plain TCP: %d", resp.StatusCode)
	}
}

// serveUnix serves h on a unix socket in dir until the test ends and
// returns a client of it.
func serveUnix(t *testing.T, dir string, h http.Handler) *http.Client {
	t.Helper()
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ConnContext: ConnContext, Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func TestUnixPeer(t *testing.T) {
	dir := t.TempDir()
	a := New(Options{Dir: dir, SocketGID: -1})
	c := serveUnix(t, dir, a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		io.WriteString(w, id.String())
	})))
	resp, err := c.Get("http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := Identity{Method: "unix", Name: userName(os.Geteuid()), UID: os.Geteuid()}.String()
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("unix peer: %d %q, want %q", resp.StatusCode, b, want)
	}
}
