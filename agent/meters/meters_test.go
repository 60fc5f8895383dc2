package meters

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/domstats"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

func TestSamplesBecomeMeterValues(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs := job.NewRunner(db, log, job.Options{})
	s := New(Config{Instance: "inst", MachineExists: func(id string) bool { return id == "m1" }}, db, jobs, log)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	observe := func(stats ...hypervisor.DomainStats) {
		s.Observe(domstats.Snapshot{At: clock, Up: true, Stats: stats})
	}

	// two samples 10 s apart; the second used 5 s of CPU on 1 vCPU: 50 %
	others := []hypervisor.DomainStats{{Name: "cimid-other-m9", CPUTimeNs: 1}, {Name: "foreign", CPUTimeNs: 1}}
	observe(append([]hypervisor.DomainStats{{Name: "cimid-inst-m1", CPUTimeNs: 1e9, VCPUs: 1, MemoryKiB: 1024, DiskWriteBytes: 100}}, others...)...)
	clock = clock.Add(10 * time.Second)
	observe(append([]hypervisor.DomainStats{{Name: "cimid-inst-m1", CPUTimeNs: 6e9, VCPUs: 1, MemoryKiB: 1024, DiskWriteBytes: 300}}, others...)...)
	// a reading without statistics (libvirt down, or the bulk call failed)
	// stores nothing
	clock = clock.Add(5 * time.Second)
	s.Observe(domstats.Snapshot{At: clock, Err: errors.New("libvirt does not answer")})
	s.Observe(domstats.Snapshot{At: clock, Up: true, Err: errors.New("bulk call failed")})

	srv := api.NewServer(log, s.Routes())
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	create := func(config string) string {
		r := do("POST", "/cimi/meters", `{"meterTemplate":{"targetResource":{"href":"http://example.com/cimi/machines/m1"},"meterConfig":{"href":"meterConfigs/`+config+`"}}}`)
		if r.Code != http.StatusCreated {
			t.Fatalf("create %s meter: %d %s", config, r.Code, r.Body)
		}
		return r.Header().Get("Location")
	}
	for config, want := range map[string]float64{"cpu": 50, "diskWrite": 300} {
		loc := create(config)
		r := do("GET", strings.TrimPrefix(loc, "http://example.com")+"/samples", "")
		var coll struct {
			Count   int `json:"count"`
			Samples []struct {
				Value float64 `json:"value"`
			} `json:"samples"`
		}
		if err := json.Unmarshal(r.Body.Bytes(), &coll); err != nil || coll.Count != 1 || coll.Samples[0].Value != want {
			t.Fatalf("%s samples: %s", config, r.Body)
		}
	}
	if r := do("POST", "/cimi/meters", `{"meterTemplate":{"targetResource":{"href":"machines/nope"},"meterConfig":{"href":"meterConfigs/cpu"}}}`); r.Code != 400 {
		t.Fatalf("meter of an unknown machine: %d", r.Code)
	}
	if r := do("POST", "/cimi/meters", `{"meterTemplate":{"targetResource":{"href":"machines/m1"},"meterConfig":{"href":"meterConfigs/warp"}}}`); r.Code != 400 {
		t.Fatalf("meter of an unknown config: %d", r.Code)
	}
	// samples of other instances and foreign domains are not kept
	recs, _ := db.List(kindSamples)
	for _, r := range recs {
		if !strings.HasPrefix(r.ID, "m1/") {
			t.Fatalf("stored a sample of %s", r.ID)
		}
	}
	// samples older than the window are pruned at the next sample
	clock = clock.Add(2 * time.Hour)
	observe(hypervisor.DomainStats{Name: "cimid-inst-m1", CPUTimeNs: 7e9, VCPUs: 1})
	if recs, _ := db.List(kindSamples); len(recs) != 1 {
		t.Fatalf("%d samples after the window passed, want 1", len(recs))
	}
}
