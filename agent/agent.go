// Package agent is the daemon core: it owns the store, the Job runner, the
// hypervisor connection and the HTTP API, wires the resource services
// together and runs them. It is the only package that knows all the others.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cimid/agent/api"
	"cimid/agent/compute"
	"cimid/agent/events"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

// Config is what the daemon is told at start.
type Config struct {
	StateDir   string // bbolt file, storage pool, console logs
	Socket     string // unix socket path
	Listen     string // optional TCP address (loopback only for now)
	DomainType hypervisor.DomainType
	// DrainTimeout bounds how long a stop waits for running Jobs.
	DrainTimeout time.Duration
}

// Agent is one running cimid instance.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	db       *store.DB
	drv      hypervisor.Driver
	jobs     *job.Runner
	instance string
	handler  http.Handler
	started  time.Time
	compute  *compute.Service
	events   *events.Log
}

// New opens the state directory and prepares every service. The driver is
// connected already; the agent takes ownership of neither it nor the logger.
func New(ctx context.Context, cfg Config, drv hypervisor.Driver, log *slog.Logger) (*Agent, error) {
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(cfg.StateDir, "cimid.db"))
	if err != nil {
		return nil, err
	}
	instance, err := db.InstanceID(newInstanceID)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read instance id: %w", err)
	}
	a := &Agent{
		cfg: cfg, log: log.With("instance", instance), db: db, drv: drv, instance: instance, started: time.Now(),
	}
	a.events = events.New(db, a.log, 0)
	a.jobs = job.NewRunner(db, a.log, job.Options{OnEnd: a.recordJobEnd})
	a.compute = compute.New(compute.Config{Instance: instance, StateDir: cfg.StateDir, DomainType: cfg.DomainType, Events: a.events},
		db, a.jobs, drv, a.log)
	core := &api.Core{Name: "cimid-" + instance, Created: a.created(), Jobs: a.jobs}
	services := []api.Service{core, a.compute, &events.Service{Log: a.events}}
	services = append(services, a.testServices()...)
	core.Services = services[1:]
	routes := make([][]api.Route, 0, len(services))
	for _, s := range services {
		routes = append(routes, s.Routes())
	}
	a.handler = api.NewServer(a.log, routes...)
	return a, nil
}

// Instance is the id of this agent instance.
func (a *Agent) Instance() string { return a.instance }

// Handler is the agent's HTTP API.
func (a *Agent) Handler() http.Handler { return a.handler }

// created is when this instance was first started (its store's birth).
func (a *Agent) created() time.Time {
	if fi, err := os.Stat(a.db.Path()); err == nil {
		return fi.ModTime()
	}
	return a.started
}

// Run prepares storage, recovers Jobs, reconciles with libvirt, serves the
// API until ctx ends, then drains. ready is called once the API serves.
func (a *Agent) Run(ctx context.Context, ready func()) error {
	if err := a.compute.Prepare(ctx); err != nil {
		return err
	}
	if err := a.jobs.Start(ctx); err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	if err := a.compute.Reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile with libvirt: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go a.compute.Run(watchCtx)
	go a.events.Run(watchCtx)
	listeners, err := a.listen()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		a.log.Info("serving CIMI", "address", l.Addr().String())
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}
	if ready != nil {
		ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.log.Info("shutting down")
	drain := a.cfg.DrainTimeout
	if drain == 0 {
		drain = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	_ = srv.Shutdown(dctx)
	a.jobs.Shutdown(dctx)
	if err := a.db.Close(); err != nil {
		a.log.Error("close store", "err", err)
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

func (a *Agent) listen() ([]net.Listener, error) {
	var out []net.Listener
	l, err := listenUnix(a.cfg.Socket, a.log)
	if err != nil {
		return nil, err
	}
	out = append(out, l)
	if a.cfg.Listen != "" {
		if err := checkLoopback(a.cfg.Listen); err != nil {
			l.Close()
			return nil, err
		}
		tl, err := net.Listen("tcp", a.cfg.Listen)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
		}
		out = append(out, tl)
	}
	return out, nil
}

// checkLoopback refuses TCP addresses that other hosts could reach: until
// clients authenticate, only the local host may talk to the agent.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: only loopback addresses (127.0.0.1, [::1], localhost) are allowed until remote authentication is configured", addr)
	}
	return nil
}

// listenUnix binds the API socket, replacing a stale one left by a killed
// process but never one a live agent still serves.
func listenUnix(path string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is served by another process (another cimid with this socket?)", path)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) && !errors.Is(derr, syscall.ENOENT) {
			return nil, fmt.Errorf("probe existing socket %s: %w", path, derr)
		}
		log.Info("replacing stale socket", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if g, err := user.LookupGroup("cimid"); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err == nil {
			mode = 0o660
		}
	} else {
		log.Warn("group cimid does not exist: the socket is for root only", "path", path)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}

// prepareStateDir creates the state directory so that QEMU's own user can
// traverse it to reach the images inside (0711), without listing it.
func prepareStateDir(dir string) error {
	if dir == "" {
		return errors.New("state directory not set")
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("chmod state directory: %w", err)
	}
	return nil
}

func newInstanceID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// recordJobEnd puts every Job outcome into the EventLog of the resource it
// acted on.
func (a *Agent) recordJobEnd(rec job.Record) {
	resource := rec.Target
	for _, p := range rec.Affected {
		if strings.HasPrefix(p, rec.Target+"/") {
			resource = p // a create: the new resource, not its collection
		}
	}
	e := events.Event{Resource: resource, Type: events.TypeAccess, Change: rec.Action, Detail: rec.Name + ": " + rec.StatusMessage,
		Origin: "api", Time: rec.TimeOfStatusChange, Severity: events.SeverityLow}
	switch rec.Action {
	case "add":
		e.Type, e.Change = events.TypeModel, "create"
	case "edit":
		e.Type, e.Change = events.TypeModel, "update"
	case "delete":
		e.Type, e.Change = events.TypeModel, "delete"
	}
	switch rec.State {
	case job.Success:
		e.Outcome = "Success"
	case job.Stopped:
		e.Outcome = "Status"
	default:
		e.Outcome, e.Severity = "Failure", events.SeverityMedium
	}
	a.events.Record(e)
}
