package fake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"cimid/hypervisor"
)

// targets returns the device sets a change applies to: the persistent
// definition, and the live devices when live is set and the domain is
// active.
func (dom *domain) targets(live bool) ([]*[]hypervisor.Disk, []*[]hypervisor.NIC, error) {
	var disks []*[]hypervisor.Disk
	var nics []*[]hypervisor.NIC
	if dom.persistent {
		disks, nics = append(disks, &dom.spec.Disks), append(nics, &dom.spec.NICs)
	}
	if live && dom.live != nil {
		disks, nics = append(disks, &dom.live.disks), append(nics, &dom.live.nics)
	}
	if len(disks) == 0 {
		return nil, nil, errors.New("the domain is transient: only a live change applies to it")
	}
	return disks, nics, nil
}

func diskIndex(disks []hypervisor.Disk, target string) int {
	return slices.IndexFunc(disks, func(d hypervisor.Disk) bool { return d.Target == target })
}

func nicIndex(nics []hypervisor.NIC, mac string) int {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return -1
	}
	return slices.IndexFunc(nics, func(n hypervisor.NIC) bool {
		hw, err := net.ParseMAC(n.MAC)
		return err == nil && slices.Equal(hw, want)
	})
}

// AttachDisk adds disk to the persistent definition and, when live is set
// and the domain is active, to the running guest. The same image at the
// same target is left as it is; another image there is an error, and so is
// an image another running domain holds (see lockImages). Like libvirt
// 9.0, device changes emit no lifecycle event.
func (d *Driver) AttachDisk(ctx context.Context, name string, disk hypervisor.Disk, live bool) error {
	return d.operate(ctx, "AttachDisk", "attach disk "+disk.Target+" to", name, func(dom *domain) error {
		if err := validateDisk(disk); err != nil {
			return err
		}
		sets, _, err := dom.targets(live)
		if err != nil {
			return err
		}
		for _, set := range sets {
			if i := diskIndex(*set, disk.Target); i >= 0 && (*set)[i].Path != disk.Path {
				return fmt.Errorf("target %s already holds %q", disk.Target, (*set)[i].Path)
			}
		}
		if live && dom.live != nil && diskIndex(dom.live.disks, disk.Target) < 0 {
			if err := d.lockImages(name, []hypervisor.Disk{disk}); err != nil {
				return err
			}
		}
		for _, set := range sets {
			if diskIndex(*set, disk.Target) < 0 {
				*set = append(*set, disk)
			}
		}
		return nil
	})
}

// DetachDisk removes the disk at target from the definitions concerned; the
// fake guest releases it at once. The error wraps ErrNotFound when none of
// them holds it.
func (d *Driver) DetachDisk(ctx context.Context, name, target string, live bool) error {
	return d.operate(ctx, "DetachDisk", "detach disk "+target+" from", name, func(dom *domain) error {
		sets, _, err := dom.targets(live)
		if err != nil {
			return err
		}
		found := false
		for _, set := range sets {
			if i := diskIndex(*set, target); i >= 0 {
				*set = slices.Delete(*set, i, i+1)
				found = true
			}
		}
		if !found {
			return notFound("no disk " + target)
		}
		delete(dom.diskSizes, target)
		return nil
	})
}

// ResizeDisk records the new size of a disk of a running guest; see
// DomainInfo.DiskSizes.
func (d *Driver) ResizeDisk(ctx context.Context, name, target string, size uint64) error {
	verb := fmt.Sprintf("resize disk %s to %d bytes of", target, size)
	return d.operate(ctx, "ResizeDisk", verb, name, func(dom *domain) error {
		if dom.live == nil {
			return errNotRunning
		}
		if diskIndex(dom.live.disks, target) < 0 {
			return notFound("no disk " + target)
		}
		dom.diskSizes[target] = size
		return nil
	})
}

// AttachNIC adds an interface like AttachDisk adds a disk; without a MAC it
// gets a random one.
func (d *Driver) AttachNIC(ctx context.Context, name string, nic hypervisor.NIC, live bool) error {
	return d.operate(ctx, "AttachNIC", "attach NIC on network "+nic.Network+" to", name, func(dom *domain) error {
		if nic.Network == "" {
			return errors.New("no network")
		}
		if nic.MAC == "" {
			nic.MAC = newMAC()
		} else if hw, err := net.ParseMAC(nic.MAC); err != nil || len(hw) != 6 {
			return fmt.Errorf("invalid MAC address %q", nic.MAC)
		} else {
			nic.MAC = hw.String()
		}
		nic.Model = cmp.Or(nic.Model, "virtio")
		_, sets, err := dom.targets(live)
		if err != nil {
			return err
		}
		for _, set := range sets {
			if i := nicIndex(*set, nic.MAC); i >= 0 && (*set)[i].Network != nic.Network {
				return fmt.Errorf("MAC %s is already in use on network %q", nic.MAC, (*set)[i].Network)
			}
		}
		for _, set := range sets {
			if nicIndex(*set, nic.MAC) < 0 {
				*set = append(*set, nic)
			}
		}
		return nil
	})
}

// DetachNIC removes the interface with mac like DetachDisk removes a disk.
func (d *Driver) DetachNIC(ctx context.Context, name, mac string, live bool) error {
	return d.operate(ctx, "DetachNIC", "detach NIC "+mac+" from", name, func(dom *domain) error {
		_, sets, err := dom.targets(live)
		if err != nil {
			return err
		}
		found := false
		for _, set := range sets {
			if i := nicIndex(*set, mac); i >= 0 {
				*set = slices.Delete(*set, i, i+1)
				found = true
			}
		}
		if !found {
			return notFound("no interface " + mac)
		}
		return nil
	})
}

// DomainNICs lists the interfaces of the persistent definition.
func (d *Driver) DomainNICs(ctx context.Context, name string) ([]hypervisor.NIC, error) {
	var nics []hypervisor.NIC
	err := d.operate(ctx, "DomainNICs", "list NICs of", name, func(dom *domain) error {
		nics = slices.Clone(dom.spec.NICs)
		return nil
	})
	return nics, err
}

// snapshot is a fake internal snapshot: the definition and run state of
// the domain when it was taken.
type snapshot struct {
	info hypervisor.SnapshotInfo
	spec hypervisor.DomainSpec
}

func snapshotIndex(snaps []snapshot, name string) int {
	return slices.IndexFunc(snaps, func(s snapshot) bool { return s.info.Name == name })
}

// CreateSnapshot records a snapshot of the domain. Like the libvirt driver
// it refuses writable disks that are not qcow2, and an existing name.
func (d *Driver) CreateSnapshot(ctx context.Context, name, snap string) (hypervisor.SnapshotInfo, error) {
	var info hypervisor.SnapshotInfo
	err := d.operate(ctx, "CreateSnapshot", fmt.Sprintf("create snapshot %q of", snap), name, func(dom *domain) error {
		if snap == "" {
			return errors.New("no snapshot name")
		}
		if snapshotIndex(dom.snapshots, snap) >= 0 {
			return fmt.Errorf("snapshot %q exists", snap)
		}
		disks := dom.spec.Disks
		if dom.live != nil {
			disks = dom.live.disks
		}
		var errs []error
		for _, disk := range disks {
			if cmp.Or(disk.Device, "disk") == "disk" && !disk.ReadOnly && disk.Format != "qcow2" {
				errs = append(errs, fmt.Errorf("disk %s is %s, internal snapshots need qcow2", disk.Target, disk.Format))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		info = hypervisor.SnapshotInfo{
			Name:    snap,
			Running: dom.state == hypervisor.StateRunning,
			State:   dom.state,
			Created: time.Now().UTC().Truncate(time.Second),
		}
		dom.snapshots = append(dom.snapshots, snapshot{info: info, spec: cloneSpec(dom.spec)})
		return nil
	})
	return info, err
}

// RevertSnapshot restores the definition saved in the snapshot (keeping the
// current metadata, like the libvirt driver) and runs the domain if and
// only if it ran when the snapshot was taken.
func (d *Driver) RevertSnapshot(ctx context.Context, name, snap string) error {
	return d.operate(ctx, "RevertSnapshot", fmt.Sprintf("revert to snapshot %q", snap), name, func(dom *domain) error {
		i := snapshotIndex(dom.snapshots, snap)
		if i < 0 {
			return notFound(fmt.Sprintf("no snapshot %q", snap))
		}
		saved := dom.snapshots[i]
		if saved.info.Running {
			if err := d.lockImages(name, saved.spec.Disks); err != nil {
				return err
			}
		}
		md := dom.spec.Metadata
		dom.spec = cloneSpec(saved.spec)
		dom.spec.Metadata = md
		dom.managedSave = false
		d.emit(name, hypervisor.EventDefined)
		wasActive := dom.active()
		if !saved.info.Running {
			if wasActive {
				d.stop(dom, hypervisor.EventStopped)
			}
			return nil
		}
		dom.state = hypervisor.StateRunning
		dom.live = &devices{disks: slices.Clone(dom.spec.Disks), nics: slices.Clone(dom.spec.NICs)}
		dom.generation++
		if !wasActive {
			dom.bootedAt = time.Now()
			d.emit(name, hypervisor.EventStarted)
		}
		return nil
	})
}

// DeleteSnapshot forgets a snapshot; the error wraps ErrNotFound when there
// is none of that name.
func (d *Driver) DeleteSnapshot(ctx context.Context, name, snap string) error {
	return d.operate(ctx, "DeleteSnapshot", fmt.Sprintf("delete snapshot %q of", snap), name, func(dom *domain) error {
		i := snapshotIndex(dom.snapshots, snap)
		if i < 0 {
			return notFound(fmt.Sprintf("no snapshot %q", snap))
		}
		dom.snapshots = slices.Delete(dom.snapshots, i, i+1)
		return nil
	})
}

// ListSnapshots lists the snapshots of the domain, oldest first.
func (d *Driver) ListSnapshots(ctx context.Context, name string) ([]hypervisor.SnapshotInfo, error) {
	var list []hypervisor.SnapshotInfo
	err := d.operate(ctx, "ListSnapshots", "list snapshots of", name, func(dom *domain) error {
		list = make([]hypervisor.SnapshotInfo, 0, len(dom.snapshots))
		for _, s := range dom.snapshots {
			list = append(list, s.info)
		}
		return nil
	})
	return list, err
}
