package domstats_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cimid/agent/domstats"
	"cimid/agent/job"
	"cimid/agent/meters"
	"cimid/agent/metrics"
	"cimid/hypervisor"
	"cimid/hypervisor/fake"
	"cimid/store"
)

// TestMetersAndMetricsShareOneBulkCall wires the Meters and the Prometheus
// host metrics to one poller of the fake hypervisor, as the agent does,
// and counts the hypervisor's bulk statistics calls: exactly one per
// reading, though both consumers are fed.
func TestMetersAndMetricsShareOneBulkCall(t *testing.T) {
	ctx := t.Context()
	drv := fake.New()
	defer drv.Close()
	spec := hypervisor.DomainSpec{Name: "cimid-inst-m1", Type: hypervisor.DomainQEMU, VCPUs: 1, MemoryKiB: 131072,
		Metadata: hypervisor.Metadata{Instance: "inst", MachineID: "m1", DesiredState: "STARTED"}}
	if err := drv.DefineDomain(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := drv.Start(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := meters.New(meters.Config{Instance: "inst", Interval: 60 * time.Millisecond}, db, job.NewRunner(db, log, job.Options{}), log)
	reg := metrics.NewRegistry()
	host := metrics.NewHost(reg, func(d string) (string, bool) { return strings.CutPrefix(d, "cimid-inst-") }, log)

	p := domstats.New(drv)
	const readings = 12
	var mu sync.Mutex
	var hostReadings, meterReadings int
	runCtx, stop := context.WithCancel(ctx)
	p.Subscribe(20*time.Millisecond, func(s domstats.Snapshot) {
		host.Observe(s)
		mu.Lock()
		defer mu.Unlock()
		if hostReadings++; hostReadings == readings {
			stop()
		}
	})
	p.Subscribe(m.Interval(), func(s domstats.Snapshot) {
		m.Observe(s)
		mu.Lock()
		defer mu.Unlock()
		meterReadings++
	})
	if p.Interval() != 20*time.Millisecond {
		t.Fatalf("poll interval %v, want the stricter 20ms", p.Interval())
	}
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no 12 readings within 30 s")
	}

	if calls := drv.StatsCalls(); calls != readings {
		t.Errorf("%d bulk statistics calls for %d readings, want one each", calls, readings)
	}
	// The meters take every third reading or so (60 ms of 20 ms ticks).
	if meterReadings < 2 || meterReadings > readings/2 {
		t.Errorf("meters got %d of %d readings, want about every third", meterReadings, readings)
	}
	samples, err := db.List("samples")
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != meterReadings {
		t.Errorf("%d samples stored from %d readings", len(samples), meterReadings)
	}
	var buf bytes.Buffer
	if err := reg.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `cimid_machine_vcpus{machine="m1"} 1`) || !strings.Contains(buf.String(), "cimid_libvirt_connected 1") {
		t.Errorf("the metrics do not show the reading:\n%s", buf.String())
	}
}
