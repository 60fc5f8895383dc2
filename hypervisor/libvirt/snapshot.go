package libvirt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// Snapshots are internal: QEMU stores them inside every writable qcow2 disk
// of the domain, together with the memory state when the domain runs.
// libvirt 9.0 cannot revert external snapshots, and cannot take internal
// ones of UEFI guests; BIOS guests work running or stopped. Read-only disks
// and CD-ROMs are left out of a snapshot.

// CreateSnapshot takes an internal snapshot called name of domain: of its
// disks, and of its memory when it runs. It fails before asking libvirt
// when a writable disk is not a qcow2 image.
func (d *Driver) CreateSnapshot(ctx context.Context, domain, name string) error {
	if err := d.createSnapshot(ctx, domain, name); err != nil {
		return fmt.Errorf("create snapshot %q of domain %s: %w", name, domain, err)
	}
	return nil
}

func (d *Driver) createSnapshot(ctx context.Context, domain, name string) error {
	if name == "" {
		return errors.New("no snapshot name")
	}
	doc, err := (&libvirtxml.DomainSnapshot{Name: name}).Marshal()
	if err != nil {
		return fmt.Errorf("render snapshot XML: %w", err)
	}
	return d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		def, err := readDefinition(dom, 0)
		if err != nil {
			return err
		}
		if err := checkInternalSnapshot(def); err != nil {
			return err
		}
		snap, err := dom.CreateSnapshotXML(doc, 0)
		if err != nil {
			return err
		}
		return snap.Free()
	})
}

// checkInternalSnapshot refuses a definition with a writable disk that
// cannot hold an internal snapshot.
func checkInternalSnapshot(def *libvirtxml.Domain) error {
	if def.Devices == nil {
		return nil
	}
	var errs []error
	for i := range def.Devices.Disks {
		disk := &def.Devices.Disks[i]
		if cmp.Or(disk.Device, "disk") != "disk" || disk.ReadOnly != nil || disk.Source == nil {
			continue
		}
		format := ""
		if disk.Driver != nil {
			format = disk.Driver.Type
		}
		if format != "qcow2" {
			target := ""
			if disk.Target != nil {
				target = disk.Target.Dev
			}
			errs = append(errs, fmt.Errorf("disk %s is %s, internal snapshots need qcow2", target, cmp.Or(format, "of unknown format")))
		}
	}
	return errors.Join(errs...)
}

// RevertSnapshot returns domain to snapshot name: afterwards the domain runs
// if and only if it ran when the snapshot was taken. The domain's cimid
// metadata is not reverted: libvirt restores the whole definition saved in
// the snapshot, and the metadata the domain had before is written back.
func (d *Driver) RevertSnapshot(ctx context.Context, domain, name string) error {
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		snap, err := dom.SnapshotLookupByName(name, 0)
		if err != nil {
			return lookupFailed(err)
		}
		defer snap.Free()
		md, err := domainMetadata(dom)
		if err != nil {
			return classify(err)
		}
		if err := snap.RevertToSnapshot(0); err != nil {
			return err
		}
		if md == nil {
			return nil
		}
		doc, err := encodeMetadata(*md, false)
		if err != nil {
			return err
		}
		if err := setMetadata(dom, doc); err != nil {
			return fmt.Errorf("reverted, but restoring the metadata failed: %w", classify(err))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revert domain %s to snapshot %q: %w", domain, name, err)
	}
	return nil
}

// DeleteSnapshot deletes snapshot name of domain; its children are kept and
// attached to its parent. The error wraps hypervisor.ErrNotFound when there
// is no such snapshot.
func (d *Driver) DeleteSnapshot(ctx context.Context, domain, name string) error {
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		snap, err := dom.SnapshotLookupByName(name, 0)
		if err != nil {
			return lookupFailed(err)
		}
		defer snap.Free()
		if err := snap.Delete(0); err != nil {
			return lookupFailed(err) // deleted meanwhile: not found, like the lookup
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete snapshot %q of domain %s: %w", name, domain, err)
	}
	return nil
}

// ListSnapshots lists the snapshots of domain, oldest first.
func (d *Driver) ListSnapshots(ctx context.Context, domain string) ([]hypervisor.SnapshotInfo, error) {
	var list []hypervisor.SnapshotInfo
	parents := map[string]string{}
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		snaps, err := dom.ListAllSnapshots(0)
		if err != nil {
			return err
		}
		defer freeSnapshots(snaps)
		list = make([]hypervisor.SnapshotInfo, 0, len(snaps))
		for i := range snaps {
			doc, err := snaps[i].GetXMLDesc(0)
			if hasCode(err, libvirt.ERR_NO_DOMAIN_SNAPSHOT) {
				continue // deleted meanwhile
			}
			if err != nil {
				return classify(err)
			}
			info, parent, err := snapshotInfo(doc)
			if err != nil {
				return err
			}
			list = append(list, info)
			parents[info.Name] = parent
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots of domain %s: %w", domain, err)
	}
	// Creation times have one-second resolution: within a second, a
	// snapshot comes after its ancestors.
	depth := func(name string) int {
		n := 0
		for p := parents[name]; p != "" && n <= len(parents); p = parents[p] {
			n++
		}
		return n
	}
	slices.SortFunc(list, func(a, b hypervisor.SnapshotInfo) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(depth(a.Name), depth(b.Name)), strings.Compare(a.Name, b.Name))
	})
	return list, nil
}

// snapshotInfo reads a snapshot's description and the name of its parent.
func snapshotInfo(doc string) (hypervisor.SnapshotInfo, string, error) {
	var snap libvirtxml.DomainSnapshot
	if err := snap.Unmarshal(doc); err != nil {
		return hypervisor.SnapshotInfo{}, "", fmt.Errorf("parse snapshot XML: %w", err)
	}
	info := hypervisor.SnapshotInfo{Name: snap.Name, Running: snap.State == "running"}
	if snap.CreationTime != "" {
		secs, err := strconv.ParseInt(snap.CreationTime, 10, 64)
		if err != nil {
			return hypervisor.SnapshotInfo{}, "", fmt.Errorf("snapshot %q: creation time %q: %w", snap.Name, snap.CreationTime, err)
		}
		info.Created = time.Unix(secs, 0).UTC()
	}
	parent := ""
	if snap.Parent != nil {
		parent = snap.Parent.Name
	}
	return info, parent, nil
}

func freeSnapshots(snaps []libvirt.DomainSnapshot) {
	for i := range snaps {
		_ = snaps[i].Free()
	}
}
