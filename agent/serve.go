package agent

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"cimid/agent/api"
	"cimid/agent/authn"
	"cimid/agent/job"
	"cimid/agent/logctx"
	"cimid/agent/metrics"
)

// What the listeners serve in front of the CIMI API: request ids and the
// access log, request metrics, authentication and the audit trail, and
// the operational endpoints /metrics, /healthz and /readyz.

// prepareFrontDoor sets up what New needs before the services exist:
// metrics (the Job runner reports to them), authentication and the audit
// trail. The TLS certificate was loaded with the listeners (listen.go).
func (a *Agent) prepareFrontDoor() error {
	a.metrics = metrics.NewRegistry()
	metrics.Process(a.metrics, a.cfg.Version, a.started)
	a.jobMetrics = metrics.NewJobs(a.metrics)
	a.metrics.GaugeFunc("cimid_ready", "1 while the agent is ready to serve (reconciled, libvirt answering, not stopping).", func() float64 {
		if ok, _ := a.readiness(); ok {
			return 1
		}
		return 0
	})
	audit, err := authn.OpenAudit(a.cfg.AuditLog, a.log)
	if err != nil {
		return err
	}
	a.audit = audit
	a.authn = authn.New(authn.Options{Dir: filepath.Join(a.cfg.StateDir, "authn"), SocketGID: a.socketGID, Audit: audit})
	return nil
}

// statsInterval is how often the host metrics want a reading of the
// statistics poller, and so how often libvirt's health is checked.
func (a *Agent) statsInterval() time.Duration {
	if a.cfg.StatsInterval <= 0 {
		return 15 * time.Second
	}
	return a.cfg.StatsInterval
}

// buildFrontDoor wraps the API with everything the listeners add.
func (a *Agent) buildFrontDoor(routes [][]api.Route) {
	a.host = metrics.NewHost(a.metrics, a.machineOfDomain, a.log.With("component", "metrics"))
	apiMetrics := metrics.NewAPI(a.metrics, routeNamer(routes))
	mx := http.NewServeMux()
	mx.Handle("GET /metrics", a.metrics.Handler())
	mx.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mx.HandleFunc("GET /readyz", a.serveReadyz)
	mx.Handle("/", a.untilReady(a.handler))
	a.front = a.requestLog(apiMetrics.Middleware(a.authn.Middleware(mx)))
}

// readiness tells whether the agent should receive work now, and if not,
// why.
func (a *Agent) readiness() (bool, string) {
	switch {
	case a.draining.Load():
		return false, "shutting down"
	case !a.ready.Load():
		return false, "starting: reconciliation with libvirt not finished"
	}
	if up, known := a.host.Connected(); known && !up {
		return false, "libvirt does not answer"
	}
	return true, "ok"
}

// untilReady answers every API request with 503 and a CIMI error until
// the agent is ready. The listeners are bound, and serve, from the start,
// so that a client learns at once why it cannot work yet (and /healthz,
// /readyz and /metrics answer), rather than hanging on a socket nobody
// accepts from, while the records are not yet reconciled with libvirt and
// Jobs cannot run.
func (a *Agent) untilReady(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.ready.Load() {
			next.ServeHTTP(w, r)
			return
		}
		msg := "cimid is starting: it serves the API once its records are reconciled with libvirt; retry shortly (GET /readyz tells when)"
		if a.draining.Load() {
			msg = "cimid is stopping before it became ready"
		}
		w.Header().Set("Retry-After", "2")
		_ = api.WriteError(w, r, http.StatusServiceUnavailable, msg)
	})
}

func (a *Agent) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := a.readiness()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

// requestLog gives every request an id (the client's X-Request-ID when it
// is sane), returns it in the response, puts a logger holding it in the
// request context and logs the request when it ends: at debug level for
// reads, at info level for changes (with the Job they started).
func (a *Agent) requestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !logctx.ValidRequestID(id) {
			id = logctx.NewRequestID()
		}
		w.Header().Set("X-Request-ID", id)
		ctx := logctx.WithRequest(r.Context(), a.log, id)
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(ctx))
		log := logctx.Logger(ctx, a.log)
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.code(), "duration", time.Since(start).Round(time.Microsecond)}
		if j := w.Header().Get("CIMI-Job-URI"); j != "" {
			attrs = append(attrs, "job", j[strings.LastIndex(j, "/")+1:])
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			log.Debug("request", attrs...)
		} else {
			log.Info("request", attrs...)
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// routeNamer maps a request to the template of the route it matches, the
// label of the request metrics.
func routeNamer(routes [][]api.Route) func(*http.Request) string {
	m := mux.NewRouter()
	for _, list := range routes {
		for _, rt := range list {
			m.NewRoute().Path("/cimi" + rt.Path).Methods(rt.Method)
		}
	}
	return func(r *http.Request) string {
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz":
			return r.URL.Path
		}
		var match mux.RouteMatch
		if m.Match(r, &match) && match.Route != nil {
			if t, err := match.Route.GetPathTemplate(); err == nil {
				return t
			}
		}
		return "unmatched"
	}
}

// machineOfDomain maps one of this instance's domain names to its Machine id.
func (a *Agent) machineOfDomain(domain string) (string, bool) {
	id, ok := strings.CutPrefix(domain, "cimid-"+a.instance+"-")
	return id, ok && id != ""
}

// jobEnded is the Job runner's end hook: the Job metrics. (The Job's event
// is stored with its end, by stageJobEvent.)
func (a *Agent) jobEnded(rec job.Record) {
	a.jobMetrics.Ended(rec.Kind, rec.State, rec.TimeOfStatusChange.Sub(rec.Created))
}
