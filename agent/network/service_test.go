package network

import (
	"bytes"
	"cimid/agent/records"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/hypervisor/cloudinit"
	"cimid/store"
)

type harness struct {
	t    *testing.T
	s    *Service
	drv  *fakeDriver
	db   *store.DB
	jobs *job.Runner
	srv  http.Handler
}

func newHarness(t *testing.T, prepare ...func(*fakeDriver)) *harness {
	t.Helper()
	drv := newFakeDriver()
	for _, p := range prepare {
		p(drv)
	}
	h := startService(t, drv)
	h.drv = drv
	return h
}

// startService runs the service on drv as the agent does: Prepare, Job
// recovery, Reconcile.
func startService(t *testing.T, drv Driver) *harness {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "cimid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	jobs := job.NewRunner(db, log, job.Options{})
	s := New(Config{Instance: "inst", StateDir: dir, SweepInterval: time.Hour, NetworkWait: 5 * time.Second}, db, jobs, drv, log)
	s.hostInterfaces = func() ([]takenSubnet, error) { return nil, nil } // the fake host has none
	ctx := t.Context()
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		jobs.Shutdown(c)
	})
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, db: db, jobs: jobs, srv: api.NewServer(log, s.Routes())}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not JSON (%v): %s", err, r.body)
	}
	return m
}

func (h *harness) do(method, p string, body any) reply {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	if !strings.HasPrefix(p, "http") {
		p = "http://localhost/cimi/" + strings.TrimPrefix(p, "/")
	}
	req := httptest.NewRequest(method, p, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	return reply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// wait waits for the Job a reply names and returns it.
func (h *harness) wait(r reply) job.Record {
	h.t.Helper()
	uri := r.header.Get("CIMI-Job-URI")
	if uri == "" {
		h.t.Fatalf("no CIMI-Job-URI: %d %s", r.status, r.body)
	}
	id := path.Base(uri)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := h.jobs.Get(id)
		if err != nil {
			h.t.Fatal(err)
		}
		if rec.Final() {
			return rec
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("job %s still %s", id, rec.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustCreate POSTs body and waits for its Job to succeed; it returns the
// new resource's path.
func (h *harness) mustCreate(collection string, body any) string {
	h.t.Helper()
	r := h.do(http.MethodPost, collection, body)
	if r.status != http.StatusCreated && r.status != http.StatusAccepted {
		h.t.Fatalf("POST %s: %d %s", collection, r.status, r.body)
	}
	if j := h.wait(r); j.State != job.Success {
		h.t.Fatalf("POST %s: job %s: %s", collection, j.State, j.StatusMessage)
	}
	loc := r.header.Get("Location")
	return strings.TrimPrefix(loc, "http://localhost/cimi/")
}

func (h *harness) mustFail(method, p string, body any, status int, msg string) {
	h.t.Helper()
	r := h.do(method, p, body)
	if r.status != status || !strings.Contains(string(r.body), msg) {
		h.t.Fatalf("%s %s: got %d %s, want %d with %q", method, p, r.status, r.body, status, msg)
	}
}

func (h *harness) count(kind string) int {
	h.t.Helper()
	recs, err := h.db.List(kind)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(recs)
}

func netCreate(config map[string]any) map[string]any {
	return map[string]any{"resourceURI": cimi.TypeURI("NetworkCreate"), "name": "n",
		"networkTemplate": map[string]any{"networkConfig": config}}
}

func TestDefaultNetworkOnFreeSubnet(t *testing.T) {
	h := newHarness(t, func(f *fakeDriver) { f.addForeign("other", "10.231.0.0/16") })
	n := h.do(http.MethodGet, "networks/default", nil).json(t)
	if n["state"] != cimi.NetworkStarted || n["subnet"] != "10.232.0.0/24" || n["gateway"] != "10.232.0.1" || n["dhcpRange"] != "10.232.0.128-10.232.0.254" {
		t.Fatalf("default network: %v", n)
	}
	if mode := n["forwardMode"]; mode != forwardNAT && mode != forwardIsolated {
		t.Fatalf("forwardMode %v", mode)
	}
	if _, ok := h.drv.nets["cimid-inst-default"]; !ok {
		t.Fatalf("no libvirt network cimid-inst-default: %v", h.drv.calls)
	}
	h.mustFail(http.MethodDelete, "networks/default", nil, http.StatusConflict, "default network")
	// A restart adopts it as it is.
	if err := h.s.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h.count(kindNetworks) != 1 {
		t.Fatalf("%d networks after a second reconcile", h.count(kindNetworks))
	}
}

func TestDefaultNetworkFallsBackToIsolated(t *testing.T) {
	h := newHarness(t, func(f *fakeDriver) { f.failNAT = true })
	n := h.do(http.MethodGet, "networks/default", nil).json(t)
	if n["state"] != cimi.NetworkStarted || n["forwardMode"] != forwardIsolated || n["networkType"] != typePrivate {
		t.Fatalf("default network: %v", n)
	}
}

func TestNetworkLifecycle(t *testing.T) {
	h := newHarness(t)
	cfg := h.mustCreate("networkConfigs", map[string]any{"name": "lab", "forwardMode": "isolated", "subnet": "10.240.3.0/24", "dhcpRange": "10.240.3.10-10.240.3.20", "mtu": 1400})
	tmpl := h.mustCreate("networkTemplates", map[string]any{"name": "lab", "networkConfig": map[string]any{"href": cfg}})
	loc := h.mustCreate("networks", map[string]any{"name": "lab", "networkTemplate": map[string]any{"href": tmpl}})
	n := h.do(http.MethodGet, loc, nil).json(t)
	if n["state"] != cimi.NetworkStarted || n["subnet"] != "10.240.3.0/24" || n["dhcpRange"] != "10.240.3.10-10.240.3.20" || n["mtu"] != float64(1400) || n["networkType"] != typePrivate {
		t.Fatalf("network: %v", n)
	}
	id := path.Base(loc)
	spec := h.drv.nets["cimid-inst-"+id].spec
	if spec.Forward != "isolated" || spec.DHCPStart != "10.240.3.10" || spec.Metadata.NetworkID != id || spec.Metadata.Instance != "inst" {
		t.Fatalf("libvirt spec: %+v", spec)
	}
	h.mustFail(http.MethodDelete, cfg, nil, http.StatusConflict, "used by NetworkTemplate")

	// By value, subnet chosen free.
	loc2 := h.mustCreate("networks", netCreate(map[string]any{"forwardMode": "nat"}))
	n2 := h.do(http.MethodGet, loc2, nil).json(t)
	if n2["subnet"] != "10.231.1.0/24" || n2["forwardMode"] != "nat" {
		t.Fatalf("second network: %v", n2)
	}

	r := h.do(http.MethodDelete, loc, nil)
	if j := h.wait(r); j.State != job.Success {
		t.Fatalf("delete: %v", j)
	}
	if _, ok := h.drv.nets["cimid-inst-"+id]; ok {
		t.Fatal("libvirt network still defined")
	}
	h.mustFail(http.MethodGet, loc, nil, http.StatusNotFound, "does not exist")
}

func TestNetworkBadInput(t *testing.T) {
	h := newHarness(t, func(f *fakeDriver) { f.addForeign("theirs", "10.250.0.0/16") })
	before := h.count(kindNetworks)
	for _, c := range []struct {
		config map[string]any
		status int
		msg    string
	}{
		{map[string]any{"subnet": "10.250.7.0/24"}, http.StatusConflict, "overlaps 10.250.0.0/16 of libvirt network theirs"},
		{map[string]any{"subnet": "10.231.0.0/16"}, http.StatusConflict, "overlaps 10.231.0.0/24 of Network default"},
		{map[string]any{"subnet": "10.241.0.0/24", "dhcpRange": "10.241.1.10-10.241.1.20"}, http.StatusBadRequest, "outside the usable addresses"},
		{map[string]any{"subnet": "10.241.0.0/24", "dhcpRange": "10.241.0.1-10.241.0.20"}, http.StatusBadRequest, "includes the gateway"},
		{map[string]any{"subnet": "10.241.0.0/24", "dhcpRange": "10.241.0.30-10.241.0.20"}, http.StatusBadRequest, "comes after the last"},
		{map[string]any{"subnet": "10.241.0.5/24"}, http.StatusBadRequest, "did you mean 10.241.0.0/24"},
		{map[string]any{"subnet": "fd00::/64"}, http.StatusBadRequest, "not an IPv4 CIDR"},
		{map[string]any{"subnet": "127.0.0.0/24"}, http.StatusBadRequest, "reserved range"},
		{map[string]any{"dhcpRange": "10.241.0.30-10.241.0.40"}, http.StatusBadRequest, "needs a subnet"},
		{map[string]any{"forwardMode": "bridge"}, http.StatusBadRequest, "use nat or isolated"},
		{map[string]any{"mtu": 20}, http.StatusBadRequest, "mtu 20"},
		{map[string]any{"networkType": "PUBLIC", "forwardMode": "isolated"}, http.StatusBadRequest, "contradicts"},
		{map[string]any{"bogus": 1}, http.StatusBadRequest, "unknown attribute"},
	} {
		h.mustFail(http.MethodPost, "networks", netCreate(c.config), c.status, c.msg)
	}
	h.mustFail(http.MethodPost, "networks", map[string]any{"name": "x"}, http.StatusBadRequest, "networkTemplate is required")
	h.mustFail(http.MethodPost, "networks", map[string]any{"networkTemplate": map[string]any{"href": "http://localhost/cimi/networkTemplates/nope"}}, http.StatusBadRequest, "does not exist")
	if got := h.count(kindNetworks); got != before {
		t.Fatalf("%d networks after refused creates, want %d", got, before)
	}
	// XML is decoded the same way.
	req := httptest.NewRequest(http.MethodPost, "http://localhost/cimi/networkConfigs", strings.NewReader(
		`<NetworkConfiguration xmlns="http://schemas.dmtf.org/cimi/1"><name>x</name><forwardMode>isolated</forwardMode><subnet>10.242.0.0/24</subnet><dhcpRange>10.242.0.1-10.242.0.9</dhcpRange></NetworkConfiguration>`))
	req.Header.Set("Content-Type", "application/xml")
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "gateway") {
		t.Fatalf("XML config with a bad range: %d %s", rec.Code, rec.Body)
	}
}

// Test keys, made here rather than read from files.
func ed25519Key(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire([]byte("ssh-ed25519"), pub)) + " alice@lab"
}

func wire(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func mpint(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

func TestCheckSSHKey(t *testing.T) {
	good := ed25519Key(t)
	if got, err := checkSSHKey("  " + strings.Replace(good, " ", "   ", 1) + "\t"); err != nil || got != good {
		t.Fatalf("ed25519: %q %v", got, err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLine := "ssh-rsa " + base64.StdEncoding.EncodeToString(wire([]byte("ssh-rsa"), mpint(big.NewInt(int64(rk.E))), mpint(rk.N)))
	if _, err := checkSSHKey(rsaLine); err != nil {
		t.Fatalf("rsa: %v", err)
	}
	ek, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecLine := "ecdsa-sha2-nistp256 " + base64.StdEncoding.EncodeToString(wire([]byte("ecdsa-sha2-nistp256"), []byte("nistp256"), ek.PublicKey().Bytes())) + " x"
	if _, err := checkSSHKey(ecLine); err != nil {
		t.Fatalf("ecdsa: %v", err)
	}
	blob := base64.StdEncoding.EncodeToString(wire([]byte("ssh-ed25519"), make([]byte, 32)))
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, line := range map[string]string{
		"empty":          "",
		"one field":      "ssh-ed25519",
		"not base64":     "ssh-ed25519 !!!!",
		"type mismatch":  "ssh-rsa " + blob,
		"unknown type":   "ssh-dss " + blob,
		"short ed25519":  "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire([]byte("ssh-ed25519"), make([]byte, 31))),
		"trailing bytes": "ssh-ed25519 " + base64.StdEncoding.EncodeToString(append(wire([]byte("ssh-ed25519"), make([]byte, 32)), 1)),
		"two lines":      good + "\n" + good,
		"private key":    "-----BEGIN OPENSSH PRIVATE KEY-----",
		"small rsa":      "ssh-rsa " + base64.StdEncoding.EncodeToString(wire([]byte("ssh-rsa"), mpint(big.NewInt(65537)), mpint(small.N))),
		"off curve":      "ecdsa-sha2-nistp256 " + base64.StdEncoding.EncodeToString(wire([]byte("ecdsa-sha2-nistp256"), []byte("nistp256"), append([]byte{4}, make([]byte, 64)...))),
		"wrong curve":    "ecdsa-sha2-nistp384 " + base64.StdEncoding.EncodeToString(wire([]byte("ecdsa-sha2-nistp384"), []byte("nistp256"), ek.PublicKey().Bytes())),
	} {
		if _, err := checkSSHKey(line); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSHA512Crypt(t *testing.T) {
	// Vectors of the specification, also what `openssl passwd -6` prints.
	for _, c := range []struct {
		pw, salt string
		rounds   int
		want     string
	}{
		{"Hello world!", "saltstring", 5000, "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "saltstringsaltstring", 10000, "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"This is just a test", "toolongsaltstring", 5000, "$6$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"we have a short salt string but not a short password", "short", 77777, "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	} {
		if got := sha512Crypt([]byte(c.pw), []byte(c.salt), c.rounds); got != c.want {
			t.Errorf("sha512Crypt(%q, %q, %d) = %s, want %s", c.pw, c.salt, c.rounds, got, c.want)
		}
	}
	h, err := hashPassword("correct horse")
	if err != nil || !strings.HasPrefix(h, "$6$rounds=20000$") || len(strings.Split(h, "$")[3]) != 16 {
		t.Fatalf("hashPassword: %q %v", h, err)
	}
	salt := strings.Split(h, "$")[3]
	if sha512Crypt([]byte("correct horse"), []byte(salt), passwordRounds) != h {
		t.Fatal("the hash does not verify")
	}
	if _, err := hashPassword("short"); err == nil {
		t.Fatal("a 5-byte password was accepted")
	}
}

func TestCredentials(t *testing.T) {
	h := newHarness(t)
	key := ed25519Key(t)
	loc := h.mustCreate("credentials", map[string]any{"name": "alice", "credentialTemplate": map[string]any{"userName": "alice", "key": key, "password": "s3cret-pass"}})
	r := h.do(http.MethodGet, loc, nil)
	c := r.json(t)
	if c["userName"] != "alice" || c["key"] != key || c["hasPassword"] != true {
		t.Fatalf("credential: %v", c)
	}
	if strings.Contains(string(r.body), "s3cret") || strings.Contains(string(r.body), "$6$") {
		t.Fatalf("the password or its hash is shown: %s", r.body)
	}
	tmpl := h.mustCreate("credentialTemplates", map[string]any{"userName": "bob", "key": key})
	loc2 := h.mustCreate("credentials", map[string]any{"credentialTemplate": map[string]any{"href": "http://localhost/cimi/" + tmpl}})
	if c2 := h.do(http.MethodGet, loc2, nil).json(t); c2["userName"] != "bob" || c2["hasPassword"] != nil {
		t.Fatalf("credential from template: %v", c2)
	}
	before := h.count(kindCredentials)
	for _, c := range []struct {
		tmpl map[string]any
		msg  string
	}{
		{map[string]any{"userName": "alice", "key": "ssh-ed25519 AAAA"}, "key"},
		{map[string]any{"userName": "Alice!", "key": key}, "not a valid user name"},
		{map[string]any{"userName": "root", "key": key}, "root is refused"},
		{map[string]any{"userName": "alice"}, "needs a key"},
		{map[string]any{"password": "long enough"}, "needs a userName"},
		{map[string]any{"userName": "alice", "password": "short"}, "password must have"},
	} {
		h.mustFail(http.MethodPost, "credentials", map[string]any{"credentialTemplate": c.tmpl}, http.StatusBadRequest, c.msg)
	}
	if h.count(kindCredentials) != before {
		t.Fatal("a refused create left a credential")
	}
	// The stored hash verifies the password.
	var rec credentialRecord
	if err := h.db.View(func(tx *store.Tx) (err error) {
		rec, err = records.Get[credentialRecord](tx, kindCredentials, path.Base(loc), "Credential")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rec.PasswordHash, "$")
	if sha512Crypt([]byte("s3cret-pass"), []byte(parts[3]), passwordRounds) != rec.PasswordHash {
		t.Fatalf("stored hash %q does not verify", rec.PasswordHash)
	}
}

// machine creates a Machine's network records as compute does.
func (h *harness) machine(id, name string, in TemplateInput) Devices {
	h.t.Helper()
	urls := api.URLsFor(httptest.NewRequest(http.MethodGet, "http://localhost/cimi/", nil))
	err := h.db.Update(func(tx *store.Tx) error {
		spec, err := h.s.ResolveTemplate(tx, urls, nil, in)
		if err != nil {
			return err
		}
		return h.s.AttachMachine(tx, MachineInfo{ID: id, Name: name, Domain: "dom-" + id}, spec)
	})
	if err != nil {
		h.t.Fatalf("attach machine: %v", err)
	}
	dev, err := h.s.PrepareMachine(h.t.Context(), id)
	if err != nil {
		h.t.Fatalf("prepare machine: %v", err)
	}
	if h.drv != nil {
		h.drv.addDomain("dom-"+id, hypervisor.StateRunning, dev.NICs...)
	}
	return dev
}

func TestMachineOnNetworks(t *testing.T) {
	h := newHarness(t)
	isolated := h.mustCreate("networks", netCreate(map[string]any{"forwardMode": "isolated", "subnet": "10.243.0.0/24"}))
	static := h.mustCreate("addresses", map[string]any{"addressTemplate": map[string]any{"ip": "10.243.0.7", "hostname": "db", "network": map[string]any{"href": isolated}}})
	h.mustFail(http.MethodPost, "addresses", map[string]any{"addressTemplate": map[string]any{"ip": "10.243.0.200", "network": map[string]any{"href": isolated}}}, http.StatusBadRequest, "inside the network's DHCP range")
	h.mustFail(http.MethodPost, "addresses", map[string]any{"addressTemplate": map[string]any{"ip": "10.243.0.7", "network": map[string]any{"href": isolated}}}, http.StatusConflict, "already reserved")

	key := ed25519Key(t)
	userData := base64.StdEncoding.EncodeToString([]byte("#cloud-config\npackages: [nginx]\n"))
	dev := h.machine("m1", "Web 1", TemplateInput{
		NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{
			{Network: &cimi.Ref{Href: "networks/default"}},
			{Network: &cimi.Ref{Href: isolated}, Model: "e1000", Addresses: []cimi.Ref{{Href: static}}},
		},
		Credential: &cimi.CredentialInput{UserName: "alice", Key: key},
		UserData:   &userData,
	})
	if len(dev.NICs) != 2 || dev.NICs[0].Network != "cimid-inst-default" || dev.NICs[1].Model != "e1000" || dev.Seed == nil {
		t.Fatalf("devices: %+v", dev)
	}
	img, err := os.ReadFile(dev.Seed.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(img, []byte("packages: [nginx]")) || !bytes.Contains(img, []byte(key)) || !bytes.Contains(img, []byte(dev.NICs[1].MAC)) || !bytes.Contains(img, []byte(`local-hostname: "web-1"`)) {
		t.Fatal("the seed lacks the user data, the key, a MAC or the host name")
	}
	if !bytes.Contains(img, []byte("Content-Type: multipart/mixed;")) || !bytes.Contains(img, []byte("Merge-Type: "+cloudinit.MergeType)) {
		t.Fatal("the user-data of a credential and userData is not a multipart document merging the credential in")
	}
	isoNet := "cimid-inst-" + path.Base(isolated)
	if hosts := h.drv.dhcpHosts(isoNet); len(hosts) != 1 || hosts[0].IP != "10.243.0.7" || hosts[0].MAC != dev.NICs[1].MAC {
		t.Fatalf("DHCP hosts: %+v", hosts)
	}
	h.mustFail(http.MethodDelete, isolated, nil, http.StatusConflict, "in use by Machine m1")
	h.mustFail(http.MethodDelete, static, nil, http.StatusConflict, "used by an interface")

	// A lease appears as an Address within one sweep.
	h.drv.setLeases("cimid-inst-default", hypervisor.Lease{MAC: strings.ToUpper(dev.NICs[0].MAC), IP: "10.231.0.150", Prefix: 24, Hostname: "web-1", Expiry: time.Now().Add(time.Hour)},
		hypervisor.Lease{MAC: "52:54:00:00:00:99", IP: "10.231.0.151", Prefix: 24})
	h.s.sweep(t.Context())
	list := h.do(http.MethodGet, "addresses", nil).json(t)
	dynamic := map[string]map[string]any{}
	for _, a := range list["addresses"].([]any) {
		if m := a.(map[string]any); m["allocation"] == "dynamic" {
			dynamic[m["ip"].(string)] = m
		}
	}
	ours, foreign := dynamic["10.231.0.150"], dynamic["10.231.0.151"]
	if len(dynamic) != 2 || ours == nil || ours["mask"] != "255.255.255.0" || ours["resource"].(map[string]any)["href"] != "http://localhost/cimi/machines/m1" {
		t.Fatalf("dynamic addresses: %v", list)
	}
	if foreign == nil || foreign["resource"] != nil || foreign["macAddress"] != "52:54:00:00:00:99" {
		t.Fatalf("the lease of a guest we do not know: %v", foreign)
	}
	ifaces, err := h.s.MachineInterfaces("m1")
	if err != nil || len(ifaces) != 2 || len(ifaces[0].Addresses) != 1 || ifaces[0].Addresses[0].IP != "10.231.0.150" || ifaces[1].Addresses[0].IP != "10.243.0.7" {
		t.Fatalf("interfaces: %+v %v", ifaces, err)
	}
	coll := h.do(http.MethodGet, "machines/m1/networkInterfaces", nil).json(t)
	if coll["count"] != float64(2) {
		t.Fatalf("networkInterfaces: %v", coll)
	}

	// Hot-add and hot-remove on the running Machine.
	r := h.do(http.MethodPost, "machines/m1/networkInterfaces", map[string]any{"resourceURI": cimi.TypeURI("MachineNetworkInterface"),
		"network": map[string]any{"href": isolated}, "macAddress": "52:54:00:AB:CD:EF"})
	if j := h.wait(r); j.State != job.Success {
		t.Fatalf("hot-add: %v", j)
	}
	added := strings.TrimPrefix(r.header.Get("Location"), "http://localhost/cimi/")
	if got := h.do(http.MethodGet, added, nil).json(t); got["state"] != cimi.InterfaceActive || got["macAddress"] != "52:54:00:ab:cd:ef" {
		t.Fatalf("added interface: %v", got)
	}
	if d := h.drv.domains["dom-m1"]; len(d.live) != 3 {
		t.Fatalf("live NICs after hot-add: %+v", d.live)
	}
	h.mustFail(http.MethodPost, "machines/m1/networkInterfaces", map[string]any{"network": map[string]any{"href": isolated}, "macAddress": "52:54:00:ab:cd:ef"}, http.StatusConflict, "already used")
	h.mustFail(http.MethodPost, "machines/m1/networkInterfaces", map[string]any{"network": map[string]any{"href": isolated}, "macAddress": "01:00:5e:00:00:01"}, http.StatusBadRequest, "multicast")
	h.mustFail(http.MethodPost, "machines/m1/networkInterfaces", map[string]any{"network": map[string]any{"href": isolated}, "macAddress": "52:54:00"}, http.StatusBadRequest, "not a MAC address")
	h.mustFail(http.MethodPost, "machines/nope/networkInterfaces", map[string]any{"network": map[string]any{"href": isolated}}, http.StatusNotFound, "Machine nope does not exist")
	r = h.do(http.MethodDelete, added, nil)
	if j := h.wait(r); j.State != job.Success {
		t.Fatalf("hot-remove: %v", j)
	}
	if d := h.drv.domains["dom-m1"]; len(d.live) != 2 || len(d.nics) != 2 {
		t.Fatalf("NICs after hot-remove: %+v", d)
	}

	// Releasing the Machine frees everything it held.
	if err := h.s.ReleaseMachine(t.Context(), "m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dev.Seed.Path); !os.IsNotExist(err) {
		t.Fatalf("seed still there: %v", err)
	}
	if hosts := h.drv.dhcpHosts(isoNet); len(hosts) != 0 {
		t.Fatalf("DHCP hosts after release: %+v", hosts)
	}
	if h.count(kindPorts) != 0 || h.count(kindMachineNets) != 0 {
		t.Fatal("ports or machine records left")
	}
	if r := h.do(http.MethodDelete, isolated, nil); h.wait(r).State != job.Success {
		t.Fatal("network delete after release failed")
	}
	// The lease of the removed interface stays in dnsmasq but is not shown
	// again; the unknown guest's lease is.
	h.s.sweep(t.Context())
	left := h.do(http.MethodGet, "addresses", nil).json(t)
	if left["count"] != float64(1) || left["addresses"].([]any)[0].(map[string]any)["ip"] != "10.231.0.151" {
		t.Fatalf("addresses after the Machine and its network went: %v", left)
	}
	// Once the lease is gone, the MAC is forgotten.
	h.drv.setLeases("cimid-inst-default")
	h.s.sweep(t.Context())
	if h.count(kindAddresses) != 0 || h.count(kindReleased) != 0 {
		t.Fatalf("%d addresses and %d released MACs left", h.count(kindAddresses), h.count(kindReleased))
	}
}

func TestMachineTemplateBadInput(t *testing.T) {
	h := newHarness(t)
	urls := api.URLsFor(httptest.NewRequest(http.MethodGet, "http://localhost/cimi/", nil))
	big := base64.StdEncoding.EncodeToString(make([]byte, MaxUserData+1))
	notB64 := "%%%"
	badGzip := base64.StdEncoding.EncodeToString([]byte("\x1f\x8b\x08\x00"))
	noBoundary := base64.StdEncoding.EncodeToString([]byte("MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n"))
	for name, c := range map[string]struct {
		in   TemplateInput
		want string
	}{
		"bad MAC":       {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{{Network: &cimi.Ref{Href: "networks/default"}, MACAddress: "zz"}}}, "not a MAC address"},
		"no network":    {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{{}}}, "network is required"},
		"unknown net":   {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{{Network: &cimi.Ref{Href: "networks/x"}}}}, "does not exist"},
		"bad model":     {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{{Network: &cimi.Ref{Href: "networks/default"}, Model: "ne2k"}}}, "model"},
		"bad key":       {TemplateInput{Credential: &cimi.CredentialInput{Key: "ssh-rsa AAAAB3"}}, "key"},
		"big userData":  {TemplateInput{UserData: &big}, "the limit is 65536"},
		"not base64":    {TemplateInput{UserData: &notB64}, "must be base64"},
		"broken gzip":   {TemplateInput{UserData: &badGzip}, "userData is gzip'd but does not decompress"},
		"no boundary":   {TemplateInput{UserData: &noBoundary}, "userData is a MIME multipart/mixed document without a boundary"},
		"duplicate MAC": {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{{Network: &cimi.Ref{Href: "networks/default"}, MACAddress: "52:54:00:00:00:01"}, {Network: &cimi.Ref{Href: "networks/default"}, MACAddress: "52:54:00:00:00:01"}}}, "given twice"},
	} {
		err := h.db.View(func(tx *store.Tx) error {
			_, err := h.s.ResolveTemplate(tx, urls, nil, c.in)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// No networkInterfaces: the default network; an empty list: none.
	for _, c := range []struct {
		in   TemplateInput
		nics int
	}{{TemplateInput{}, 1}, {TemplateInput{NetworkInterfaces: []cimi.MachineNetworkInterfaceInput{}}, 0}} {
		id := job.NewID()
		dev := h.machine(id, "", c.in)
		if len(dev.NICs) != c.nics || dev.Seed != nil {
			t.Errorf("template %+v: devices %+v", c.in, dev)
		}
	}
}
