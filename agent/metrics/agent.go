package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"cimid/agent/domstats"
	"cimid/hypervisor"
)

// API measures HTTP requests.
type API struct {
	requests *Counter
	duration *Histogram
	inFlight *Gauge
	// route names the route template of a request that the router that
	// answered it did not name (see NameRoute).
	route func(*http.Request) string
}

// routeSlot holds the route template a router named for a request.
type routeSlot struct{ template string }

type routeSlotKey struct{}

// NameRoute records, for the measurement of r, the template of the route
// (such as "/cimi/machines/{id}") that matched it. The router that matched
// the request names it, so that it is not matched a second time here. The
// first name counts: a request served in part by another route (such as
// a create answered with the new resource) keeps its own.
func NameRoute(r *http.Request, template string) {
	if slot, ok := r.Context().Value(routeSlotKey{}).(*routeSlot); ok && slot.template == "" {
		slot.template = template
	}
}

// NewAPI registers the API families. Requests are labelled with their
// route template, keeping label values few: the one NameRoute recorded,
// else the one route finds.
func NewAPI(r *Registry, route func(*http.Request) string) *API {
	return &API{
		requests: r.Counter("cimid_http_requests_total", "API requests answered, by method, route template and status code.", "method", "route", "code"),
		duration: r.Histogram("cimid_http_request_duration_seconds", "Time to answer API requests, by method, route template and status code.",
			DurationBuckets, "method", "route", "code"),
		inFlight: r.Gauge("cimid_http_requests_in_flight", "API requests being answered."),
		route:    route,
	}
}

// Middleware measures every request next answers.
func (a *API) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		slot := &routeSlot{}
		r = r.WithContext(context.WithValue(r.Context(), routeSlotKey{}, slot))
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
		default:
			method = "other"
		}
		a.inFlight.Add(1)
		rec := &recorder{ResponseWriter: w}
		defer func() {
			a.inFlight.Add(-1)
			route := slot.template
			if route == "" {
				route = a.route(r)
			}
			code := strconv.Itoa(rec.code())
			a.requests.Inc(method, route, code)
			a.duration.Observe(time.Since(start).Seconds(), method, route, code)
		}()
		next.ServeHTTP(rec, r)
	})
}

// recorder remembers the status written and passes streaming through.
type recorder struct {
	http.ResponseWriter
	status int
}

func (s *recorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *recorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *recorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *recorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *recorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Jobs measures Jobs that ended.
type Jobs struct {
	ended    *Counter
	duration *Histogram
}

// NewJobs registers the Job families.
func NewJobs(r *Registry) *Jobs {
	return &Jobs{
		ended: r.Counter("cimid_jobs_total", "Jobs that ended, by action (the Job kind, e.g. machine.start) and outcome (SUCCESS, FAILED, STOPPED).",
			"action", "outcome"),
		duration: r.Histogram("cimid_job_duration_seconds", "Time from a Job's creation to its end, by action and outcome.",
			DurationBuckets, "action", "outcome"),
	}
}

// Ended records one Job outcome.
func (j *Jobs) Ended(action, outcome string, d time.Duration) {
	j.ended.Inc(action, outcome)
	j.duration.Observe(max(d, 0).Seconds(), action, outcome)
}

// Process registers facts about the agent process itself.
func Process(r *Registry, version string, started time.Time) {
	info := r.Gauge("cimid_build_info", "Always 1; the labels say which build runs.", "version", "goversion")
	info.Set(1, version, runtime.Version())
	r.GaugeFunc("cimid_start_time_seconds", "When the agent process started (Unix time).", func() float64 {
		return float64(started.UnixNano()) / 1e9
	})
	r.GaugeFunc("cimid_goroutines", "Goroutines of the agent process.", func() float64 { return float64(runtime.NumGoroutine()) })
}

// Host shows what the statistics poller (agent/domstats) read: whether
// the hypervisor answers, and the counters of every running machine.
// Scrapes read what the last reading saw; they never call the hypervisor.
type Host struct {
	machineOf func(domain string) (string, bool)
	log       *slog.Logger

	connected   *Gauge
	lastPoll    *Gauge
	pollErrors  *Counter
	pollSeconds *Histogram
	cpu         *Counter
	vcpus       *Gauge
	memory      *Gauge
	memoryUsed  *Gauge
	diskRead    *Counter
	diskWrite   *Counter
	netRx       *Counter
	netTx       *Counter
	machines    *Gauge

	mu       sync.Mutex
	polled   bool
	up       bool
	statsErr error
}

// NewHost registers the host families. machineOf maps a domain name to the
// Machine id it belongs to (false for domains that are not this agent's).
func NewHost(r *Registry, machineOf func(string) (string, bool), log *slog.Logger) *Host {
	m := []string{"machine"}
	return &Host{
		machineOf: machineOf, log: log,
		connected:   r.Gauge("cimid_libvirt_connected", "1 when libvirt answered the last check, 0 when it did not."),
		lastPoll:    r.Gauge("cimid_libvirt_last_check_timestamp_seconds", "When libvirt was last checked (Unix time)."),
		pollErrors:  r.Counter("cimid_libvirt_stats_errors_total", "Bulk statistics calls that failed (the machine series are then absent).", "reason"),
		pollSeconds: r.Histogram("cimid_libvirt_stats_duration_seconds", "Time of the bulk statistics call.", DurationBuckets),
		machines:    r.Gauge("cimid_machines_running", "Running or paused Machines seen by the last bulk statistics call."),
		cpu:         r.Counter("cimid_machine_cpu_seconds_total", "Guest CPU time used, by Machine id.", m...),
		vcpus:       r.Gauge("cimid_machine_vcpus", "Online virtual CPUs, by Machine id.", m...),
		memory:      r.Gauge("cimid_machine_memory_bytes", "Memory given to the guest (balloon), by Machine id.", m...),
		memoryUsed:  r.Gauge("cimid_machine_memory_used_bytes", "Memory the guest reports in use (absent when it does not report), by Machine id.", m...),
		diskRead:    r.Counter("cimid_machine_disk_read_bytes_total", "Bytes read from all disks, by Machine id.", m...),
		diskWrite:   r.Counter("cimid_machine_disk_written_bytes_total", "Bytes written to all disks, by Machine id.", m...),
		netRx:       r.Counter("cimid_machine_network_receive_bytes_total", "Bytes received on all interfaces, by Machine id.", m...),
		netTx:       r.Counter("cimid_machine_network_transmit_bytes_total", "Bytes sent on all interfaces, by Machine id.", m...),
	}
}

// Connected reports what the last reading saw; known is false before the
// first.
func (h *Host) Connected() (up, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up, h.polled
}

// Observe takes one reading of the statistics poller. It is meant to be
// subscribed to the poller and called from one goroutine.
func (h *Host) Observe(snap domstats.Snapshot) {
	h.lastPoll.Set(float64(snap.At.UnixNano()) / 1e9)
	h.setConnected(snap.Up)
	if !snap.Up {
		h.clearMachines()
		return
	}
	h.pollSeconds.Observe(snap.Took.Seconds())
	h.mu.Lock()
	prev := h.statsErr
	h.statsErr = snap.Err
	h.mu.Unlock()
	if err := snap.Err; err != nil {
		reason := "error"
		if errors.Is(err, hypervisor.ErrUnavailable) {
			reason = "unavailable"
		}
		h.pollErrors.Inc(reason)
		h.clearMachines()
		if prev == nil {
			h.log.Warn("per-machine metrics unavailable: bulk statistics failed", "err", err)
		}
		return
	}
	if prev != nil {
		h.log.Info("per-machine metrics available again")
	}
	cpu, vcpus, mem, memUsed := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	rd, wr, rx, tx := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, s := range snap.Stats {
		id, ok := h.machineOf(s.Name)
		if !ok {
			continue
		}
		cpu[id] = float64(s.CPUTimeNs) / 1e9
		vcpus[id] = float64(s.VCPUs)
		mem[id] = float64(s.MemoryKiB) * 1024
		if s.MemoryUsedKiB > 0 {
			memUsed[id] = float64(s.MemoryUsedKiB) * 1024
		}
		rd[id], wr[id] = float64(s.DiskReadBytes), float64(s.DiskWriteBytes)
		rx[id], tx[id] = float64(s.NetRxBytes), float64(s.NetTxBytes)
	}
	h.cpu.SetAll(cpu)
	h.vcpus.SetAll(vcpus)
	h.memory.SetAll(mem)
	h.memoryUsed.SetAll(memUsed)
	h.diskRead.SetAll(rd)
	h.diskWrite.SetAll(wr)
	h.netRx.SetAll(rx)
	h.netTx.SetAll(tx)
	h.machines.Set(float64(len(cpu)))
}

func (h *Host) setConnected(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	h.connected.Set(v)
	h.mu.Lock()
	was, polled := h.up, h.polled
	h.up, h.polled = up, true
	h.mu.Unlock()
	switch {
	case polled && was && !up:
		h.log.Warn("libvirt does not answer")
	case polled && !was && up:
		h.log.Info("libvirt answers again")
	}
}

func (h *Host) clearMachines() {
	for _, c := range []*Counter{h.cpu, h.diskRead, h.diskWrite, h.netRx, h.netTx} {
		c.Reset()
	}
	for _, g := range []*Gauge{h.vcpus, h.memory, h.memoryUsed} {
		g.Reset()
	}
	h.machines.Set(0)
}
