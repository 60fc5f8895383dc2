package libvirt

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
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
// disks, and of its memory when it runs. When libvirt refuses because a
// writable disk is not a qcow2 image, the error names the disk.
func (d *Driver) CreateSnapshot(ctx context.Context, domain, name string) (hypervisor.SnapshotInfo, error) {
	info, err := d.createSnapshot(ctx, domain, name)
	if err != nil {
		return hypervisor.SnapshotInfo{}, fmt.Errorf("create snapshot %q of domain %s: %w", name, domain, err)
	}
	return info, nil
}

func (d *Driver) createSnapshot(ctx context.Context, domain, name string) (hypervisor.SnapshotInfo, error) {
	if name == "" {
		return hypervisor.SnapshotInfo{}, errors.New("no snapshot name")
	}
	doc, err := (&libvirtxml.DomainSnapshot{Name: name}).Marshal()
	if err != nil {
		return hypervisor.SnapshotInfo{}, fmt.Errorf("render snapshot XML: %w", err)
	}
	var info hypervisor.SnapshotInfo
	err = d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		snap, err := dom.CreateSnapshotXML(doc, 0)
		if err != nil {
			// libvirt checks every disk before it acts; say which one.
			if def, readErr := readDefinition(dom, 0); readErr == nil {
				if unfit := checkInternalSnapshot(def); unfit != nil {
					return fmt.Errorf("%w (libvirt: %w)", unfit, err)
				}
			}
			return err
		}
		defer snap.Free()
		taken, err := snap.GetXMLDesc(0)
		if err != nil {
			return fmt.Errorf("read the snapshot just taken: %w", classify(err))
		}
		info, _, err = snapshotInfo(taken)
		return err
	})
	return info, err
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

// snapshotState reads the domain state a snapshot records; a disk-only
// snapshot records none.
func snapshotState(state string) hypervisor.State {
	switch state {
	case "running", "blocked":
		return hypervisor.StateRunning
	case "paused":
		return hypervisor.StatePaused
	case "shutdown":
		return hypervisor.StateShuttingDown
	case "shutoff":
		return hypervisor.StateShutoff
	case "crashed":
		return hypervisor.StateCrashed
	case "pmsuspended":
		return hypervisor.StatePMSuspended
	}
	return hypervisor.StateUnknown
}

// snapshotInfo reads a snapshot's description and the name of its parent.
// It reads the elements before the saved domain definition only: the
// definition is by far the longest part, and nothing here needs it.
func snapshotInfo(doc string) (hypervisor.SnapshotInfo, string, error) {
	var head struct {
		name, state, parent, created string
	}
	dec := xml.NewDecoder(strings.NewReader(doc))
	var path []string
read:
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return hypervisor.SnapshotInfo{}, "", fmt.Errorf("parse snapshot XML: %w", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			path = append(path, el.Name.Local)
			var field *string
			switch strings.Join(path, "/") {
			case "domainsnapshot/domain":
				break read // the rest is the saved definition
			case "domainsnapshot/name":
				field = &head.name
			case "domainsnapshot/state":
				field = &head.state
			case "domainsnapshot/creationTime":
				field = &head.created
			case "domainsnapshot/parent/name":
				field = &head.parent
			}
			if len(path) == 1 && path[0] != "domainsnapshot" {
				return hypervisor.SnapshotInfo{}, "", fmt.Errorf("parse snapshot XML: root element is <%s>, not <domainsnapshot>", path[0])
			}
			if field != nil {
				var text string
				if err := dec.DecodeElement(&text, &el); err != nil {
					return hypervisor.SnapshotInfo{}, "", fmt.Errorf("parse snapshot XML: %w", err)
				}
				*field = strings.TrimSpace(text)
				path = path[:len(path)-1]
			}
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
	if head.name == "" {
		return hypervisor.SnapshotInfo{}, "", errors.New("parse snapshot XML: the snapshot has no name")
	}
	info := hypervisor.SnapshotInfo{Name: head.name, Running: head.state == "running", State: snapshotState(head.state)}
	if head.created != "" {
		secs, err := strconv.ParseInt(head.created, 10, 64)
		if err != nil {
			return hypervisor.SnapshotInfo{}, "", fmt.Errorf("snapshot %q: creation time %q: %w", head.name, head.created, err)
		}
		info.Created = time.Unix(secs, 0).UTC()
	}
	return info, head.parent, nil
}

func freeSnapshots(snaps []libvirt.DomainSnapshot) {
	for i := range snaps {
		_ = snaps[i].Free()
	}
}
