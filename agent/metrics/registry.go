// Package metrics keeps the agent's measurements and serves them in the
// Prometheus text exposition format (version 0.0.4): API requests by route
// and status, Jobs by action and outcome, the libvirt connection, and the
// per-machine counters read by the shared statistics poller (agent/domstats).
//
// A Registry is an ordinary value owned by the agent; there is no global
// registry. Families are counters, gauges and histograms with fixed label
// names; series are created on first use.
package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry holds metric families in registration order.
type Registry struct {
	mu       sync.Mutex
	families []*family
	names    map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

type kind string

const (
	counterKind   kind = "counter"
	gaugeKind     kind = "gauge"
	histogramKind kind = "histogram"
)

type family struct {
	name    string
	help    string
	kind    kind
	labels  []string
	buckets []float64
	fn      func() float64 // gauge computed at scrape time

	mu     sync.Mutex
	series map[string]*series
}

type series struct {
	values []string
	value  float64
	counts []uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
}

func (r *Registry) register(f *family) *family {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[f.name] {
		panic("metric " + f.name + " registered twice")
	}
	for _, l := range f.labels {
		if l == "le" || !validName(l) {
			panic("metric " + f.name + ": bad label name " + l)
		}
	}
	if !validName(f.name) {
		panic("bad metric name " + f.name)
	}
	r.names[f.name] = true
	f.series = map[string]*series{}
	r.families = append(r.families, f)
	return f
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || c == ':' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// Counter is a family of monotonically increasing values.
type Counter struct{ f *family }

// Gauge is a family of values that go up and down.
type Gauge struct{ f *family }

// Histogram is a family of observed value distributions.
type Histogram struct{ f *family }

// Counter registers a counter family; its name should end in _total.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return &Counter{r.register(&family{name: name, help: help, kind: counterKind, labels: labels})}
}

// Gauge registers a gauge family.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return &Gauge{r.register(&family{name: name, help: help, kind: gaugeKind, labels: labels})}
}

// GaugeFunc registers an unlabelled gauge read from fn at every scrape.
func (r *Registry) GaugeFunc(name, help string, fn func() float64) {
	r.register(&family{name: name, help: help, kind: gaugeKind, fn: fn})
}

// Histogram registers a histogram family with the given upper bounds.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *Histogram {
	b := slices.Clone(buckets)
	slices.Sort(b)
	return &Histogram{r.register(&family{name: name, help: help, kind: histogramKind, labels: labels, buckets: b})}
}

// DurationBuckets suit request and job durations in seconds.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

func (f *family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metric %s takes %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	k := strings.Join(values, "\xff")
	s := f.series[k]
	if s == nil {
		s = &series{values: slices.Clone(values)}
		if f.kind == histogramKind {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[k] = s
	}
	return s
}

// Add adds v (>= 0) to the series with the given label values.
func (c *Counter) Add(v float64, values ...string) {
	if v < 0 {
		panic("counter " + c.f.name + " cannot decrease")
	}
	c.f.mu.Lock()
	c.f.get(values).value += v
	c.f.mu.Unlock()
}

// Inc adds 1.
func (c *Counter) Inc(values ...string) { c.Add(1, values...) }

// Set mirrors a counter kept elsewhere (such as a guest's CPU time).
func (c *Counter) Set(v float64, values ...string) {
	c.f.mu.Lock()
	c.f.get(values).value = v
	c.f.mu.Unlock()
}

// Reset drops every series (for families mirrored wholesale).
func (c *Counter) Reset() { c.f.reset() }

// Set sets the series' value.
func (g *Gauge) Set(v float64, values ...string) {
	g.f.mu.Lock()
	g.f.get(values).value = v
	g.f.mu.Unlock()
}

// Add adds v (possibly negative).
func (g *Gauge) Add(v float64, values ...string) {
	g.f.mu.Lock()
	g.f.get(values).value += v
	g.f.mu.Unlock()
}

// Reset drops every series.
func (g *Gauge) Reset() { g.f.reset() }

// Observe records one value.
func (h *Histogram) Observe(v float64, values ...string) {
	h.f.mu.Lock()
	s := h.f.get(values)
	if i, _ := slices.BinarySearch(h.f.buckets, v); i < len(h.f.buckets) {
		s.counts[i]++
	}
	s.sum += v
	s.count++
	h.f.mu.Unlock()
}

// SetAll replaces every series of a one-label family at once, so that a
// scrape sees either the old set or the new one.
func (c *Counter) SetAll(byLabel map[string]float64) { c.f.replace(byLabel) }

// SetAll replaces every series of a one-label family at once.
func (g *Gauge) SetAll(byLabel map[string]float64) { g.f.replace(byLabel) }

func (f *family) replace(byLabel map[string]float64) {
	if len(f.labels) != 1 {
		panic("metric " + f.name + ": SetAll needs exactly one label")
	}
	m := make(map[string]*series, len(byLabel))
	for k, v := range byLabel {
		m[k] = &series{values: []string{k}, value: v}
	}
	f.mu.Lock()
	f.series = m
	f.mu.Unlock()
}

func (f *family) reset() {
	f.mu.Lock()
	f.series = map[string]*series{}
	f.mu.Unlock()
}

// WriteText writes every family in the text exposition format.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := slices.Clone(r.families)
	r.mu.Unlock()
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		f.write(bw)
	}
	return bw.Flush()
}

func (f *family) write(w *bufio.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n", f.name, escapeHelp(f.help))
	fmt.Fprintf(w, "# TYPE %s %s\n", f.name, f.kind)
	if f.fn != nil {
		fmt.Fprintf(w, "%s %s\n", f.name, formatFloat(f.fn()))
		return
	}
	f.mu.Lock()
	list := make([]*series, 0, len(f.series))
	for _, s := range f.series {
		c := *s
		c.counts = slices.Clone(s.counts)
		list = append(list, &c)
	}
	f.mu.Unlock()
	slices.SortFunc(list, func(a, b *series) int { return slices.Compare(a.values, b.values) })
	for _, s := range list {
		if f.kind != histogramKind {
			fmt.Fprintf(w, "%s%s %s\n", f.name, labelText(f.labels, s.values, "", ""), formatFloat(s.value))
			continue
		}
		var cum uint64
		for i, ub := range f.buckets {
			cum += s.counts[i]
			fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.values, "le", formatFloat(ub)), cum)
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", f.name, labelText(f.labels, s.values, "le", "+Inf"), s.count)
		fmt.Fprintf(w, "%s_sum%s %s\n", f.name, labelText(f.labels, s.values, "", ""), formatFloat(s.sum))
		fmt.Fprintf(w, "%s_count%s %d\n", f.name, labelText(f.labels, s.values, "", ""), s.count)
	}
}

func labelText(names, values []string, extraName, extraValue string) string {
	if len(names) == 0 && extraName == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName + `="` + extraValue + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the registry.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "only GET and HEAD are allowed on /metrics", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if req.Method == http.MethodHead {
			return
		}
		_ = r.WriteText(w)
	})
}
