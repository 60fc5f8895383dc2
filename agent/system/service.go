// Package system owns Systems and SystemTemplates and moves workloads in
// and out of the host as OVF packages. An import reads an OVA or an OVF
// descriptor with its files (from the host or over HTTP), checks every disk
// image before qemu-img sees it, converts the disks into the agent's pool
// (in place from an uncompressed OVA) and creates a System whose Machines,
// STOPPED, own those disks and sit on the networks the package names. An
// export writes a stopped Machine, or every Machine of a System, as an OVA.
// Systems start, stop, restart and delete their Machines through the
// Machine service's own Jobs.
//
// The Machines of an imported System own their disks: every disk of the
// package becomes a local disk of its Machine (listed under the Machine's
// disks, deleted with it), so a System's volumes are the Volumes attached
// to its Machines afterwards. Those, and the Networks its Machines are on,
// are associated resources: they outlive the System.
package system

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/compute"
	"cimid/agent/job"
	"cimid/store"
)

// Config tells the service who it is.
type Config struct {
	Instance string
	// HTTPClient fetches http(s) sources; default: a client with
	// connection and header timeouts and no overall deadline.
	HTTPClient *http.Client
}

// Service serves and runs Systems and SystemTemplates.
type Service struct {
	cfg     Config
	db      *store.DB
	jobs    *job.Runner
	compute *compute.Service
	log     *slog.Logger
	now     func() time.Time
	http    *http.Client

	// secrets holds the credentials an import fetches its source with,
	// by Job id, for the Job's run only: they are never stored.
	mu      sync.Mutex
	secrets map[string]credentials
}

// credentials are HTTP basic authentication credentials.
type credentials struct{ user, password string }

// New creates the service and registers its Job kinds with jobs.
func New(cfg Config, db *store.DB, jobs *job.Runner, machines *compute.Service, log *slog.Logger) *Service {
	s := &Service{cfg: cfg, db: db, jobs: jobs, compute: machines, log: log.With("service", "system"), now: time.Now,
		http: cfg.HTTPClient, secrets: map[string]credentials{}}
	if s.http == nil {
		s.http = defaultHTTPClient()
	}
	s.registerJobs()
	return s
}

func (s *Service) registerJobs() {
	s.jobs.Register("system.import", job.Kind{Run: s.runImport, Cancellable: true, Cleanup: s.cleanupImport})
	s.jobs.Register("system.export", job.Kind{Run: s.runExport, Resumable: true, Cancellable: true, Cleanup: s.cleanupExport})
	s.jobs.Register("machine.export", job.Kind{Run: s.runExport, Resumable: true, Cancellable: true, Cleanup: s.cleanupExport})
	s.jobs.Register("system.delete", job.Kind{Run: s.runDelete, Resumable: true})
	for _, a := range systemActions {
		s.jobs.Register("system."+a, job.Kind{Run: s.runAction, Resumable: true})
	}
	s.jobs.Register("systemTemplate.import", job.Kind{Run: s.runTemplateImport, Cancellable: true, Cleanup: s.cleanupTemplateImport})
}

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	routes := []api.Route{
		{Method: http.MethodGet, Path: "/systems", Handler: s.listSystems},
		{Method: http.MethodPost, Path: "/systems", Handler: s.createSystem},
		{Method: http.MethodPost, Path: "/systems/import", Handler: s.importSystem},
		{Method: http.MethodGet, Path: "/systems/{id}", Handler: s.getSystem},
		{Method: http.MethodPut, Path: "/systems/{id}", Handler: s.updateSystem},
		{Method: http.MethodDelete, Path: "/systems/{id}", Handler: s.deleteSystem},
		{Method: http.MethodPost, Path: "/systems/{id}/export", Handler: s.exportSystem},
		{Method: http.MethodGet, Path: "/systems/{id}/machines", Handler: s.listMembers(memberMachines)},
		{Method: http.MethodGet, Path: "/systems/{id}/machines/{member}", Handler: s.getMember(memberMachines)},
		{Method: http.MethodGet, Path: "/systems/{id}/volumes", Handler: s.listMembers(memberVolumes)},
		{Method: http.MethodGet, Path: "/systems/{id}/volumes/{member}", Handler: s.getMember(memberVolumes)},
		{Method: http.MethodGet, Path: "/systems/{id}/networks", Handler: s.listMembers(memberNetworks)},
		{Method: http.MethodGet, Path: "/systems/{id}/networks/{member}", Handler: s.getMember(memberNetworks)},
		{Method: http.MethodPost, Path: "/machines/{id}/export", Handler: s.exportMachine},

		{Method: http.MethodGet, Path: "/systemTemplates", Handler: s.listTemplates},
		{Method: http.MethodPost, Path: "/systemTemplates", Handler: s.createTemplate},
		{Method: http.MethodPost, Path: "/systemTemplates/import", Handler: s.importTemplate},
		{Method: http.MethodGet, Path: "/systemTemplates/{id}", Handler: s.getTemplate},
		{Method: http.MethodPut, Path: "/systemTemplates/{id}", Handler: s.updateTemplate},
		{Method: http.MethodDelete, Path: "/systemTemplates/{id}", Handler: s.deleteTemplate},
	}
	for _, a := range systemActions {
		routes = append(routes, api.Route{Method: http.MethodPost, Path: "/systems/{id}/" + a, Handler: s.actionHandler(a)})
	}
	return routes
}

// Collections implements api.Service.
func (s *Service) Collections() []string { return []string{kindSystems, kindTemplates} }

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata { return metadata() }
