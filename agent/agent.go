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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cimid/agent/api"
	"cimid/agent/authn"
	"cimid/agent/compute"
	"cimid/agent/domstats"
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

	SocketGroup     string // group allowed on the socket (default cimid)
	TLSCert, TLSKey string // default: <StateDir>/tls/server.{crt,key}, self-signed
	AuditLog        string // audit file; "" for the main log only
	// StatsInterval is how often the host metrics and libvirt's health are
	// read (default 15 s). The one statistics poller reads at the shorter
	// of this and the Meters' sample interval.
	StatsInterval time.Duration
	Version       string // reported in cimid_build_info
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
	stats    *domstats.Poller
	loops    sync.WaitGroup // the background loops start starts

	// Held from New until Run returns: the state directory's lock and the
	// bound listeners (listen.go), the unix socket first.
	stateLock *os.File
	listeners []net.Listener

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

// New claims what the agent cannot run without, then opens the state
// directory and builds every service. Whatever can refuse the start comes
// first: the lock of the state directory (one agent per directory), the
// unix socket and TCP listeners, and the TLS certificate. A start refused
// there leaves libvirt and the state directory as they were. New calls
// neither libvirt nor the services' preparation; Run does. The driver is
// connected already; the agent takes ownership of neither it nor the
// logger, and Run releases what New claimed.
func New(ctx context.Context, cfg Config, drv hypervisor.Driver, log *slog.Logger) (_ *Agent, err error) {
	drv = wrapDriverForTests(drv, log)
	a := &Agent{cfg: cfg, log: log, drv: drv, started: time.Now()}
	if err := a.claim(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.release()
		}
	}()
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("chmod state directory: %w", err)
	}
	a.db, err = store.Open(filepath.Join(cfg.StateDir, "cimid.db"))
	if err != nil {
		return nil, err
	}
	instance, err := a.db.InstanceID(newInstanceID)
	if err != nil {
		return nil, fmt.Errorf("read instance id: %w", err)
	}
	a.instance, a.log = instance, log.With("instance", instance)
	db := a.db
	if err := a.prepareFrontDoor(); err != nil {
		return nil, err
	}
	a.events = events.New(db, a.log, 0)
	a.jobs = job.NewRunner(db, a.log, job.Options{OnEnd: a.jobEnded, EndTx: a.stageJobEvent})
	a.jobs.SetOutagePolicy(hypervisorOutage(drv))
	a.storage = storage.New(storage.Config{Instance: instance, StateDir: cfg.StateDir}, db, a.jobs, drv, a.log)
	a.compute = compute.New(compute.Config{Instance: instance, StateDir: cfg.StateDir, DomainType: cfg.DomainType, Events: a.events,
		Volumes: a.storage}, db, a.jobs, drv, a.log)
	a.storage.SetMachines(a.compute)
	a.network = network.New(network.Config{Instance: instance, StateDir: cfg.StateDir}, db, a.jobs, drv, a.log)
	a.compute.SetNetworks(a.network)
	a.meters = meters.New(meters.Config{Instance: instance, MachineExists: a.machineExists}, db, a.jobs, a.log)
	core := &api.Core{Name: "cimid-" + instance, Created: a.created(), Jobs: a.jobs}
	services := []api.Service{core, a.compute, a.storage, a.network, &events.Service{Log: a.events}, a.meters,
		system.New(system.Config{Instance: instance}, db, a.jobs, a.compute, a.log)}
	services = append(services, a.testServices()...)
	core.Services = services[1:]
	routes := make([][]api.Route, 0, len(services))
	for _, s := range services {
		routes = append(routes, s.Routes())
	}
	server := api.NewServer(a.log, routes...)
	server.AnswerWhenDone(a.jobs)
	server.NameRoutesWith(metrics.NameRoute)
	a.handler = server
	a.buildFrontDoor(routes)
	// One poller makes the bulk statistics call for the host metrics (and
	// libvirt's health) and the Meters, as often as the stricter needs.
	a.stats = domstats.New(drv)
	a.stats.Subscribe(a.statsInterval(), a.host.Observe)
	a.stats.Subscribe(a.meters.Interval(), a.meters.Observe)
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

// Run serves the API at once, answering 503 until the agent is ready;
// prepares storage, recovers Jobs and reconciles with libvirt; calls ready
// and serves fully until ctx ends; then drains. It releases what New
// claimed before it returns.
func (a *Agent) Run(ctx context.Context, ready func()) error {
	defer a.release()
	srv := a.newServer()
	listeners := a.serveListeners()
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func(l net.Listener) { errc <- srv.Serve(l) }(l)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	startErr := a.start(ctx, watchCtx)
	var serveErr error
	if startErr == nil {
		a.ready.Store(true)
		if ready != nil {
			ready()
		}
		select {
		case <-ctx.Done():
		case serveErr = <-errc:
		}
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
	stopWatch()
	a.waitLoops(dctx)
	if startErr != nil && ctx.Err() != nil && errors.Is(startErr, context.Canceled) {
		a.log.Info("stopped while starting")
		return nil
	}
	if startErr != nil {
		return startErr
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// start brings the services up: storage and networks prepared, Jobs
// recovered, records reconciled with libvirt, then the background loops
// started on watchCtx.
func (a *Agent) start(ctx, watchCtx context.Context) error {
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
	for _, loop := range []func(context.Context){a.compute.Run, a.storage.Run, a.network.Run, a.events.Run, a.stats.Run} {
		a.loops.Add(1)
		go func() {
			defer a.loops.Done()
			loop(watchCtx)
		}()
	}
	return nil
}

// waitLoops waits, until ctx ends, for the background loops to return
// once their context ended, so that the store closes after their last
// write.
func (a *Agent) waitLoops(ctx context.Context) {
	done := make(chan struct{})
	go func() { a.loops.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Warn("background loops still running at the drain deadline")
	}
}

// release gives back what New claimed: the listeners (which removes the
// unix socket), the audit file, the store and the state directory's lock.
// It may be called more than once.
func (a *Agent) release() {
	for _, l := range a.listeners {
		l.Close()
	}
	a.listeners = nil
	if a.audit != nil {
		a.audit.Close()
		a.audit = nil
	}
	if a.db != nil {
		if err := a.db.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
		a.db = nil
	}
	if a.stateLock != nil {
		a.stateLock.Close() // the lock goes with the descriptor
		a.stateLock = nil
	}
}

// lockStateDir takes the state directory for this process: an exclusive
// lock on the directory itself, held while the returned file is open. It
// creates the directory when it is missing, and says so, so that a start
// refused later can remove it again. The lock creates no file, so a
// refused start leaves the directory as it was.
func lockStateDir(dir string) (lock *os.File, created bool, err error) {
	if dir == "" {
		return nil, false, errors.New("state directory not set")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// QEMU's own user traverses it to reach the images inside (0711).
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, false, fmt.Errorf("create state directory: %w", err)
		}
		created = true
	case err != nil:
		return nil, false, fmt.Errorf("state directory: %w", err)
	case !fi.IsDir():
		return nil, false, fmt.Errorf("state directory %s is not a directory", dir)
	}
	lock, err = os.Open(dir)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		if created {
			os.Remove(dir)
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, fmt.Errorf("state directory %s is in use by another running cimid: stop it, or give this one its own state directory", dir)
		}
		return nil, false, fmt.Errorf("lock state directory %s: %w", dir, err)
	}
	return lock, created, nil
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
// stageJobEvent writes, in the transaction that stores a Job's end, the
// event that tells of it; subscribers get it once that has committed.
func (a *Agent) stageJobEvent(tx *store.Tx, rec job.Record) (func(), error) {
	return a.events.Stage(tx, jobEvent(rec))
}

// jobEvent is the event that tells of a Job's end.
func jobEvent(rec job.Record) events.Event {
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
	return e
}

// machineExists tells the meters whether a Machine is known.
func (a *Agent) machineExists(id string) bool {
	_, err := a.db.Get("machines", id)
	return err == nil
}
