package system

import (
	"fmt"
	"slices"
	"strings"

	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/ovf"
)

// maxImportMachines bounds the Machines one package may create.
const maxImportMachines = 32

// importPlan is what an import will create, read from a package before
// anything is.
type importPlan struct {
	name        string
	description string
	machines    []machinePlan
	warnings    []string
	// storedBytes is the size of every disk file as stored, the measure of
	// the conversion work.
	storedBytes int64
}

type machinePlan struct {
	id          string
	name        string
	description string
	cpu         int
	memoryKiB   int64
	osType      string
	osID        int
	firmware    string
	disks       []diskPlan
	nics        []nicPlan
}

type diskPlan struct {
	diskID string
	// file holds the image; nil for a disk created blank.
	file *ovf.File
	// capacity is the declared virtual size in bytes, 0 when only the
	// image knows it.
	capacity int64
	format   string // as declared
}

type nicPlan struct {
	network string // as the package names it
	model   string // this host's model
	mac     string // "" for a generated one
}

func (p *importPlan) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !slices.Contains(p.warnings, msg) {
		p.warnings = append(p.warnings, msg)
	}
}

// planImport reads a package into a plan and checks it against what this
// host can run. Machine ids are chosen here.
func (s *Service) planImport(p *ovf.Package) (*importPlan, error) {
	env := p.Envelope
	plan := &importPlan{}
	for _, w := range p.Warnings {
		plan.warnf("%s", w)
	}
	systems := env.VirtualSystems()
	switch {
	case len(systems) == 0:
		return nil, errdefs.Invalidf("the package describes no VirtualSystem")
	case len(systems) > maxImportMachines:
		return nil, errdefs.Invalidf("the package describes %d VirtualSystems; at most %d are imported at once", len(systems), maxImportMachines)
	}
	switch c := env.Content.(type) {
	case *ovf.VirtualSystemCollection:
		plan.name, plan.description = firstNonEmpty(c.Name, c.ID), c.Annotation
	case *ovf.VirtualSystem:
		plan.name, plan.description = firstNonEmpty(c.Name, c.ID), c.Annotation
	}
	for _, vs := range systems {
		m, err := s.planMachine(plan, env, vs)
		if err != nil {
			return nil, err
		}
		plan.machines = append(plan.machines, m)
	}
	return plan, nil
}

func (s *Service) planMachine(plan *importPlan, env *ovf.Envelope, vs *ovf.VirtualSystem) (machinePlan, error) {
	where := fmt.Sprintf("VirtualSystem %q", vs.ID)
	hw := vs.Machine
	m := machinePlan{id: job.NewID(), name: firstNonEmpty(vs.Name, vs.ID), description: vs.Annotation, cpu: hw.CPUs, firmware: hw.Firmware}
	if vs.OS != nil {
		m.osType, m.osID = vs.OS.Type(), vs.OS.ID
	}
	if m.cpu <= 0 {
		m.cpu = 1
		plan.warnf("%s declares no CPU; it gets 1 vCPU", where)
	}
	if hw.MemoryBytes <= 0 {
		return m, errdefs.Invalidf("%s declares no memory", where)
	}
	m.memoryKiB = (hw.MemoryBytes + 1023) / 1024
	if hw.Firmware == "efi" {
		plan.warnf("%s asks for UEFI firmware; this host boots Machines with BIOS", where)
	}
	for _, dd := range hw.Disks {
		d := diskPlan{diskID: dd.DiskID, capacity: dd.CapacityBytes}
		if dd.DiskID != "" {
			disk, ok := env.Disk(dd.DiskID)
			if !ok {
				return m, errdefs.Invalidf("%s: disk %q is not in DiskSection", where, dd.DiskID)
			}
			d.format = disk.Format
			if disk.ParentRef != "" {
				return m, errdefs.Invalidf("%s: disk %q is a delta of disk %q; differencing disks are not imported", where, dd.DiskID, disk.ParentRef)
			}
		}
		if dd.FileID != "" {
			f, ok := env.File(dd.FileID)
			if !ok {
				return m, errdefs.Invalidf("%s: disk %q names File %q, which References does not list", where, dd.DiskID, dd.FileID)
			}
			d.file = &f
			plan.storedBytes += f.Size
		}
		if d.file == nil && d.capacity <= 0 {
			plan.warnf("%s: drive %q has neither an image nor a capacity; it is left out", where, dd.InstanceID)
			continue
		}
		m.disks = append(m.disks, d)
	}
	for _, r := range hw.Removables {
		if r.FileID != "" || r.DiskID != "" {
			plan.warnf("%s: the %s drive with %s is not imported", where, r.Device, firstNonEmpty(r.Href, r.DiskID))
		}
	}
	if len(m.disks) == 0 {
		plan.warnf("%s has no disk", where)
	}
	for _, n := range hw.NICs {
		model, warn := nicModel(n.Model)
		if warn != "" {
			plan.warnf("%s: %s", where, warn)
		}
		mac := packageMAC(n.MAC)
		if n.MAC != "" && mac == "" {
			plan.warnf("%s: NIC MAC address %q is not a unicast Ethernet address; a new one is generated", where, n.MAC)
		}
		if !n.Connected {
			plan.warnf("%s: NIC %q is marked disconnected; it is imported connected", where, n.InstanceID)
		}
		m.nics = append(m.nics, nicPlan{network: n.Network, model: model, mac: mac})
	}
	if err := s.compute.CheckHardware(m.cpu, m.memoryKiB, len(m.disks)); err != nil {
		return m, errdefs.Wrap(errdefs.ClassOf(err), fmt.Errorf("%s: %w", where, err))
	}
	return m, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
