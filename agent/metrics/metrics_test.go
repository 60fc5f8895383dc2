package metrics

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"cimid/agent/domstats"
	"cimid/hypervisor"
)

// Parse reads an exposition with Prometheus' own text parser.
func Parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
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

func TestExposition(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("test_requests_total", "Requests.\nSecond line with \\ backslash.", "route", "code")
	g := r.Gauge("test_temperature", "A gauge.")
	h := r.Histogram("test_seconds", "A histogram.", []float64{0.1, 1}, "op")
	r.GaugeFunc("test_func", "Computed.", func() float64 { return 42 })
	r.Counter("test_empty_total", "Never used.")
	c.Inc("/cimi/machines/{id}", "200")
	c.Add(2, `quote " and \ and`+"\nnewline", "500")
	g.Set(-1.5)
	h.Observe(0.05, "a")
	h.Observe(0.5, "a")
	h.Observe(5, "a")

	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	fams := Parse(t, buf.Bytes())
	if v, _ := value(t, fams, "test_requests_total", "route", "/cimi/machines/{id}"); v != 1 {
		t.Errorf("counter = %v", v)
	}
	if v, ok := value(t, fams, "test_requests_total", "route", `quote " and \ and`+"\nnewline"); !ok || v != 2 {
		t.Errorf("escaped label value lost: %v %v\n%s", v, ok, buf.String())
	}
	if v, _ := value(t, fams, "test_temperature"); v != -1.5 {
		t.Errorf("gauge = %v", v)
	}
	if v, _ := value(t, fams, "test_func"); v != 42 {
		t.Errorf("gauge func = %v", v)
	}
	hist := fams["test_seconds"].Metric[0].Histogram
	if hist.GetSampleCount() != 3 || hist.GetSampleSum() != 5.55 {
		t.Errorf("histogram count/sum = %d/%v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	wantCum := []uint64{1, 2, 3} // the parser keeps the +Inf bucket
	for i, b := range hist.Bucket {
		if b.GetCumulativeCount() != wantCum[i] {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), wantCum[i])
		}
	}
	if fams["test_requests_total"].GetHelp() != "Requests.\nSecond line with \\ backslash." {
		t.Errorf("help = %q", fams["test_requests_total"].GetHelp())
	}
}

func TestAPIMiddleware(t *testing.T) {
	r := NewRegistry()
	api := NewAPI(r, func(req *http.Request) string { return "unmatched" })
	h := api.Middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPatch {
			NameRoute(req, "/cimi/machines/{id}") // as the router that matched it does
			NameRoute(req, "/cimi/other/{id}")    // a route that served part of it
		}
		if req.Method == http.MethodDelete {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.(http.Flusher).Flush() // streaming passes through
		io.WriteString(w, "ok")
	}))
	for _, m := range []string{"GET", "GET", "DELETE", "BREW", "PATCH"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/cimi/machines/1", nil))
	}
	var buf bytes.Buffer
	r.WriteText(&buf)
	fams := Parse(t, buf.Bytes())
	for _, tc := range []struct {
		method, code string
		want         float64
	}{{"GET", "200", 2}, {"DELETE", "409", 1}, {"other", "200", 1}} {
		if v, _ := value(t, fams, "cimid_http_requests_total", "method", tc.method, "code", tc.code, "route", "/cimi/machines/{id}"); v != tc.want {
			t.Errorf("%s %s on the named route: %v, want %v", tc.method, tc.code, v, tc.want)
		}
		if v, _ := value(t, fams, "cimid_http_requests_total", "method", tc.method, "code", tc.code); v != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.method, tc.code, v, tc.want)
		}
		if v, _ := value(t, fams, "cimid_http_request_duration_seconds", "method", tc.method, "code", tc.code); v != tc.want {
			t.Errorf("duration count %s %s: %v, want %v", tc.method, tc.code, v, tc.want)
		}
	}
	if v, _ := value(t, fams, "cimid_http_requests_total", "method", "PATCH", "route", "unmatched"); v != 1 {
		t.Errorf("a request no router named: %v, want 1 under the fallback's name", v)
	}
}

func TestHost(t *testing.T) {
	stats := []hypervisor.DomainStats{
		{Name: "cimid-abc-m1", CPUTimeNs: 2_500_000_000, VCPUs: 2, MemoryKiB: 1024, MemoryUsedKiB: 512, DiskReadBytes: 10, DiskWriteBytes: 20, NetRxBytes: 30, NetTxBytes: 40},
		{Name: "someone-else", CPUTimeNs: 1},
	}
	r := NewRegistry()
	machineOf := func(d string) (string, bool) { return strings.CutPrefix(d, "cimid-abc-") }
	h := NewHost(r, machineOf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	scrape := func() map[string]*dto.MetricFamily {
		var buf bytes.Buffer
		r.WriteText(&buf)
		return Parse(t, buf.Bytes())
	}
	if _, known := h.Connected(); known {
		t.Fatal("connection known before the first reading")
	}
	at := time.Unix(1_700_000_000, 0)
	h.Observe(domstats.Snapshot{At: at, Up: true, Stats: stats, Took: 20 * time.Millisecond})
	fams := scrape()
	for _, tc := range []struct {
		name string
		want float64
	}{
		{"cimid_machine_cpu_seconds_total", 2.5}, {"cimid_machine_vcpus", 2}, {"cimid_machine_memory_bytes", 1024 * 1024},
		{"cimid_machine_memory_used_bytes", 512 * 1024}, {"cimid_machine_disk_read_bytes_total", 10},
		{"cimid_machine_disk_written_bytes_total", 20}, {"cimid_machine_network_receive_bytes_total", 30},
		{"cimid_machine_network_transmit_bytes_total", 40},
	} {
		if v, ok := value(t, fams, tc.name, "machine", "m1"); !ok || v != tc.want {
			t.Errorf("%s = %v (%v), want %v", tc.name, v, ok, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		want float64
	}{
		{"cimid_machines_running", 1}, {"cimid_libvirt_stats_duration_seconds", 1}, {"cimid_libvirt_last_check_timestamp_seconds", 1_700_000_000},
	} {
		if v, ok := value(t, fams, tc.name); !ok || v != tc.want {
			t.Errorf("%s = %v (%v), want %v", tc.name, v, ok, tc.want)
		}
	}
	if len(fams["cimid_machine_cpu_seconds_total"].Metric) != 1 {
		t.Error("a foreign domain shows up in the machine metrics")
	}
	if v, _ := value(t, fams, "cimid_libvirt_connected"); v != 1 {
		t.Errorf("connected = %v", v)
	}

	// Bulk statistics failing: connection still up, machine series gone.
	h.Observe(domstats.Snapshot{At: at, Up: true, Err: errors.New("not implemented")})
	fams = scrape()
	if _, ok := value(t, fams, "cimid_machine_cpu_seconds_total", "machine", "m1"); ok {
		t.Error("stale machine series after a failed bulk call")
	}
	if v, _ := value(t, fams, "cimid_libvirt_stats_errors_total", "reason", "error"); v != 1 {
		t.Errorf("stats errors = %v", v)
	}
	if up, _ := h.Connected(); !up {
		t.Error("a failed bulk call shows libvirt as not answering")
	}

	// libvirt gone: not connected, no machine series, no bulk call counted.
	h.Observe(domstats.Snapshot{At: at, Up: true, Stats: stats})
	h.Observe(domstats.Snapshot{At: at, Err: hypervisor.ErrUnavailable})
	if up, known := h.Connected(); up || !known {
		t.Errorf("connected = %v, known = %v", up, known)
	}
	fams = scrape()
	if v, _ := value(t, fams, "cimid_libvirt_connected"); v != 0 {
		t.Errorf("connected gauge = %v", v)
	}
	if _, ok := value(t, fams, "cimid_machine_cpu_seconds_total", "machine", "m1"); ok {
		t.Error("machine series kept while libvirt does not answer")
	}
	if v, _ := value(t, fams, "cimid_libvirt_stats_errors_total", "reason", "unavailable"); v != 0 {
		t.Errorf("a failed check counted as a failed bulk call: %v", v)
	}
}
