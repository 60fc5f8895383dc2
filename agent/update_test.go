package agent_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cimid/agent"
	"cimid/agent/agenttest"
	"cimid/hypervisor/fake"
)

// TestOneUpdateRule PUTs to a resource of each family the agent serves:
// every one reads $select by the same rule.
func TestOneUpdateRule(t *testing.T) {
	drv := fake.New()
	t.Cleanup(func() { drv.Close() })
	h, _ := agenttest.Start(t, agent.Config{StateDir: t.TempDir()}, drv, nil)
	put := func(path, body string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPut, "http://localhost/cimi/"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var doc map[string]any
		json.Unmarshal(rec.Body.Bytes(), &doc)
		return rec.Code, doc
	}
	read := func(path string) map[string]any {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost/cimi/"+path, nil))
		var doc map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); rec.Code != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
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
