package compute

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/network"
	"cimid/hypervisor"
	"cimid/store"
)

// What moving Machines in and out of the host needs from this service: the
// System service imports OVF packages as Machines whose disks it converts
// itself, exports stopped Machines, and drives the Machines of a System.

// ImportedMachine is a Machine made by an import from disk images already
// converted into the pool, at DiskPath(ID, i) for disk i. The first disk
// boots.
type ImportedMachine struct {
	ID          string
	Name        string
	Description string
	Properties  map[string]string
	CPU         int
	MemoryKiB   int64
	// DiskCapacityKiB holds the virtual size of each disk.
	DiskCapacityKiB []int64
}

// PoolDir is the directory of the agent's storage pool.
func (s *Service) PoolDir() string { return s.poolDir }

// DiskPath is where disk i of Machine id lives in the pool.
func (s *Service) DiskPath(id string, i int) string { return s.diskFile(id, i) }

// CheckHardware refuses a Machine this host cannot run: its vCPUs, memory
// and number of disks are checked as a MachineConfiguration's are.
func (s *Service) CheckHardware(cpu int, memoryKiB int64, disks int) error {
	if disks > maxDisks {
		return errdefs.Invalidf("at most %d disks per Machine, not %d", maxDisks, disks)
	}
	return s.validateConfig(&configSpec{CPU: cpu, MemoryKiB: memoryKiB})
}

// importedRecord is the record of an imported Machine, STOPPED.
func (s *Service) importedRecord(m ImportedMachine) machineRecord {
	rec := machineRecord{
		meta:         newMeta(m.ID, m.Name, m.Description, m.Properties, s.now()),
		State:        cimi.StateStopped,
		CPU:          m.CPU,
		MemoryKiB:    m.MemoryKiB,
		CPUArch:      "x86_64",
		InitialState: cimi.StateStopped,
		Domain:       s.domainName(m.ID),
		ConsoleLog:   s.consoleLog(m.ID),
	}
	for i, c := range m.DiskCapacityKiB {
		rec.Disks = append(rec.Disks, machineDisk{ID: diskID(i), Path: s.diskFile(m.ID, i), Format: "qcow2",
			Target: "vd" + string(rune('a'+i)), CapacityKiB: c})
	}
	return rec
}

// AttachImported records, in tx, the interfaces of an imported Machine
// before its domain is defined; an empty list gives it none.
func (s *Service) AttachImported(tx *store.Tx, m ImportedMachine, ifaces []network.InterfaceSpec) error {
	if s.cfg.Networks == nil {
		if len(ifaces) > 0 {
			return errNoNetworks
		}
		return nil
	}
	if ifaces == nil {
		ifaces = []network.InterfaceSpec{}
	}
	return s.cfg.Networks.AttachMachine(tx, network.MachineInfo{ID: m.ID, Name: m.Name, Domain: s.domainName(m.ID)},
		network.TemplateSpec{Interfaces: ifaces})
}

// DefineImported defines the shut-off domain of an imported Machine whose
// disks are in place and whose interfaces AttachImported recorded. The
// Machine's record is written afterwards by AddImported; until then the
// domain is known only to the importing Job, which undoes it with
// RemoveImported.
func (s *Service) DefineImported(ctx context.Context, m ImportedMachine) error {
	if err := s.CheckHardware(m.CPU, m.MemoryKiB, len(m.DiskCapacityKiB)); err != nil {
		return err
	}
	rec := s.importedRecord(m)
	for _, d := range rec.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("disk %s of imported Machine %s: %w", d.Target, m.ID, err)
		}
	}
	dev, err := s.prepareNetworks(ctx, m.ID)
	if err != nil {
		return err
	}
	if err := s.drv.DefineDomain(ctx, s.domainSpec(rec, dev, cimi.StateStopped, time.Time{}, false)); err != nil {
		return fmt.Errorf("define the domain of imported Machine %s: %w", m.ID, err)
	}
	return nil
}

// AddImported writes, in tx, the record of an imported Machine whose
// domain DefineImported defined: the Machine appears STOPPED with its
// disks and interfaces.
func (s *Service) AddImported(tx *store.Tx, m ImportedMachine) error {
	if _, err := tx.Get(kindMachines, m.ID); err == nil {
		return errdefs.Conflictf("Machine %s already exists", m.ID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return records.Put(tx, kindMachines, m.ID, s.importedRecord(m))
}

// RemoveImported undoes an import of Machine id at any point: with a
// record, the Machine is removed as a delete removes it; without one, its
// domain, interfaces, disk files and console log go. Nothing left is not
// an error.
func (s *Service) RemoveImported(ctx context.Context, id string) error {
	m, err := s.loadMachine(id)
	if err == nil {
		return s.removeMachine(ctx, m)
	}
	if !errdefs.Is(err, errdefs.NotFound) {
		return err
	}
	domain := s.domainName(id)
	if err := s.drv.Destroy(ctx, domain); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("power off %s: %w", domain, err)
	}
	if err := s.drv.UndefineDomain(ctx, domain); err != nil {
		return fmt.Errorf("undefine %s: %w", domain, err)
	}
	if err := s.releaseNetworks(ctx, id); err != nil {
		return err
	}
	for i := 0; i < maxDisks; i++ {
		if err := removeIfExists(s.diskFile(id, i), s.diskFile(id, i)+".part"); err != nil {
			return fmt.Errorf("remove disk: %w", err)
		}
	}
	return removeIfExists(s.consoleLog(id))
}

// MachineInterfaces lists the interfaces of Machine id, for an export;
// none without a network service.
func (s *Service) MachineInterfaces(id string) ([]network.InterfaceInfo, error) {
	if s.cfg.Networks == nil {
		return nil, nil
	}
	return s.cfg.Networks.MachineInterfaces(id)
}

// DescribedDisk is one disk of a Machine as an export sees it.
type DescribedDisk struct {
	Path        string
	Format      string // qcow2 or raw
	Target      string // vda, vdb...
	CapacityKiB int64
	// VolumeID is set for an attached Volume.
	VolumeID string
	// SharedWith lists the other Machines a shareable Volume is attached
	// to: they write the same file.
	SharedWith []string
}

// MachineDescription is a Machine's hardware and disks, for an export.
type MachineDescription struct {
	ID          string
	Name        string
	Description string
	State       string
	CPU         int
	MemoryKiB   int64
	// Disks are the Machine's own disks, then its attached Volumes, in
	// guest device order.
	Disks []DescribedDisk
}

// DescribeMachine reads, in tx, what an export of Machine id needs.
func (s *Service) DescribeMachine(tx *store.Tx, id string) (MachineDescription, error) {
	m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
	if err != nil {
		return MachineDescription{}, err
	}
	d := MachineDescription{ID: m.ID, Name: m.Name, Description: m.Description, State: m.State, CPU: m.CPU, MemoryKiB: m.MemoryKiB}
	for _, disk := range m.Disks {
		d.Disks = append(d.Disks, DescribedDisk{Path: disk.Path, Format: disk.Format, Target: disk.Target, CapacityKiB: disk.CapacityKiB})
	}
	for _, mv := range m.Volumes {
		if mv.State != attachAttached {
			continue
		}
		v := DescribedDisk{Path: mv.Path, Format: mv.Format, Target: mv.Target, VolumeID: mv.VolumeID}
		if s.cfg.Volumes != nil {
			if info, err := s.cfg.Volumes.LookupVolume(tx, mv.VolumeID); err == nil {
				v.CapacityKiB = info.CapacityKiB
				for _, u := range info.Users {
					if u.Attached() && u.Machine != id && !slices.Contains(v.SharedWith, u.Machine) {
						v.SharedWith = append(v.SharedWith, u.Machine)
					}
				}
			}
		}
		d.Disks = append(d.Disks, v)
	}
	slices.SortStableFunc(d.Disks, func(a, b DescribedDisk) int {
		if len(a.Target) != len(b.Target) {
			return len(a.Target) - len(b.Target)
		}
		return strings.Compare(a.Target, b.Target)
	})
	return d, nil
}

// MachineExists reports, in tx, whether Machine id exists.
func (s *Service) MachineExists(tx *store.Tx, id string) bool {
	_, err := tx.Get(kindMachines, id)
	return err == nil
}

// SubmitAction starts the Job of a Machine action (start, stop, restart,
// pause, suspend) as the action's operation would, with the parameters of
// act. It fails with Conflict when the Machine's state does not allow the
// action now.
func (s *Service) SubmitAction(id, name string, act cimi.Action) (job.Record, error) {
	i := slices.IndexFunc(machineActions, func(a machineAction) bool { return a.name == name })
	if i < 0 {
		return job.Record{}, errdefs.Invalidf("Machines have no %s action", name)
	}
	a := machineActions[i]
	timeout, forceOnTimeout, err := s.stopPolicy(a, act)
	if err != nil {
		return job.Record{}, err
	}
	path := machinePath(id)
	rec := job.Record{Kind: a.kind, Action: cimi.ActionURI(a.name), Name: a.name + " Machine", Target: path, Locks: []string{path}}
	return s.submit(rec, machineParams{MachineID: id, Force: act.Force != nil && *act.Force}, s.actionIntent(a, id, timeout, forceOnTimeout))
}

// SubmitDelete starts the Job that deletes Machine id with its disks, as
// its delete operation would.
func (s *Service) SubmitDelete(id string) (job.Record, error) {
	path := machinePath(id)
	return s.submit(job.Record{Kind: "machine.delete", Action: cimi.RelDelete, Name: "delete Machine", Target: path, Locks: []string{path}},
		machineParams{MachineID: id},
		func(tx *store.Tx) error {
			m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
			if err != nil {
				return err
			}
			if m.State == cimi.StateDeleting {
				return errdefs.Conflictf("Machine %s is already being deleted", id)
			}
			m.State = cimi.StateDeleting
			return records.Put(tx, kindMachines, id, m)
		})
}
