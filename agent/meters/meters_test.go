package meters

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

type stubStats struct{ stats []hypervisor.DomainStats }

func (s *stubStats) AllDomainStats(context.Context) ([]hypervisor.DomainStats, error) {
	return s.stats, nil
}

func TestSamplesBecomeMeterValues(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs := job.NewRunner(db, log, job.Options{})
	drv := &stubStats{}
	s := New(Config{Instance: "inst", MachineExists: func(id string) bool { return id == "m1" }}, db, drv, jobs, log)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }

	// two samples 10 s apart; the second used 5 s of CPU on 1 vCPU: 50 %
	drv.stats = []hypervisor.DomainStats{
		{Name: "cimid-inst-m1", CPUTimeNs: 1e9, VCPUs: 1, MemoryKiB: 1024, DiskWriteBytes: 100},
		{Name: "cimid-other-m9", CPUTimeNs: 1},
		{Name: "foreign", CPUTimeNs: 1},
	}
	s.sample(context.Background())
	clock = clock.Add(10 * time.Second)
	drv.stats[0].CPUTimeNs, drv.stats[0].DiskWriteBytes = 6e9, 300
	s.sample(context.Background())

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
	s.sample(context.Background())
	if recs, _ := db.List(kindSamples); len(recs) != 1 {
		t.Fatalf("%d samples after the window passed, want 1", len(recs))
	}
}
