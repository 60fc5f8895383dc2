package network

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

// Driver is the part of the hypervisor this service uses.
type Driver interface {
	hypervisor.NetworkDriver
	AttachNIC(ctx context.Context, domain string, nic hypervisor.NIC, live bool) error
	DetachNIC(ctx context.Context, domain, mac string, live bool) error
	DomainNICs(ctx context.Context, domain string) ([]hypervisor.NIC, error)
	DomainStatus(ctx context.Context, name string) (hypervisor.DomainStatus, error)
}

// Config tells the service who it is and where it keeps files.
type Config struct {
	Instance string
	StateDir string
	// SweepInterval is how often DHCP leases and network states are read
	// from the hypervisor (default 2 s).
	SweepInterval time.Duration
	// NetworkWait bounds how long a Machine's preparation waits for a
	// network being created (default 2 min).
	NetworkWait time.Duration
}

// Service serves and runs the Network family and Credentials.
type Service struct {
	cfg  Config
	db   *store.DB
	jobs *job.Runner
	drv  Driver
	log  *slog.Logger
	now  func() time.Time

	seedDir string
	kick    chan struct{} // asks the sweeper for an early pass

	// hostInterfaces lists the subnets of the host's own interfaces.
	hostInterfaces func() ([]takenSubnet, error)

	mu   sync.Mutex
	host []takenSubnet // subnets used on the host by others, as last seen
}

// New creates the service and registers its Job kinds with jobs.
func New(cfg Config, db *store.DB, jobs *job.Runner, drv Driver, log *slog.Logger) *Service {
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 2 * time.Second
	}
	if cfg.NetworkWait == 0 {
		cfg.NetworkWait = 2 * time.Minute
	}
	s := &Service{
		cfg: cfg, db: db, jobs: jobs, drv: drv, log: log.With("service", "network"), now: time.Now,
		seedDir: filepath.Join(cfg.StateDir, "seed"),
		kick:    make(chan struct{}, 1),

		hostInterfaces: hostInterfaceSubnets,
	}
	s.registerJobs()
	return s
}

func (s *Service) registerJobs() {
	s.jobs.Register("network.create", job.Kind{Run: s.runCreateNetwork, Resumable: true, Cancellable: true, Cleanup: s.cleanupNetwork})
	s.jobs.Register("network.delete", job.Kind{Run: s.runDeleteNetwork, Resumable: true})
	s.jobs.Register("address.create", job.Kind{Run: s.runCreateAddress, Resumable: true, Cleanup: s.cleanupAddress})
	s.jobs.Register("address.delete", job.Kind{Run: s.runDeleteAddress, Resumable: true})
	s.jobs.Register("machine.nic.add", job.Kind{Run: s.runAddInterface, Resumable: true, Cleanup: s.cleanupInterface})
	s.jobs.Register("machine.nic.remove", job.Kind{Run: s.runRemoveInterface, Resumable: true})
}

// Prepare makes the seed directory exist. It runs before Jobs are
// recovered.
func (s *Service) Prepare(ctx context.Context) error {
	if err := os.MkdirAll(s.seedDir, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", s.seedDir, err)
	}
	if err := os.Chmod(s.seedDir, 0o711); err != nil {
		return fmt.Errorf("chmod %s: %w", s.seedDir, err)
	}
	return nil
}

// Reconcile runs once at start, after interrupted Jobs were resumed: it
// adopts our networks, reports foreign ones, makes the default network
// exist and reads the leases.
func (s *Service) Reconcile(ctx context.Context) error {
	nets, err := s.drv.ListNetworks(ctx)
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	if err := s.adopt(nets); err != nil {
		return err
	}
	s.observe(nets)
	s.ensureDefault(ctx)
	s.sweep(ctx)
	return nil
}

// Run keeps networks and addresses in line with the hypervisor until ctx
// ends: a sweep every SweepInterval and whenever Refresh asks for one.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		s.sweep(ctx)
	}
}

// Refresh asks for an early reading of DHCP leases and network states, for
// instance after a Machine started. It does not block.
func (s *Service) Refresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sweep reads the networks and the leases of ours that run.
func (s *Service) sweep(ctx context.Context) {
	nets, err := s.drv.ListNetworks(ctx)
	if err != nil {
		s.log.Debug("sweep: list networks", "err", err)
		return
	}
	s.observe(nets)
	s.syncLeases(ctx)
}

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	return concat(s.configRoutes(), s.templateRoutes(), s.networkRoutes(), s.portRoutes(),
		s.addressRoutes(), s.addressTemplateRoutes(), s.credentialRoutes(), s.credentialTemplateRoutes(),
		s.interfaceRoutes())
}

// Collections implements api.Service.
func (s *Service) Collections() []string {
	return []string{kindNetworks, kindTemplates, kindConfigs, kindPorts, kindAddresses, kindAddressTemplates,
		kindCredentials, kindCredentialTemplates}
}

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata { return s.metadata() }

func concat[T any](lists ...[]T) []T {
	var out []T
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// libvirtName is the name of a Network's libvirt network: the instance id
// and the Network id, never the user's name.
func (s *Service) libvirtName(networkID string) string {
	return "cimid-" + s.cfg.Instance + "-" + networkID
}

// hostSubnets returns the subnets others use on the host, as last seen.
func (s *Service) hostSubnets() []takenSubnet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]takenSubnet(nil), s.host...)
}
