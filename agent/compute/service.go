package compute

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/events"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

// Config tells the service where it lives and how guests run.
type Config struct {
	Instance   string
	StateDir   string
	DomainType hypervisor.DomainType
	// StopRetry is how often a graceful stop re-sends the ACPI power button.
	StopRetry time.Duration
	// DefaultStopTimeout bounds a graceful stop whose request names none.
	DefaultStopTimeout time.Duration
	// ResyncInterval is the period of the safety-net resync with libvirt.
	ResyncInterval time.Duration
	// Events, when set, receives every Machine state change.
	Events EventRecorder
	// Volumes, when set, is the service that owns the Volumes Machines
	// attach.
	Volumes Volumes
	// Networks, when set, is the service that puts Machines on networks
	// and gives them their first-boot configuration.
	Networks Networks
}

// EventRecorder keeps the event history of resources.
type EventRecorder interface {
	Record(events.Event)
	// Stage writes the event in tx, with the change it tells of; the
	// function it returns publishes it once tx has committed.
	Stage(tx *store.Tx, e events.Event) (publish func(), err error)
}

// Service serves and runs the Machine family.
type Service struct {
	cfg  Config
	db   *store.DB
	jobs *job.Runner
	drv  hypervisor.Driver
	log  *slog.Logger

	poolName   string
	poolDir    string
	consoleDir string
	now        func() time.Time
	host       hostLimits
	// listed caches decoded Machine records for collection reads.
	listed decodeCache[machineRecord]
}

// hostLimits bound what a Machine may ask for on this host.
type hostLimits struct {
	CPUs      int
	MemoryKiB int64
}

// New creates the service and registers its Job kinds with jobs.
func New(cfg Config, db *store.DB, jobs *job.Runner, drv hypervisor.Driver, log *slog.Logger) *Service {
	if cfg.StopRetry == 0 {
		cfg.StopRetry = 3 * time.Second
	}
	if cfg.DefaultStopTimeout == 0 {
		cfg.DefaultStopTimeout = 2 * time.Minute
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	s := &Service{
		cfg: cfg, db: db, jobs: jobs, drv: drv, log: log.With("service", "compute"),
		poolName:   "cimid-" + cfg.Instance,
		poolDir:    filepath.Join(cfg.StateDir, "pool"),
		consoleDir: filepath.Join(cfg.StateDir, "console"),
		now:        time.Now,
		host:       readHostLimits(),
	}
	s.registerJobs()
	return s
}

// Prepare makes the storage pool and the provider configurations exist.
// It runs before Jobs are recovered.
func (s *Service) Prepare(ctx context.Context) error {
	for _, dir := range []string{s.poolDir, s.consoleDir} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	if err := s.drv.EnsurePool(ctx, s.poolName, s.poolDir); err != nil {
		return fmt.Errorf("storage pool %s: %w", s.poolName, err)
	}
	return s.seedConfigs()
}

// Run keeps Machine records in line with the hypervisor until ctx ends:
// a full resync now, on every reconnect and periodically, and a resync of
// one Machine on each of its lifecycle events.
func (s *Service) Run(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.ResyncInterval)
	defer ticker.Stop()
	events := s.drv.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.resyncAll(ctx)
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Reconnected {
				s.log.Info("libvirt connection restored: resynchronising")
				s.resyncAll(ctx)
				continue
			}
			if id, ok := s.machineIDOf(ev.Domain); ok {
				s.resyncMachine(ctx, id)
				s.refreshLeases(ev.Kind)
			}
		}
	}
}

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	return concat(s.configRoutes(), s.imageRoutes(), s.templateRoutes(), s.machineRoutes())
}

// Collections implements api.Service.
func (s *Service) Collections() []string {
	return []string{"machines", "machineTemplates", "machineConfigs", "machineImages"}
}

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata { return storageMetadata(s.metadata()) }

func concat[T any](lists ...[]T) []T {
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func readHostLimits() hostLimits {
	h := hostLimits{CPUs: runtime.NumCPU(), MemoryKiB: 1 << 30}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err == nil && kib > 0 {
			h.MemoryKiB = kib
		}
	}
	return h
}

// domainName derives the libvirt name of a Machine's domain: the instance
// id and the Machine id, never the user's name.
func (s *Service) domainName(machineID string) string {
	return "cimid-" + s.cfg.Instance + "-" + machineID
}

// machineIDOf returns the Machine id of one of our domains.
func (s *Service) machineIDOf(domain string) (string, bool) {
	prefix := "cimid-" + s.cfg.Instance + "-"
	if len(domain) <= len(prefix) || domain[:len(prefix)] != prefix {
		return "", false
	}
	return domain[len(prefix):], true
}
