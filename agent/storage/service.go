package storage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

// Config tells the service where it lives.
type Config struct {
	Instance string
	StateDir string
	// GCInterval is the period of the pass that compares the pool's files
	// with the store (default 10 minutes; it also runs at start).
	GCInterval time.Duration
}

// Machines is what this service needs from the one that owns Machines and
// MachineImages, whose files share the pool.
type Machines interface {
	// PoolFiles returns, in tx, the name prefixes of the pool files that
	// Machine and MachineImage records account for.
	PoolFiles(tx *store.Tx) ([]string, error)
	// MachineState returns, in tx, the CIMI state of a Machine.
	MachineState(tx *store.Tx, id string) (string, error)
}

// Service serves and runs the Volume family.
type Service struct {
	cfg  Config
	db   *store.DB
	jobs *job.Runner
	drv  hypervisor.Driver
	log  *slog.Logger

	poolName string
	poolDir  string
	now      func() time.Time
	mkfs     filesystems

	ahead ahead // empty volumes' images made while their records are committed

	mu       sync.Mutex
	machines Machines
	reported map[string]bool // unknown pool files already logged
}

// New creates the service and registers its Job kinds with jobs.
func New(cfg Config, db *store.DB, jobs *job.Runner, drv hypervisor.Driver, log *slog.Logger) *Service {
	if cfg.GCInterval == 0 {
		cfg.GCInterval = 10 * time.Minute
	}
	s := &Service{
		cfg: cfg, db: db, jobs: jobs, drv: drv, log: log.With("service", "storage"),
		poolName: "cimid-" + cfg.Instance,
		poolDir:  filepath.Join(cfg.StateDir, "pool"),
		now:      time.Now,
		mkfs:     findFilesystems(),
		reported: map[string]bool{},
	}
	s.registerJobs()
	return s
}

// SetMachines connects the service that owns Machines; call it before Run.
func (s *Service) SetMachines(m Machines) {
	s.mu.Lock()
	s.machines = m
	s.mu.Unlock()
}

func (s *Service) machineOwner() Machines {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.machines
}

// Prepare makes the pool directory and the provider configurations exist,
// and removes the partial images of volumes whose creation was never
// recorded. The libvirt pool itself is defined by the Machine side. It
// runs before Jobs are recovered and requests served.
func (s *Service) Prepare(ctx context.Context) error {
	if err := os.MkdirAll(s.poolDir, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", s.poolDir, err)
	}
	if err := s.removeUnrecordedScratch(); err != nil {
		return err
	}
	return s.seedConfigs()
}

// Run compares the pool with the store now and every GCInterval until ctx
// ends.
func (s *Service) Run(ctx context.Context) {
	s.collectGarbage(ctx)
	ticker := time.NewTicker(s.cfg.GCInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			s.collectGarbage(ctx)
		}
	}
}

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	var out []api.Route
	for _, l := range [][]api.Route{s.configRoutes(), s.templateRoutes(), s.volumeRoutes(), s.imageRoutes()} {
		out = append(out, l...)
	}
	return out
}

// Collections implements api.Service.
func (s *Service) Collections() []string {
	return []string{kindVolumes, kindTemplates, kindConfigs, kindImages}
}

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata { return s.metadata() }

func (s *Service) volumeFile(id, diskFormat string) string {
	return filepath.Join(s.poolDir, "volume-"+id+"."+diskFormat)
}

func (s *Service) imageFile(id string) string {
	return filepath.Join(s.poolDir, "volimage-"+id+".qcow2")
}

// refreshPool tells libvirt that the pool's files changed; a failure only
// delays what libvirt lists.
func (s *Service) refreshPool(ctx context.Context) {
	if err := s.drv.RefreshPool(ctx, s.poolName); err != nil {
		s.log.Warn("refresh pool", "err", err)
	}
}
