package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"cimid/hypervisor"
	"cimid/hypervisor/fake"
)

// TestOneUpdateRule PUTs to a resource of each family the agent serves:
// every one reads $select by the same rule.
func TestOneUpdateRule(t *testing.T) {
	dir := t.TempDir()
	drv := fake.New()
	t.Cleanup(func() { drv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Config{StateDir: dir, Socket: filepath.Join(dir, "s.sock"), DomainType: hypervisor.DomainQEMU}, drv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- a.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })
	c := unixClient(filepath.Join(dir, "s.sock"))
	put := func(path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://localhost/cimi/"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var doc map[string]any
		json.Unmarshal(b, &doc)
		return resp.StatusCode, doc
	}
	read := func(path string) map[string]any {
		t.Helper()
		code, _, body := get(t, c, "/cimi/"+path)
		var doc map[string]any
		if err := json.Unmarshal([]byte(body), &doc); code != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return doc
	}
	network := strings.TrimPrefix(read("networks")["networks"].([]any)[0].(map[string]any)["id"].(string), "http://localhost/cimi/")
	for _, path := range []string{"machineConfigs/small", "volumeConfigs/small", network} {
		before := read(path)
		// a $select naming nothing changes nothing
		if code, doc := put(path+"?$select=", "{}"); code != http.StatusOK {
			t.Errorf("%s: PUT ?$select= {}: %d %v", path, code, doc)
		}
		if after := read(path); after["name"] != before["name"] || after["description"] != before["description"] {
			t.Errorf("%s: PUT ?$select= changed it: %v, was %v", path, after, before)
		}
		// a name trimmed, as on create
		if code, doc := put(path+"?$select=name", `{"name": "  renamed  "}`); code != http.StatusOK || read(path)["name"] != "renamed" {
			t.Errorf("%s: PUT of a spaced name: %d %v, name %q", path, code, doc, read(path)["name"])
		}
		// a $select that cannot apply is refused before the resource is looked up
		missing := path[:strings.LastIndex(path, "/")+1] + "missing"
		if code, doc := put(missing+"?$select=state", "{}"); code != http.StatusBadRequest {
			t.Errorf("%s: PUT ?$select=state: %d %v, want 400", missing, code, doc)
		}
	}
}
