package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"cimid/agent/authn"
	"cimid/hypervisor/testguest"
	"cimid/store"
)

// The tests in this file run cimid as an operator would: under a service
// manager's notification socket, with HTTPS listeners and their
// authentication, scraped for metrics, stopped with SIGTERM, and with
// libvirtd killed and restarted underneath. They run one after another
// (no t.Parallel): the libvirtd restarts must not overlap other tests.

// launch starts cimid with extra environment and flags without waiting
// for it to serve.
func launch(t *testing.T, stateDir string, env []string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, stateDir: stateDir, socket: filepath.Join(stateDir, "cimid.sock"),
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}, exited: make(chan struct{})}
	args := append([]string{"--state-dir", stateDir, "--socket", d.socket, "--log-level", "debug",
		"--domain-type", testguest.DomainType()}, extra...)
	d.cmd = exec.Command(cimidBinary(t), args...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr = lockedWriter{d.logMu, d.log}
	d.cmd.Stdout = d.cmd.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	d.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", d.socket)
		},
	}}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("cimid log:\n%s", d.logText())
		}
	})
	return d
}

// waitServing waits until the daemon answers on its socket and arranges
// for its libvirt objects to be removed when the test ends.
func (d *daemon) waitServing() {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := d.client.Get("http://localhost/cimi/cloudEntryPoint")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				d.removeLibvirtObjectsAtCleanup()
				return
			}
		}
		select {
		case <-d.exited:
			d.t.Fatalf("cimid exited during start:\n%s", d.logText())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("cimid did not serve within 60 s:\n%s", d.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCimid runs a cimid subcommand and returns its standard output.
func runCimid(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(cimidBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cimid %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// TestDaemonNotifyReadyAfterReconcile runs the agent as systemd would
// (Type=notify): READY=1 arrives only once the agent has reconciled with
// libvirt and serves, and STOPPING=1 when it is asked to stop. The
// notification socket is in the abstract namespace, as systemd's may be.
func TestDaemonNotifyReadyAfterReconcile(t *testing.T) {
	guest := testguest.Build(t)
	dir := newStateDir(t)
	d := launch(t, dir, nil)
	d.waitServing()
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STARTED")
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)
	d.kill()
	// Power the guest off behind the stopped agent's back: the next start
	// learns it only by reconciling.
	if out, err := virsh("destroy", domain); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}

	name := fmt.Sprintf("@cimid-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	d2 := launch(t, dir, []string{"NOTIFY_SOCKET=" + name})
	waitNote := func(want string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case n := <-notes:
				t.Logf("notification: %q", n)
				if strings.Contains(n, want) {
					return
				}
			case <-d2.exited:
				t.Fatalf("cimid exited before %s:\n%s", want, d2.logText())
			case <-timeout:
				t.Fatalf("no %s within 60 s:\n%s", want, d2.logText())
			}
		}
	}
	waitNote("READY=1")
	// At READY the API serves and already shows the reconciled state.
	if st := d2.state(m); st != "STOPPED" {
		t.Fatalf("at READY=1 the Machine is %s; reconciliation should have found it STOPPED", st)
	}
	if r := d2.get("http://localhost/readyz"); r.Status != 200 {
		t.Fatalf("/readyz after READY=1: %d %s", r.Status, r.Body)
	}
	log := d2.logText()
	if strings.Index(log, "msg=ready") < strings.Index(log, "serving CIMI") {
		t.Fatalf("ready logged before serving:\n%s", log)
	}
	d2.cmd.Process.Signal(syscall.SIGTERM)
	waitNote("STOPPING=1")
	select {
	case <-d2.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("cimid did not stop after SIGTERM")
	}
	if code := d2.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("cimid exited %d after SIGTERM", code)
	}
}

// testCert makes a self-signed client certificate, writing its PEM to
// dir/name.pem.
func testCert(t *testing.T, dir, name string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

// pinnedClient trusts exactly the server certificate with fingerprint fp.
func pinnedClient(fp string, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // verified below against the pinned fingerprint
		Certificates:       certs,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || authn.Fingerprint(raw[0]) != fp {
				return errors.New("server certificate does not match the pinned fingerprint")
			}
			return nil
		},
	}}}
}

type httpsResult struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

func httpsDo(t *testing.T, c *http.Client, method, url, token string, body []byte) (httpsResult, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return httpsResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpsResult{status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(start)}, nil
}

func mustHTTPS(t *testing.T, c *http.Client, method, url, token string, body []byte) httpsResult {
	t.Helper()
	r, err := httpsDo(t, c, method, url, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

var servingHTTPS = regexp.MustCompile(`msg="serving HTTPS" .*address=(\S+) fingerprint=([0-9a-f]{64})`)

// auditLines reads the audit file of a state directory.
func auditLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// TestDaemonHTTPSAuthentication exercises the TCP listener: HTTPS only,
// the self-signed certificate pinned by its fingerprint, trusted client
// certificates and bearer tokens managed with the cimid subcommands while
// the agent runs, 401 for everyone else, a TLS refusal for an untrusted
// certificate, and growing delays for a client that keeps failing.
func TestDaemonHTTPSAuthentication(t *testing.T) {
	dir := newStateDir(t)
	d := launch(t, dir, nil, "--listen", "127.0.0.1:0")
	d.waitServing()
	match := servingHTTPS.FindStringSubmatch(d.logText())
	if match == nil {
		t.Fatalf("no HTTPS address logged:\n%s", d.logText())
	}
	addr, fp := match[1], match[2]
	if got := strings.TrimSpace(runCimid(t, "--state-dir", dir, "fingerprint")); got != fp {
		t.Fatalf("cimid fingerprint = %s, the listener logged %s", got, fp)
	}
	if !strings.Contains(d.logText(), "its SHA-256 fingerprint is "+fp) {
		t.Fatalf("the fingerprint was not printed at first start:\n%s", d.logText())
	}
	base := "https://" + addr
	anon := pinnedClient(fp)

	// Anonymous requests: 401 everywhere, logged.
	for _, p := range []string{"/cimi/cloudEntryPoint", "/metrics", "/healthz"} {
		r := mustHTTPS(t, anon, "GET", base+p, "", nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("anonymous GET %s: %d %v %s", p, r.status, r.header, r.body)
		}
	}
	if !strings.Contains(d.logText(), `event=refused method=GET path=/cimi/cloudEntryPoint status=401`) {
		t.Fatalf("anonymous request not logged:\n%s", d.logText())
	}

	// Plain HTTP on the TLS port, on loopback too, reaches no resource.
	resp, err := http.Get("http://" + addr + "/cimi/cloudEntryPoint")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	plain, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(plain), "resourceURI") {
		t.Fatalf("plain HTTP on the TLS port: %d %s", resp.StatusCode, plain)
	}

	// A trusted client certificate, added while the agent runs.
	alice, alicePEM := testCert(t, dir, "alice")
	runCimid(t, "--state-dir", dir, "trust", "add", alicePEM)
	if list := runCimid(t, "--state-dir", dir, "trust", "list"); !strings.Contains(list, "alice") {
		t.Fatalf("trust list:\n%s", list)
	}
	withCert := pinnedClient(fp, alice)
	cep := mustHTTPS(t, withCert, "GET", base+"/cimi/cloudEntryPoint", "", nil)
	if cep.status != 200 || !strings.Contains(cep.body, `"baseURI":"`+base+`/cimi/"`) {
		t.Fatalf("GET with a trusted certificate: %d %s", cep.status, cep.body)
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if r := mustHTTPS(t, withCert, "GET", base+p, "", nil); r.status != 200 {
			t.Fatalf("GET %s with a trusted certificate: %d %s", p, r.status, r.body)
		}
	}

	// An untrusted certificate is refused during the handshake.
	mallory, _ := testCert(t, dir, "mallory")
	if r, err := httpsDo(t, pinnedClient(fp, mallory), "GET", base+"/cimi/cloudEntryPoint", "", nil); err == nil {
		t.Fatalf("an untrusted certificate got an HTTP answer: %d %s", r.status, r.body)
	} else {
		t.Logf("untrusted certificate: %v", err)
	}

	// A bearer token: works, its changes are audited with their Job, and
	// once revoked it is refused.
	token := strings.TrimSpace(runCimid(t, "--state-dir", dir, "token", "create", "laptop"))
	body, _ := json.Marshal(map[string]any{"name": "https-made", "cpu": 1, "memory": 131072})
	created := mustHTTPS(t, anon, "POST", base+"/cimi/machineConfigs", token, body)
	jobURI := created.header.Get("CIMI-Job-URI")
	if created.status >= 300 || jobURI == "" {
		t.Fatalf("POST with a token: %d %v %s", created.status, created.header, created.body)
	}
	var sawAudit bool
	for _, rec := range auditLines(t, dir) {
		if rec["event"] == "request" && strings.HasPrefix(rec["who"].(string), "token:laptop(") && rec["job"] == jobURI &&
			rec["request_id"] == created.header.Get("X-Request-ID") {
			sawAudit = true
		}
	}
	if !sawAudit {
		t.Fatalf("the token's change is not in the audit log with its Job %s", jobURI)
	}
	runCimid(t, "--state-dir", dir, "token", "revoke", "laptop")
	if r := mustHTTPS(t, anon, "GET", base+"/cimi/cloudEntryPoint", token, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d", r.status)
	}

	// This client has failed five times now (three anonymous, the untrusted
	// certificate, the revoked token): each further failure waits longer,
	// while a trusted client is answered at once.
	var delays []time.Duration
	for range 2 {
		r := mustHTTPS(t, anon, "GET", base+"/cimi/cloudEntryPoint", "cimid_000000000000.nope", nil)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", r.status)
		}
		delays = append(delays, r.took)
	}
	t.Logf("delays of the sixth and seventh failure: %v", delays)
	if delays[0] < 900*time.Millisecond || delays[1] < delays[0]+500*time.Millisecond {
		t.Fatalf("repeated failures are not slowed down: %v", delays)
	}
	if r := mustHTTPS(t, withCert, "GET", base+"/cimi/cloudEntryPoint", "", nil); r.status != 200 || r.took > 500*time.Millisecond {
		t.Fatalf("a trusted client is held up: %d after %v", r.status, r.took)
	}

	// The cimi CLI as a laptop uses it: a remote with a token, and one with
	// its own client certificate once the host trusts it.
	cimi := cimiBinary(t)
	home := t.TempDir()
	cli := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(cimi, args...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+home, "CIMI_SOCKET=", "CIMI_URL=", "CIMI_TOKEN=", "CIMI_REMOTE=")
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("cimi %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cliToken := strings.TrimSpace(runCimid(t, "--state-dir", dir, "token", "create", "cli"))
	cli(true, "remote", "add", "hv", base+"/", "--fingerprint", fp, "--token", cliToken)
	if out := cli(true, "--remote", "hv", "list", "machineConfigs"); !strings.Contains(out, "https-made") {
		t.Fatalf("cimi over the remote:\n%s", out)
	}
	cli(true, "remote", "add", "hv-cert", base+"/", "--accept-fingerprint", "--client-cert")
	if out := cli(false, "--remote", "hv-cert", "get"); !strings.Contains(out, "certificate") {
		t.Fatalf("an untrusted cimi certificate:\n%s", out)
	}
	runCimid(t, "--state-dir", dir, "trust", "add", filepath.Join(home, "cimi", "client.crt"), "--name", "cimi-laptop")
	cli(true, "remote", "switch", "hv-cert")
	if out := cli(true, "get", "machineConfigs"); !strings.Contains(out, "https-made") {
		t.Fatalf("cimi with its trusted certificate:\n%s", out)
	}
}

// ensureGroup makes the cimid group exist (make install creates it) and
// returns its gid.
func ensureGroup(t *testing.T) int {
	t.Helper()
	if _, err := user.LookupGroup("cimid"); err != nil {
		if out, err := exec.Command("groupadd", "--system", "cimid").CombinedOutput(); err != nil {
			t.Fatalf("groupadd cimid: %v %s", err, out)
		}
		t.Log("created the cimid group, as make install does")
	}
	g, err := user.LookupGroup("cimid")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// curlAs runs curl on the socket as uid/gid with the given supplementary
// groups and returns its exit code, output and standard error.
func curlAs(t *testing.T, socket string, uid, gid int, groups []uint32, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "--unix-socket", socket, "-w", "\n%{http_code}"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run curl: %v", err)
	}
	return code, stdout.String(), stderr.String()
}

// TestDaemonSocketPeers checks who may use the unix socket: it is 0660,
// group cimid; an unprivileged user outside the group cannot connect; a
// member can, and the audit log names the peer's uid; and were the mode
// ever too open, the peer check still refuses an outsider.
func TestDaemonSocketPeers(t *testing.T) {
	gid := ensureGroup(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	ngid, _ := strconv.Atoi(nobody.Gid)
	dir := newStateDir(t)
	d := launch(t, dir, nil)
	d.waitServing()

	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || int(st.Gid) != gid {
		t.Fatalf("socket mode %v gid %d, want 0660 gid %d", fi.Mode().Perm(), st.Gid, gid)
	}

	code, out, errOut := curlAs(t, d.socket, uid, ngid, []uint32{}, "http://localhost/cimi/cloudEntryPoint")
	// curl reports the EACCES of connect(2) as exit 7, "couldn't connect".
	if code != 7 {
		t.Fatalf("nobody outside the group: curl exit %d\n%s\n%s", code, out, errOut)
	}

	body := `{"name":"peer-made","cpu":1,"memory":131072}`
	code, out, errOut = curlAs(t, d.socket, uid, ngid, []uint32{uint32(gid)},
		"-X", "POST", "-H", "Content-Type: application/json", "-d", body, "http://localhost/cimi/machineConfigs")
	status := out[strings.LastIndex(out, "\n")+1:]
	if code != 0 || (status != "201" && status != "202") {
		t.Fatalf("nobody in group cimid: curl exit %d, status %s\n%s\n%s", code, status, out, errOut)
	}
	var sawUID bool
	for _, rec := range auditLines(t, dir) {
		if rec["event"] == "request" && rec["method"] == "POST" && rec["uid"] == float64(uid) && rec["who"] == fmt.Sprintf("unix:nobody(%d)", uid) {
			sawUID = true
		}
	}
	if !sawUID {
		t.Fatalf("the peer uid %d is not in the audit log", uid)
	}

	// A socket opened too wide by mistake still refuses outsiders.
	if err := os.Chmod(d.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	code, out, _ = curlAs(t, d.socket, uid, ngid, []uint32{}, "http://localhost/cimi/cloudEntryPoint")
	if status := out[strings.LastIndex(out, "\n")+1:]; code != 0 || status != "403" || !strings.Contains(out, "not allowed") {
		t.Fatalf("outsider through an open socket: curl exit %d\n%s", code, out)
	}
}

// scrape reads /metrics over the socket and parses it with Prometheus'
// own text parser.
func (d *daemon) scrape() map[string]*dto.MetricFamily {
	d.t.Helper()
	r := d.get("http://localhost/metrics")
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		d.t.Fatalf("GET /metrics: %d %v", r.Status, r.Header)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		d.t.Fatalf("/metrics does not parse: %v\n%s", err, r.Body)
	}
	return fams
}

// metric returns the value of the first series of name whose labels
// include the given pairs (a histogram's sample count).
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, lp := range m.Label {
				ok = ok || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !ok {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.Counter.GetValue(), true
		case dto.MetricType_GAUGE:
			return m.Gauge.GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// seedInstance gives a fresh state directory the instance id of a new
// agent, so that the test knows the names of the libvirt objects that
// agent would make. Nothing else is in the store.
func seedInstance(t *testing.T, dir string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	instance := fmt.Sprintf("%x", b)
	db, err := store.Open(filepath.Join(dir, "cimid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.InstanceID(func() string { return instance }); err != nil || got != instance {
		t.Fatalf("seed instance id: %q %v", got, err)
	}
	t.Cleanup(func() { removeInstanceObjects(instance) })
	return instance
}

// dirDigest sums the names, modes and contents of the files of a state
// directory, to tell whether anything in it changed.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", path, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// libvirtObjectsOf lists the storage pools and networks libvirt has for an
// instance.
func libvirtObjectsOf(t *testing.T, instance string) []string {
	t.Helper()
	var found []string
	for _, list := range [][]string{{"pool-list", "--all", "--name"}, {"net-list", "--all", "--name"}} {
		out, err := virsh(list...)
		if err != nil {
			t.Fatalf("virsh %s: %v %s", strings.Join(list, " "), err, out)
		}
		for _, n := range strings.Fields(out) {
			if n == "cimid-"+instance || strings.HasPrefix(n, "cimid-"+instance+"-") {
				found = append(found, list[0]+" "+n)
			}
		}
	}
	return found
}

// TestDaemonRefusedStartTouchesNothing starts a second agent where it
// cannot run: on the socket a running agent serves, on the running
// agent's state directory, on a TCP port in use, and with an unusable TLS
// certificate. Each exits with an error saying why before it changes
// anything: libvirt has no storage pool or network of its instance, its
// state directory is as it was, and the running agent still serves.
func TestDaemonRefusedStartTouchesNothing(t *testing.T) {
	first := launch(t, newStateDir(t), nil)
	first.waitServing()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	junk := t.TempDir()
	badCert, badKey := filepath.Join(junk, "server.crt"), filepath.Join(junk, "server.key")
	if err := os.WriteFile(badCert, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badKey, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherSocket := filepath.Join(junk, "second.sock")

	for _, tc := range []struct {
		name      string
		sharedDir bool // the running agent's state directory
		args      []string
		want      string // in the error logged
	}{
		{name: "socket served", args: []string{"--socket", first.socket}, want: "is served by another process"},
		{name: "state directory in use", sharedDir: true, args: []string{"--socket", otherSocket}, want: "is in use by another running cimid"},
		{name: "port in use", args: []string{"--listen", busy.Addr().String()}, want: "address already in use"},
		{name: "unusable certificate", args: []string{"--listen", "127.0.0.1:0", "--tls-cert", badCert, "--tls-key", badKey},
			want: "TLS certificate " + badCert},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir, instance := first.stateDir, first.instance()
			if !tc.sharedDir {
				dir = newStateDir(t)
				instance = seedInstance(t, dir)
			}
			before := dirDigest(t, dir)
			d := launch(t, dir, nil, tc.args...)
			select {
			case <-d.exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("the second cimid did not give up within 60 s:\n%s", d.logText())
			}
			log := d.logText()
			if code := d.cmd.ProcessState.ExitCode(); code != exitFailure {
				t.Fatalf("the second cimid exited %d, want %d:\n%s", code, exitFailure, log)
			}
			if !strings.Contains(log, `msg="start failed"`) || !strings.Contains(log, tc.want) {
				t.Errorf("the second cimid does not say %q:\n%s", tc.want, log)
			}
			if strings.Contains(log, "serving CIMI") {
				t.Errorf("the refused cimid served:\n%s", log)
			}
			if !tc.sharedDir {
				if objs := libvirtObjectsOf(t, instance); len(objs) > 0 {
					t.Errorf("the refused cimid made libvirt objects: %v", objs)
				}
				if dirDigest(t, dir) != before {
					t.Errorf("the refused cimid changed its state directory %s", dir)
				}
			}
			if _, err := os.Stat(otherSocket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a socket was left at %s: %v", otherSocket, err)
			}
			if r := first.get("cloudEntryPoint"); r.Status != http.StatusOK {
				t.Fatalf("the running cimid stopped serving: %d %s", r.Status, r.Body)
			}
		})
	}
}

// TestDaemonMetrics scrapes /metrics before and after work: request and
// Job counters move, libvirt shows as connected, and a running Machine
// gets CPU, memory, disk and network series from the bulk statistics.
func TestDaemonMetrics(t *testing.T) {
	guest := testguest.Build(t)
	d := launch(t, newStateDir(t), nil, "--stats-interval", "300ms")
	d.waitServing()
	before := d.scrape()
	cepRoute := []string{"method", "GET", "route", "/cimi/cloudEntryPoint", "code", "200"}
	sleepJob := []string{"action", "test.sleep", "outcome", "SUCCESS"}
	reqs0, _ := metric(before, "cimid_http_requests_total", cepRoute...)
	jobs0, _ := metric(before, "cimid_jobs_total", sleepJob...)
	for range 3 {
		d.get("cloudEntryPoint")
	}
	r := d.postJSON("test/sleep", map[string]any{"seconds": 0.2})
	if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("sleep job: %v", j)
	}
	after := d.scrape()
	if v, _ := metric(after, "cimid_http_requests_total", cepRoute...); v < reqs0+3 {
		t.Errorf("request counter %v → %v after 3 requests", reqs0, v)
	}
	if v, _ := metric(after, "cimid_http_request_duration_seconds", cepRoute...); v < reqs0+3 {
		t.Errorf("latency histogram count %v after 3 requests", v)
	}
	if v, _ := metric(after, "cimid_jobs_total", sleepJob...); v != jobs0+1 {
		t.Errorf("job counter %v → %v after one job", jobs0, v)
	}
	if v, _ := metric(after, "cimid_job_duration_seconds", sleepJob...); v != jobs0+1 {
		t.Errorf("job duration count %v after one job", v)
	}
	for _, name := range []string{"cimid_libvirt_connected", "cimid_ready"} {
		if v, _ := metric(after, name); v != 1 {
			t.Errorf("%s = %v", name, v)
		}
	}

	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STARTED")
	id := lastSegment(m)
	var cpu0 float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams := d.scrape()
		cpu, ok := metric(fams, "cimid_machine_cpu_seconds_total", "machine", id)
		if ok && cpu > 0 {
			cpu0 = cpu
			for _, name := range []string{"cimid_machine_vcpus", "cimid_machine_memory_bytes", "cimid_machine_disk_read_bytes_total",
				"cimid_machine_disk_written_bytes_total", "cimid_machine_network_receive_bytes_total", "cimid_machine_network_transmit_bytes_total"} {
				if _, ok := metric(fams, name, "machine", id); !ok {
					t.Errorf("no %s series for the running Machine", name)
				}
			}
			if v, _ := metric(fams, "cimid_machine_vcpus", "machine", id); v != 1 {
				t.Errorf("vcpus = %v, want 1", v)
			}
			if v, _ := metric(fams, "cimid_machine_memory_bytes", "machine", id); v != 160*1024*1024 {
				t.Errorf("memory = %v, want %v", v, 160*1024*1024)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU series for Machine %s within 30 s", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.waitConsole(m, testguest.MarkerReady)
	time.Sleep(time.Second)
	if v, _ := metric(d.scrape(), "cimid_machine_cpu_seconds_total", "machine", id); v <= cpu0 {
		t.Errorf("guest CPU time did not move while it booted: %v → %v", cpu0, v)
	}
	if v, _ := metric(d.scrape(), "cimid_machines_running"); v < 1 {
		t.Errorf("cimid_machines_running = %v", v)
	}
}

// TestDaemonJSONLogs checks --log-format json and the correlation of a
// request with the Job it started: the request id the client sent comes
// back, and the request line, the audit record and the Job's own lines
// carry the ids.
func TestDaemonJSONLogs(t *testing.T) {
	dir := newStateDir(t)
	d := launch(t, dir, nil, "--log-format", "json")
	d.waitServing()
	r := d.do(http.MethodPost, "test/sleep", "application/json", []byte(`{"seconds":0.1}`), "X-Request-ID", "req-correlate-1")
	if r.Status != http.StatusAccepted || r.Header.Get("X-Request-ID") != "req-correlate-1" {
		t.Fatalf("POST sleep: %d %v", r.Status, r.Header)
	}
	jobURI := r.Header.Get("CIMI-Job-URI")
	jobID := lastSegment(jobURI)
	d.waitJob(jobURI, time.Minute)
	var sawRequest, sawJob, sawAudit bool
	deadline := time.Now().Add(10 * time.Second)
	for !(sawRequest && sawJob && sawAudit) && time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(d.logText()))
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("log line is not JSON: %q", sc.Text())
			}
			switch {
			case line["msg"] == "request" && line["request_id"] == "req-correlate-1" && line["job"] == jobID:
				sawRequest = true
			case line["msg"] == "audit" && line["request_id"] == "req-correlate-1" && line["job"] == jobURI && line["who"] == "unix:root(0)":
				sawAudit = true
			case line["msg"] == "job succeeded" && line["job"] == jobID:
				sawJob = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawRequest || !sawJob || !sawAudit {
		t.Fatalf("correlated lines: request %v, audit %v, job %v\n%s", sawRequest, sawAudit, sawJob, d.logText())
	}
}

// TestDaemonDrainAndResume stops the agent with SIGTERM while Jobs run:
// a Job that ends within the drain deadline finishes, and the ones still
// running then are left to the next start, which resumes a resumable one
// and ends the other as interrupted.
func TestDaemonDrainAndResume(t *testing.T) {
	dir := newStateDir(t)
	d := launch(t, dir, nil, "--drain-timeout", "3s")
	d.waitServing()
	submit := func(seconds float64, resumable bool) string {
		r := d.postJSON("test/sleep", map[string]any{"seconds": seconds, "resumable": resumable})
		if r.Status != http.StatusAccepted {
			t.Fatalf("POST sleep: %d %s", r.Status, r.Body)
		}
		return r.Header.Get("CIMI-Job-URI")
	}
	submitted := time.Now()
	short := submit(1, false)
	resumed := submit(8, true)
	interrupted := submit(60, false)
	time.Sleep(300 * time.Millisecond)

	stopAt := time.Now()
	d.stop()
	took := time.Since(stopAt)
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("cimid exited %d after SIGTERM:\n%s", code, d.logText())
	}
	if took < 2500*time.Millisecond || took > 20*time.Second {
		t.Fatalf("stop took %v with a 3 s drain deadline and a Job of 60 s", took)
	}
	if !strings.Contains(d.logText(), "job interrupted by shutdown") {
		t.Fatalf("no Job was left for recovery:\n%s", d.logText())
	}

	d2 := launch(t, dir, nil)
	d2.waitServing()
	if j := d2.waitJob(short, time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("the short Job did not finish during the drain: %v", j)
	}
	j := d2.waitJob(resumed, time.Minute)
	if j["state"] != "SUCCESS" {
		t.Fatalf("the resumable Job: %v", j)
	}
	if !strings.Contains(d2.logText(), "resuming job after restart") {
		t.Fatalf("the resumable Job was not resumed:\n%s", d2.logText())
	}
	if elapsed := time.Since(submitted); elapsed < 8*time.Second {
		t.Fatalf("the resumed Job ended after %v, before its 8 s were over", elapsed)
	}
	if j := d2.waitJob(interrupted, time.Minute); j["state"] != "FAILED" || !strings.Contains(j["statusMessage"].(string), "interrupted by an agent restart") {
		t.Fatalf("the non-resumable Job: %v", j)
	}
}

const libvirtdPIDFile = "/run/libvirtd.pid"

// libvirtdPID returns the pid of the running libvirtd, checking the
// process is one (and not a zombie); 0 when none runs.
func libvirtdPID() int {
	data, err := os.ReadFile(libvirtdPIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(stat)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || close+2 >= len(s) || s[open+1:close] != "libvirtd" || s[close+2] == 'Z' {
		return 0
	}
	return pid
}

// killLibvirtd kills libvirtd with SIGKILL and waits until it is gone.
func killLibvirtd(t *testing.T) {
	t.Helper()
	pid := libvirtdPID()
	if pid == 0 {
		t.Fatal("libvirtd is not running (or its pid file does not name it)")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill libvirtd: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for libvirtdPID() == pid {
		if time.Now().After(deadline) {
			t.Fatalf("libvirtd %d still there 30 s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("killed libvirtd (pid %d)", pid)
}

// startLibvirtd starts libvirtd exactly as the host setup does.
func startLibvirtd(t *testing.T) {
	t.Helper()
	out, err := exec.Command("bash", "../../systemd/host-setup.sh", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd/host-setup.sh: %v\n%s", err, out)
	}
	t.Logf("libvirtd started again (pid %d)", libvirtdPID())
}

// waitReadyz waits until /readyz answers want.
func (d *daemon) waitReadyz(want int, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := d.get("http://localhost/readyz")
		if r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("/readyz still %d %s after %v, want %d", r.Status, strings.TrimSpace(string(r.Body)), timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restartLibvirtd kills libvirtd under the running agent, waits until the
// agent says it is not ready, starts libvirtd again and waits until the
// agent is ready again.
func (d *daemon) restartLibvirtd() {
	d.t.Helper()
	killLibvirtd(d.t)
	d.waitReadyz(http.StatusServiceUnavailable, 30*time.Second)
	startLibvirtd(d.t)
	d.waitReadyz(http.StatusOK, 60*time.Second)
}

// machineStateOf maps virsh domstate to the Machine state it means.
func machineStateOf(domstate string) string {
	switch domstate {
	case "running":
		return "STARTED"
	case "shut off":
		return "STOPPED"
	case "paused":
		return "PAUSED"
	}
	return "unknown (" + domstate + ")"
}

// waitMatchesLibvirt waits until the Machine's state is what libvirt
// shows for its domain.
func (d *daemon) waitMatchesLibvirt(machine, domain string) string {
	d.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		want := machineStateOf(domainState(domain))
		got := d.state(machine)
		if got == want {
			return got
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("Machine is %s, libvirt shows the domain %s", got, domainState(domain))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDaemonLibvirtdRestart kills libvirtd under a running agent, once
// while it is idle and once while a Job drives a Machine, and starts it
// again as the host setup does. The agent reports itself not ready
// meanwhile, then reconnects and resyncs: every Job ends, the Machine's
// state matches libvirt, the guest keeps running, and an event stream
// opened before the restarts still delivers.
func TestDaemonLibvirtdRestart(t *testing.T) {
	t.Cleanup(func() {
		if libvirtdPID() == 0 {
			startLibvirtd(t)
		}
	})
	guest := testguest.Build(t)
	d := launch(t, newStateDir(t), nil, "--stats-interval", "300ms")
	d.waitServing()
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STARTED")
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)
	d.waitConsole(m, testguest.MarkerReady)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := d.streamEvents(ctx, strings.TrimPrefix(m, "http://localhost/cimi/"))

	// Idle.
	d.restartLibvirtd()
	if st := d.waitMatchesLibvirt(m, domain); st != "STARTED" {
		t.Fatalf("the guest did not survive the libvirtd restart: %s", st)
	}
	if v, _ := metric(d.scrape(), "cimid_libvirt_connected"); v != 1 {
		t.Fatalf("cimid_libvirt_connected = %v after the restart", v)
	}
	d.act(m, "stop", nil)
	waitEvent(t, stream, "the stop after an idle libvirtd restart", func(c map[string]any) bool { return c["state"] == "STOPPED" })

	// During a Job: a graceful stop issued while the guest still boots
	// runs until the guest answers the power button, several seconds.
	d.act(m, "start", nil)
	waitEvent(t, stream, "the start", func(c map[string]any) bool { return c["state"] == "STARTED" })
	jobURI := d.action(m, "stop", nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := d.get(jobURI).JSON(t)["state"]
		if st == "RUNNING" {
			break
		}
		if st != "QUEUED" || time.Now().After(deadline) {
			t.Fatalf("the stop Job is %v before libvirtd could be killed under it", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.restartLibvirtd()
	j := d.waitJob(jobURI, 3*time.Minute)
	// The stop waits for libvirtd to come back and then finishes.
	t.Logf("the stop Job that libvirtd's restart interrupted ended %v: %v", j["state"], j["statusMessage"])
	if j["state"] != "SUCCESS" {
		t.Fatalf("the stop Job did not ride out the libvirtd restart: %v", j)
	}
	if st := d.waitMatchesLibvirt(m, domain); st != "STOPPED" {
		t.Fatalf("the stop Job succeeded but the Machine is %s", st)
	}
	d.act(m, "start", nil)
	waitEvent(t, stream, "a start after libvirtd restarted during a Job", func(c map[string]any) bool { return c["state"] == "STARTED" })
	d.waitMatchesLibvirt(m, domain)
}
