package compute

import (
	"cimid/agent/records"
	"net/http"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

// providerConfigs are the sizes every host offers out of the box.
var providerConfigs = []configRecord{
	{meta: meta{ID: "small", Name: "small", Description: "1 vCPU, 512 MiB memory, 10 GiB disk"},
		configSpec: configSpec{CPU: 1, MemoryKiB: 512 << 10, Disks: []diskConfig{{CapacityKiB: 10 << 20, InitialLocation: "vda"}}}},
	{meta: meta{ID: "medium", Name: "medium", Description: "2 vCPUs, 2 GiB memory, 20 GiB disk"},
		configSpec: configSpec{CPU: 2, MemoryKiB: 2 << 20, Disks: []diskConfig{{CapacityKiB: 20 << 20, InitialLocation: "vda"}}}},
	{meta: meta{ID: "large", Name: "large", Description: "4 vCPUs, 8 GiB memory, 40 GiB disk"},
		configSpec: configSpec{CPU: 4, MemoryKiB: 8 << 20, Disks: []diskConfig{{CapacityKiB: 40 << 20, InitialLocation: "vda"}}}},
}

// Bounds of what a configuration may ask for.
const (
	minMemoryKiB = 16 << 10
	maxDisks     = 16
)

func (s *Service) seedConfigs() error {
	now := s.now()
	return s.db.Update(func(tx *store.Tx) error {
		for _, c := range providerConfigs {
			if _, err := tx.Get(kindConfigs, c.ID); err == nil {
				continue
			}
			c.Created, c.Updated, c.Provider, c.CPUArch = now, now, true, "x86_64"
			if err := records.Put(tx, kindConfigs, c.ID, c); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) configRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/machineConfigs", Handler: s.listConfigs},
		{Method: http.MethodPost, Path: "/machineConfigs", Handler: s.createConfig},
		{Method: http.MethodGet, Path: "/machineConfigs/{id}", Handler: s.getConfig},
		{Method: http.MethodPut, Path: "/machineConfigs/{id}", Handler: s.updateConfig},
		{Method: http.MethodDelete, Path: "/machineConfigs/{id}", Handler: s.deleteConfig},
	}
}

func (s *Service) configDoc(urls api.URLs, c configRecord) *cimi.MachineConfiguration {
	path := kindConfigs + "/" + c.ID
	d := &cimi.MachineConfiguration{
		Common:   commonDoc(urls, "MachineConfiguration", path, c.meta),
		CPU:      c.CPU,
		Memory:   c.MemoryKiB,
		CPUArch:  c.CPUArch,
		CPUSpeed: c.CPUSpeed,
		Disks:    diskConfigDocs(c.Disks),
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if !c.Provider {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

func diskConfigDocs(disks []diskConfig) []cimi.DiskConfig {
	var out []cimi.DiskConfig
	for _, d := range disks {
		out = append(out, cimi.DiskConfig{Capacity: d.CapacityKiB, Format: d.Format, InitialLocation: d.InitialLocation})
	}
	return out
}

func (s *Service) listConfigs(rq *api.Request) (api.Reply, error) {
	var recs []configRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		recs, err = records.List[configRecord](tx, kindConfigs)
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, c := range recs {
		members[i] = s.configDoc(rq.URLs, c)
	}
	return api.Reply{Body: collection(rq.URLs, "MachineConfiguration", kindConfigs, "machineConfigurations", members, true)}, nil
}

func (s *Service) getConfig(rq *api.Request) (api.Reply, error) {
	var c configRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		c, err = records.Get[configRecord](tx, kindConfigs, rq.Vars["id"], "MachineConfiguration")
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.configDoc(rq.URLs, c)}, nil
}

// validateConfig checks a configuration against this host.
func (s *Service) validateConfig(c *configSpec) error {
	if c.CPU <= 0 {
		return errdefs.Invalidf("cpu must be a positive number of vCPUs, not %d", c.CPU)
	}
	if c.CPU > s.maxCPUs() {
		return errdefs.Invalidf("cpu %d exceeds this host's limit of %d vCPUs", c.CPU, s.maxCPUs())
	}
	if c.MemoryKiB <= 0 {
		return errdefs.Invalidf("memory must be a positive number of KiB, not %d", c.MemoryKiB)
	}
	if c.MemoryKiB < minMemoryKiB {
		return errdefs.Invalidf("memory %d KiB is below the minimum of %d KiB", c.MemoryKiB, minMemoryKiB)
	}
	if c.MemoryKiB > s.host.MemoryKiB {
		return errdefs.Invalidf("memory %d KiB exceeds this host's %d KiB", c.MemoryKiB, s.host.MemoryKiB)
	}
	switch strings.ToLower(c.CPUArch) {
	case "", "x86_64", "amd64":
		c.CPUArch = "x86_64"
	default:
		return errdefs.Invalidf("cpuArch %q is not supported on this host (x86_64 only)", c.CPUArch)
	}
	if len(c.Disks) > maxDisks {
		return errdefs.Invalidf("at most %d disks, not %d", maxDisks, len(c.Disks))
	}
	for i, d := range c.Disks {
		if d.CapacityKiB <= 0 {
			return errdefs.Invalidf("disks[%d].capacity must be a positive number of KiB, not %d", i, d.CapacityKiB)
		}
		if d.CapacityKiB > 64<<30 {
			return errdefs.Invalidf("disks[%d].capacity %d KiB exceeds 64 TiB", i, d.CapacityKiB)
		}
	}
	return nil
}

// maxCPUs is the vCPU limit: the host's CPUs under KVM; emulation allows
// overcommit up to a fixed bound.
func (s *Service) maxCPUs() int {
	if s.cfg.DomainType == "kvm" {
		return s.host.CPUs
	}
	return max(s.host.CPUs, 16)
}

func configFromInput(in cimi.MachineConfigInput) configSpec {
	c := configSpec{CPU: in.CPU, MemoryKiB: in.Memory, CPUArch: in.CPUArch, CPUSpeed: in.CPUSpeed}
	for _, d := range in.Disks {
		c.Disks = append(c.Disks, diskConfig{CapacityKiB: d.Capacity, Format: d.Format, InitialLocation: d.InitialLocation})
	}
	return c
}

func (s *Service) createConfig(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineConfigurationCreate
	if err := rq.Decode(&body, "MachineConfigurationCreate", "MachineConfiguration"); err != nil {
		return api.Reply{}, err
	}
	spec := configFromInput(cimi.MachineConfigInput{CPU: body.CPU, Memory: body.Memory, Disks: body.Disks, CPUArch: body.CPUArch, CPUSpeed: body.CPUSpeed})
	if err := s.validateConfig(&spec); err != nil {
		return api.Reply{}, err
	}
	rec := configRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()), configSpec: spec}
	path := kindConfigs + "/" + rec.ID
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create MachineConfiguration", Target: kindConfigs, Affected: []string{kindConfigs, path}},
		func(tx *store.Tx) error { return records.Put(tx, kindConfigs, rec.ID, rec) })
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: s.configDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

func (s *Service) updateConfig(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineConfiguration
	if err := rq.Decode(&body, "MachineConfiguration"); err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(rq, kindConfigs+"/"+id, func(tx *store.Tx) error {
		c, err := records.Get[configRecord](tx, kindConfigs, id, "MachineConfiguration")
		if err != nil {
			return err
		}
		if err := applyUpdate(&c.meta, body.Common, selectedAttrs(rq), s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindConfigs, id, c)
	})
}

func (s *Service) deleteConfig(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := kindConfigs + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete MachineConfiguration", Target: path}, func(tx *store.Tx) error {
		c, err := records.Get[configRecord](tx, kindConfigs, id, "MachineConfiguration")
		if err != nil {
			return err
		}
		if c.Provider {
			return errdefs.Conflictf("MachineConfiguration %s is provider-defined and cannot be deleted", id)
		}
		templates, err := records.List[templateRecord](tx, kindTemplates)
		if err != nil {
			return err
		}
		for _, t := range templates {
			if t.ConfigID == id {
				return errdefs.Conflictf("MachineConfiguration %s is used by MachineTemplate %s", id, t.ID)
			}
		}
		return tx.Delete(kindConfigs, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}

// lookupConfig resolves a configuration given by reference or by value.
func (s *Service) lookupConfig(tx *store.Tx, urls api.URLs, in *cimi.MachineConfigInput) (configSpec, string, error) {
	if in == nil {
		return configSpec{}, "", errdefs.Invalidf("machineConfig is required")
	}
	if in.Href != "" {
		id, err := refID(urls, in.Href, kindConfigs, "MachineConfiguration")
		if err != nil {
			return configSpec{}, "", err
		}
		c, err := records.Get[configRecord](tx, kindConfigs, id, "MachineConfiguration")
		if err != nil {
			return configSpec{}, "", referenced(err)
		}
		return c.configSpec, id, nil
	}
	spec := configFromInput(*in)
	if err := s.validateConfig(&spec); err != nil {
		return configSpec{}, "", err
	}
	return spec, "", nil
}

// referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func referenced(err error) error {
	if errdefs.Is(err, errdefs.NotFound) {
		return errdefs.Invalidf("%v", err)
	}
	return err
}
