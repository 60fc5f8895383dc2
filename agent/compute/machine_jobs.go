package compute

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/network"
	"cimid/hypervisor"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

// pollInterval is how often a Job waiting on a domain looks at it.
const pollInterval = 100 * time.Millisecond

func (s *Service) registerJobs() {
	s.jobs.Register("image.create", job.Kind{Run: s.runCreateImage, Resumable: true, Cancellable: true,
		Cleanup: s.cleanupImage})
	s.jobs.Register("image.delete", job.Kind{Run: s.runDeleteImage, Resumable: true})
	s.jobs.Register("machine.create", job.Kind{Run: s.runCreate, Resumable: true, Cancellable: true,
		Cleanup: s.cleanupMachine})
	s.jobs.Register("machine.start", job.Kind{Run: s.machineJob(s.doStart), Resumable: true})
	s.jobs.Register("machine.stop", job.Kind{Run: s.machineJob(s.doStop), Resumable: true, Cancellable: true})
	s.jobs.Register("machine.restart", job.Kind{Run: s.machineJob(s.doRestart), Resumable: true, Cancellable: true})
	s.jobs.Register("machine.pause", job.Kind{Run: s.machineJob(s.doPause), Resumable: true})
	s.jobs.Register("machine.suspend", job.Kind{Run: s.machineJob(s.doSuspend), Resumable: true})
	s.jobs.Register("machine.delete", job.Kind{Run: s.runDelete, Resumable: true})
	s.registerStorageJobs()
}

func (s *Service) consoleLog(id string) string { return filepath.Join(s.consoleDir, id+".log") }

func (s *Service) diskFile(id string, i int) string {
	return filepath.Join(s.poolDir, fmt.Sprintf("machine-%s-disk%d.qcow2", id, i))
}

// domainSpec is the libvirt definition of a Machine, with the network
// devices (interfaces and seed CD-ROM) the network service gave for it.
func (s *Service) domainSpec(m machineRecord, dev network.Devices, desired string, deadline time.Time, force bool) hypervisor.DomainSpec {
	spec := hypervisor.DomainSpec{
		Name:       m.Domain,
		Type:       s.cfg.DomainType,
		VCPUs:      m.CPU,
		MemoryKiB:  uint64(m.MemoryKiB),
		ConsoleLog: m.ConsoleLog,
		Metadata:   s.metadataFor(m, desired, deadline, force),
	}
	for _, d := range m.Disks {
		spec.Disks = append(spec.Disks, hypervisor.Disk{Path: d.Path, Format: d.Format, Target: d.Target, Bus: "virtio", Serial: d.ID})
	}
	spec.Disks = append(spec.Disks, volumeDisks(m)...)
	if dev.Seed != nil {
		spec.Disks = append(spec.Disks, *dev.Seed)
	}
	spec.NICs = dev.NICs
	return spec
}

func (s *Service) metadataFor(m machineRecord, desired string, deadline time.Time, force bool) hypervisor.Metadata {
	return hypervisor.Metadata{Instance: s.cfg.Instance, MachineID: m.ID, DesiredState: desired,
		StopDeadline: deadline, ForceAfterDeadline: force}
}

// runCreate makes a Machine's disks and domain, and starts it if asked.
// Each step checks what is already there, so a resumed run continues.
func (s *Service) runCreate(ctx context.Context, x *job.Exec) error {
	var p machineParams
	if err := x.Params(&p); err != nil {
		return err
	}
	m, err := s.loadMachine(p.MachineID)
	if err != nil {
		return err
	}
	x.OnUndo("remove the Machine", func(ctx context.Context) error { return s.removeMachine(ctx, m) })
	im, err := s.loadImage(m.ImageID)
	if err != nil {
		return fmt.Errorf("base image: %w", err)
	}
	for i, d := range m.Disks {
		if _, err := os.Stat(d.Path); err == nil {
			continue
		}
		tmp := d.Path + ".part"
		if i == 0 {
			err = qemuimg.CreateOverlay(ctx, tmp, im.Path, im.Format, d.CapacityKiB*1024)
		} else {
			err = qemuimg.Create(ctx, tmp, d.Format, d.CapacityKiB*1024)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("create disk %s: %w", d.Target, err)
		}
		if err := os.Rename(tmp, d.Path); err != nil {
			return err
		}
	}
	x.Progress(30)
	dev, err := s.prepareNetworks(ctx, m.ID)
	if err != nil {
		return err
	}
	x.Progress(40)
	if err := s.drv.DefineDomain(ctx, s.domainSpec(m, dev, m.InitialState, time.Time{}, false)); err != nil {
		return err
	}
	x.Progress(50)
	if m.InitialState == cimi.StateStarted {
		if err := s.setState(m.ID, cimi.StateStarting, ""); err != nil {
			return err
		}
		if err := s.drv.Start(ctx, m.Domain); err != nil {
			return err
		}
	}
	if err := s.settle(ctx, m.ID); err != nil {
		return err
	}
	x.Commit()
	x.SetMessage("Machine created, " + m.InitialState)
	return nil
}

// cleanupMachine ends an interrupted or stopped create.
func (s *Service) cleanupMachine(ctx context.Context, rec job.Record) error {
	var p machineParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	m, err := s.loadMachine(p.MachineID)
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.removeMachine(ctx, m)
}

func (s *Service) cleanupImage(ctx context.Context, rec job.Record) error {
	var p imageParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	for _, f := range []string{s.imageFile(p.ImageID), s.imageFile(p.ImageID) + ".part", filepath.Join(s.poolDir, "download-"+p.ImageID+".part")} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindImages, p.ImageID) })
}

// removeMachine deletes the Machine's snapshots, powers off and undefines
// the domain, releases its interfaces and seed, deletes the files the
// Machine owns (never its attached volumes), then its record: the record
// goes last, once nothing it describes is left.
func (s *Service) removeMachine(ctx context.Context, m machineRecord) error {
	if err := s.deleteSnapshotsOf(ctx, m); err != nil {
		return err
	}
	if err := s.drv.Destroy(ctx, m.Domain); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("power off: %w", err)
	}
	if err := s.drv.UndefineDomain(ctx, m.Domain); err != nil {
		return fmt.Errorf("undefine: %w", err)
	}
	if err := s.releaseNetworks(ctx, m.ID); err != nil {
		return err
	}
	for _, d := range m.Disks {
		for _, f := range []string{d.Path, d.Path + ".part"} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove disk: %w", err)
			}
		}
	}
	if err := os.Remove(m.ConsoleLog); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove console log: %w", err)
	}
	return s.db.Update(func(tx *store.Tx) error {
		if err := s.releaseVolumes(tx, m); err != nil {
			return err
		}
		return tx.Delete(kindMachines, m.ID)
	})
}

func (s *Service) runDelete(ctx context.Context, x *job.Exec) error {
	var p machineParams
	if err := x.Params(&p); err != nil {
		return err
	}
	m, err := s.loadMachine(p.MachineID)
	if errdefs.Is(err, errdefs.NotFound) {
		x.SetMessage("Machine deleted with its disks before the Job was interrupted")
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.removeMachine(ctx, m); err != nil {
		s.markError(m.ID, "delete failed: "+err.Error())
		return err
	}
	x.SetMessage("Machine deleted with its disks")
	return nil
}

// machineJob wraps an action: it loads the Machine and runs the step; the
// Machine's state, as libvirt shows it then, is stored with the Job's
// end. On failure or cancel it puts the Machine back to what libvirt
// shows.
func (s *Service) machineJob(step func(ctx context.Context, x *job.Exec, m machineRecord, force bool) error) job.Handler {
	return func(ctx context.Context, x *job.Exec) error {
		var p machineParams
		if err := x.Params(&p); err != nil {
			return err
		}
		m, err := s.loadMachine(p.MachineID)
		if err != nil {
			return err
		}
		x.OnUndo("show the observed state", func(ctx context.Context) error {
			s.clearStop(ctx, m.ID)
			if err := s.settle(ctx, m.ID); err != nil {
				return err
			}
			if cur, err := s.loadMachine(m.ID); err == nil {
				s.setDesired(ctx, cur, cur.State) // no stop deadline runs any more
			}
			return nil
		})
		if err := step(ctx, x, m, p.Force); err != nil {
			return err
		}
		st, err := s.drv.DomainStatus(ctx, m.Domain)
		if err != nil {
			return err
		}
		return s.endObserved(x, m.ID, st, nil)
	}
}

func (s *Service) doStart(ctx context.Context, x *job.Exec, m machineRecord, _ bool) error {
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	if err != nil {
		return err
	}
	s.setDesired(ctx, m, cimi.StateStarted)
	switch st.State {
	case hypervisor.StateRunning:
	case hypervisor.StatePaused:
		if err := s.drv.Resume(ctx, m.Domain); err != nil {
			return err
		}
	default:
		if err := s.drv.Start(ctx, m.Domain); err != nil {
			return err
		}
	}
	if err := s.waitDomain(ctx, m.Domain, time.Minute, func(st hypervisor.DomainStatus) bool { return st.State == hypervisor.StateRunning }); err != nil {
		return err
	}
	x.SetMessage("Machine started")
	return nil
}

func (s *Service) doPause(ctx context.Context, x *job.Exec, m machineRecord, _ bool) error {
	s.setDesired(ctx, m, cimi.StatePaused)
	if err := s.drv.Pause(ctx, m.Domain); err != nil {
		if st, serr := s.drv.DomainStatus(ctx, m.Domain); serr != nil || st.State != hypervisor.StatePaused {
			return err
		}
	}
	x.SetMessage("Machine paused")
	return nil
}

func (s *Service) doSuspend(ctx context.Context, x *job.Exec, m machineRecord, _ bool) error {
	s.setDesired(ctx, m, cimi.StateSuspended)
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	if err != nil {
		return err
	}
	if !(st.State == hypervisor.StateShutoff && st.HasManagedSave) {
		if err := s.drv.ManagedSave(ctx, m.Domain); err != nil {
			return err
		}
	}
	x.SetMessage("Machine suspended, its memory saved to disk")
	return nil
}

func (s *Service) doStop(ctx context.Context, x *job.Exec, m machineRecord, force bool) error {
	if err := s.stopDomain(ctx, x, m, force); err != nil {
		return err
	}
	s.clearStop(ctx, m.ID)
	s.setDesired(ctx, m, cimi.StateStopped) // and no deadline any more
	return nil
}

// restartPhase is the checkpoint of a restart.
type restartPhase struct {
	Stopped bool `json:"stopped"`
}

func (s *Service) doRestart(ctx context.Context, x *job.Exec, m machineRecord, force bool) error {
	var phase restartPhase
	if _, err := x.Checkpoint(&phase); err != nil {
		return err
	}
	if !phase.Stopped {
		if force {
			// A forced restart is a hard reset of a running guest.
			st, err := s.drv.DomainStatus(ctx, m.Domain)
			if err != nil {
				return err
			}
			if st.State == hypervisor.StateRunning {
				if err := s.drv.Reset(ctx, m.Domain); err != nil {
					return err
				}
				s.clearStop(ctx, m.ID)
				x.SetMessage("Machine reset")
				return nil
			}
		}
		if err := s.stopDomain(ctx, x, m, force); err != nil {
			return err
		}
		if err := x.SetCheckpoint(restartPhase{Stopped: true}); err != nil {
			return err
		}
	}
	s.clearStop(ctx, m.ID)
	if err := s.setState(m.ID, cimi.StateStarting, ""); err != nil {
		return err
	}
	if err := s.doStart(ctx, x, m, false); err != nil {
		return err
	}
	x.SetMessage("Machine restarted")
	return nil
}

// stopDomain brings the domain to shut off: at once with force; otherwise
// by the ACPI power button, pressed again every StopRetry, until the stored
// deadline, after which it powers off only if the request allowed it. The
// deadline and policy are read from the record on every turn, so a resumed
// Job keeps the original deadline and an escalation takes effect at once.
func (s *Service) stopDomain(ctx context.Context, x *job.Exec, m machineRecord, force bool) error {
	if force {
		s.setDesired(ctx, m, cimi.StateStopped)
		if err := s.drv.Destroy(ctx, m.Domain); err != nil {
			return err
		}
		x.SetMessage("Machine powered off")
		return nil
	}
	cur, err := s.loadMachine(m.ID)
	if err != nil {
		return err
	}
	if err := s.drv.SetMetadata(ctx, m.Domain, s.metadataFor(m, cimi.StateStopped, cur.StopDeadline, cur.ForceOnTimeout)); err != nil {
		return err
	}
	start := s.now()
	var lastPress time.Time
	for {
		st, err := s.drv.DomainStatus(ctx, m.Domain)
		if err != nil {
			return err
		}
		if st.State == hypervisor.StateShutoff {
			x.SetMessage("guest shut down cleanly")
			return nil
		}
		cur, err := s.loadMachine(m.ID)
		if err != nil {
			return err
		}
		now := s.now()
		if !now.Before(cur.StopDeadline) {
			if !cur.ForceOnTimeout {
				return fmt.Errorf("the guest did not shut down by the deadline (%s); it is still running. Stop again with force=true to power it off, or with forceOnTimeout=true to allow it at the deadline", cur.StopDeadline.Format(time.RFC3339))
			}
			if err := s.drv.Destroy(ctx, m.Domain); err != nil {
				return err
			}
			x.SetMessage("the guest did not shut down by the deadline: powered off as the request allowed")
			return nil
		}
		if st.State == hypervisor.StatePaused {
			if err := s.drv.Resume(ctx, m.Domain); err != nil {
				return err
			}
		}
		if now.Sub(lastPress) >= s.cfg.StopRetry {
			if err := s.drv.Shutdown(ctx, m.Domain); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
				x.Log().Debug("ACPI shutdown", "err", err)
			}
			lastPress = now
		}
		if total := cur.StopDeadline.Sub(start); total > 0 {
			x.Progress(int(90 * now.Sub(start) / total))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollInterval):
		}
	}
}

// clearStop forgets a finished graceful stop's deadline.
func (s *Service) clearStop(ctx context.Context, id string) {
	err := s.db.Update(func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		m.StopDeadline, m.ForceOnTimeout, m.Restarting = time.Time{}, false, false
		return records.Put(tx, kindMachines, id, m)
	})
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		s.log.Error("clear stop deadline", "machine", id, "err", err)
	}
}

// setDesired records the state the agent now drives the domain towards in
// the domain's own metadata.
func (s *Service) setDesired(ctx context.Context, m machineRecord, desired string) {
	if err := s.drv.SetMetadata(ctx, m.Domain, s.metadataFor(m, desired, time.Time{}, false)); err != nil {
		s.log.Warn("record desired state in the domain", "machine", m.ID, "err", err)
	}
}

// waitDomain polls the domain until cond holds or timeout passes.
func (s *Service) waitDomain(ctx context.Context, name string, timeout time.Duration, cond func(hypervisor.DomainStatus) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.drv.DomainStatus(ctx, name)
		if err != nil {
			return err
		}
		if cond(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("domain %s still %s after %s", name, st.State, timeout)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollInterval):
		}
	}
}
