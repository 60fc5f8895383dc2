// Package agent is the daemon core: it owns the store, the Job runner, the
// hypervisor connection and the HTTP API, wires the resource services
// together and runs them. It is the only package that knows all the others.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"cimid/agent/api"
	"cimid/agent/authn"
	"cimid/agent/compute"
	"cimid/agent/events"
	"cimid/agent/job"
	"cimid/agent/meters"
	"cimid/agent/metrics"
	"cimid/agent/network"
	"cimid/agent/storage"
	"cimid/agent/system"
	"cimid/hypervisor"
	"cimid/store"
)

// Config is what the daemon is told at start.
type Config struct {
	StateDir   string   // bbolt file, storage pool, console logs
	Socket     string   // unix socket path
	Listen     []string // TCP addresses, served over HTTPS only (listen.go)
	DomainType hypervisor.DomainType
	// DrainTimeout bounds how long a stop waits for running Jobs.
	DrainTimeout time.Duration

	SocketGroup     string        // group allowed on the socket (default cimid)
	TLSCert, TLSKey string        // default: <StateDir>/tls/server.{crt,key}, self-signed
	AuditLog        string        // audit file; "" for the main log only
	StatsInterval   time.Duration // libvirt check and bulk statistics period (default 15 s)
	Version         string        // reported in cimid_build_info
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
	storage  *storage.Service
	network  *network.Service
	events   *events.Log
	meters   *meters.Service

	// Front door (serve.go, listen.go).
	front      http.Handler
	metrics    *metrics.Registry
	jobMetrics *metrics.Jobs
	host       *metrics.Host
	authn      *authn.Authenticator
	audit      *authn.Audit
	tlsCert    *tls.Certificate
	socketGID  int
	ready      atomic.Bool
	draining   atomic.Bool
}

// New opens the state directory and prepares every service. The driver is
// connected already; the agent takes ownership of neither it nor the logger.
func New(ctx context.Context, cfg Config, drv hypervisor.Driver, log *slog.Logger) (*Agent, error) {
	drv = wrapDriverForTests(drv, log)
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
	if err := a.prepareFrontDoor(); err != nil {
		db.Close()
		return nil, err
	}
	a.events = events.New(db, a.log, 0)
	a.jobs = job.NewRunner(db, a.log, job.Options{OnEnd: a.jobEnded})
	a.jobs.SetOutagePolicy(hypervisorOutage(drv))
	a.storage = storage.New(storage.Config{Instance: instance, StateDir: cfg.StateDir}, db, a.jobs, drv, a.log)
	a.compute = compute.New(compute.Config{Instance: instance, StateDir: cfg.StateDir, DomainType: cfg.DomainType, Events: a.events,
		Volumes: a.storage}, db, a.jobs, drv, a.log)
	a.storage.SetMachines(a.compute)
	a.network = network.New(network.Config{Instance: instance, StateDir: cfg.StateDir}, db, a.jobs, drv, a.log)
	a.compute.SetNetworks(a.network)
	a.meters = meters.New(meters.Config{Instance: instance, MachineExists: a.machineExists}, db, drv, a.jobs, a.log)
	core := &api.Core{Name: "cimid-" + instance, Created: a.created(), Jobs: a.jobs}
	services := []api.Service{core, a.compute, a.storage, a.network, &events.Service{Log: a.events}, a.meters,
		system.New(system.Config{Instance: instance}, db, a.jobs, a.compute, a.log)}
	services = append(services, a.testServices()...)
	core.Services = services[1:]
	routes := make([][]api.Route, 0, len(services))
	for _, s := range services {
		routes = append(routes, s.Routes())
	}
	a.handler = api.NewServer(a.log, routes...)
	a.buildFrontDoor(routes)
	return a, nil
}

// Instance is the id of this agent instance.
func (a *Agent) Instance() string { return a.instance }

// Handler is the agent's CIMI API without the front door (no
// authentication), for use inside the process.
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
	if err := a.storage.Prepare(ctx); err != nil {
		return err
	}
	if err := a.network.Prepare(ctx); err != nil {
		return err
	}
	if err := a.jobs.Start(ctx); err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	if err := a.compute.Reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile with libvirt: %w", err)
	}
	if err := a.network.Reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile networks with libvirt: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go a.compute.Run(watchCtx)
	go a.storage.Run(watchCtx)
	go a.network.Run(watchCtx)
	go a.events.Run(watchCtx)
	go a.meters.Run(watchCtx)
	go a.host.Run(watchCtx)
	defer a.audit.Close()
	listeners, err := a.listen()
	if err != nil {
		return err
	}
	srv := a.newServer()
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		a.log.Info("serving CIMI", "address", l.Addr().String())
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}
	a.ready.Store(true)
	if ready != nil {
		ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.draining.Store(true)
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

// machineExists tells the meters whether a Machine is known.
func (a *Agent) machineExists(id string) bool {
	_, err := a.db.Get("machines", id)
	return err == nil
}
