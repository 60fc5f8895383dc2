package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cimid/hypervisor"
	"cimid/hypervisor/fake"
)

// heldDriver holds the agent's start at its storage pool until release is
// closed.
type heldDriver struct {
	*fake.Driver
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (d *heldDriver) EnsurePool(ctx context.Context, name, dir string) error {
	d.once.Do(func() { close(d.reached) })
	select {
	case <-d.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.Driver.EnsurePool(ctx, name, dir)
}

var _ hypervisor.Driver = (*heldDriver)(nil)

func unixClient(socket string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func get(t *testing.T, c *http.Client, path string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://localhost"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestStartOrder runs an agent on the fake hypervisor and holds its start
// while it prepares storage: the socket is bound and answers already, the
// API with 503 and a CIMI error, /readyz with 503 and /healthz with 200; a
// second agent on the same state directory is refused; once the start
// ends, ready is called and the API serves. When Run returns, the socket
// and the state directory are free again.
func TestStartOrder(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "cimid.sock"), DrainTimeout: 5 * time.Second}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	drv := &heldDriver{Driver: fake.New(), reached: make(chan struct{}), release: make(chan struct{})}
	defer drv.Close()
	a, err := New(t.Context(), cfg, drv, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	readyc := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, func() { close(readyc) }) }()
	<-drv.reached

	c := unixClient(cfg.Socket)
	code, h, body := get(t, c, "/cimi/cloudEntryPoint")
	var doc struct {
		ResourceURI   string `json:"resourceURI"`
		State         string `json:"state"`
		ReturnCode    int    `json:"returnCode"`
		StatusMessage string `json:"statusMessage"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" ||
		doc.ReturnCode != 503 || doc.State != "FAILED" || !strings.Contains(doc.StatusMessage, "starting") {
		t.Fatalf("API while starting: %d %v %s", code, h, body)
	}
	if code, h, body := get(t, c, "/cimi/machines", "Accept", "application/xml"); code != http.StatusServiceUnavailable ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/xml") || !strings.Contains(body, "starting") {
		t.Fatalf("API in XML while starting: %d %v %s", code, h, body)
	}
	if code, _, body := get(t, c, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz while starting: %d %s", code, body)
	}
	if code, _, _ := get(t, c, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while starting: %d", code)
	}
	other := cfg
	other.Socket = filepath.Join(dir, "other.sock")
	drv2 := fake.New()
	defer drv2.Close()
	if _, err := New(t.Context(), other, drv2, log); err == nil || !strings.Contains(err.Error(), "in use by another running cimid") {
		t.Fatalf("a second agent on the state directory: %v", err)
	}
	if _, err := os.Stat(other.Socket); !os.IsNotExist(err) {
		t.Fatalf("the refused agent left its socket: %v", err)
	}
	select {
	case <-readyc:
		t.Fatal("ready before the start ended")
	default:
	}

	close(drv.release)
	select {
	case <-readyc:
	case err := <-done:
		t.Fatalf("Run ended during the start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready 10 s after the start was released")
	}
	if code, _, body := get(t, c, "/cimi/cloudEntryPoint"); code != http.StatusOK {
		t.Fatalf("API once ready: %d %s", code, body)
	}
	if code, _, body := get(t, c, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz once ready: %d %s", code, body)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(cfg.Socket); !os.IsNotExist(err) {
		t.Fatalf("the socket is left after Run: %v", err)
	}
	again, err := New(t.Context(), cfg, drv2, log)
	if err != nil {
		t.Fatalf("a new agent on the state directory after Run: %v", err)
	}
	again.release()
}
