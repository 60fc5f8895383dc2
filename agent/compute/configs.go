package compute

import (
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// providerConfigs are the sizes every host offers out of the box.
var providerConfigs = []configRecord{
	{meta: meta{ID: "small", Name: "small", Description: "1 vCPU, 512 MiB memory, 10 GiB disk"}, Provider: true,
		configSpec: configSpec{CPU: 1, MemoryKiB: 512 << 10, CPUArch: "x86_64", Disks: []diskConfig{{CapacityKiB: 10 << 20, InitialLocation: "vda"}}}},
	{meta: meta{ID: "medium", Name: "medium", Description: "2 vCPUs, 2 GiB memory, 20 GiB disk"}, Provider: true,
		configSpec: configSpec{CPU: 2, MemoryKiB: 2 << 20, CPUArch: "x86_64", Disks: []diskConfig{{CapacityKiB: 20 << 20, InitialLocation: "vda"}}}},
	{meta: meta{ID: "large", Name: "large", Description: "4 vCPUs, 8 GiB memory, 40 GiB disk"}, Provider: true,
		configSpec: configSpec{CPU: 4, MemoryKiB: 8 << 20, CPUArch: "x86_64", Disks: []diskConfig{{CapacityKiB: 40 << 20, InitialLocation: "vda"}}}},
}

// Bounds of what a configuration may ask for.
const (
	minMemoryKiB = 16 << 10
	maxDisks     = 16
)

// seedConfigs writes the provider's configurations that the store does
// not hold yet.
func (s *Service) seedConfigs() error { return s.configKind().Seed(providerConfigs) }

func (s *Service) configKind() resource.Kind[configRecord, cimi.MachineConfiguration] {
	return resource.Kind[configRecord, cimi.MachineConfiguration]{Backend: s.backend(),
		Kind: kindConfigs, Type: "MachineConfiguration", MemberKey: "machineConfigurations",
		Doc: s.configDoc, Meta: func(c *configRecord) *meta { return &c.meta }, InUse: configInUse}
}

func (s *Service) configRoutes() []api.Route {
	k := s.configKind()
	return k.Routes(s.createConfig, k.Delete)
}

// configInUse refuses to delete a provider-defined configuration or one
// that templates name.
func configInUse(tx *store.Tx, c configRecord) error {
	if c.Provider {
		return errdefs.Conflictf("MachineConfiguration %s is provider-defined and cannot be deleted", c.ID)
	}
	t, found, err := records.Find(tx, kindTemplates, func(t templateRecord) bool { return t.ConfigID == c.ID })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("MachineConfiguration %s is used by MachineTemplate %s", c.ID, t.ID)
	}
	return nil
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
	return s.configKind().Create(rq, func(_ *store.Tx, id string) (configRecord, error) {
		return configRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), configSpec: spec}, nil
	})
}

// lookupConfig resolves a configuration given by reference or by value.
func (s *Service) lookupConfig(tx *store.Tx, urls api.URLs, in *cimi.MachineConfigInput) (configSpec, string, error) {
	if in == nil {
		return configSpec{}, "", errdefs.Invalidf("machineConfig is required")
	}
	if in.Href != "" {
		c, err := resource.Lookup[configRecord](tx, urls, in.Href, kindConfigs, "MachineConfiguration")
		if err != nil {
			return configSpec{}, "", err
		}
		return c.configSpec, c.ID, nil
	}
	spec := configFromInput(*in)
	if err := s.validateConfig(&spec); err != nil {
		return configSpec{}, "", err
	}
	return spec, "", nil
}
