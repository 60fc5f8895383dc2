package storage

import (
	"cimid/agent/records"
	"slices"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/store"
)

// VolumeInfo is what a Machine needs to know of a Volume it uses.
type VolumeInfo struct {
	ID          string
	Name        string
	State       string
	Path        string // image file in the pool
	DiskFormat  string // qcow2 or raw
	CapacityKiB int64
	// Shareable Volumes are attached to several Machines at once; their
	// disks must say so to the hypervisor.
	Shareable bool
	Users     []Use
}

func infoOf(v volumeRecord) VolumeInfo {
	return VolumeInfo{ID: v.ID, Name: v.Name, State: v.State, Path: v.Path, DiskFormat: v.DiskFormat,
		CapacityKiB: v.CapacityKiB, Shareable: v.Shareable, Users: slices.Clone(v.Users)}
}

// LookupVolume reads a Volume in tx.
func (s *Service) LookupVolume(tx *store.Tx, id string) (VolumeInfo, error) {
	v, err := records.Get[volumeRecord](tx, kindVolumes, id, "Volume")
	if err != nil {
		return VolumeInfo{}, err
	}
	return infoOf(v), nil
}

// UseVolume records, in tx, that u uses the Volume. An attachment (u with
// a Target) is refused, with a Conflict naming the reason, unless the
// Volume is AVAILABLE, not attached to the same Machine already nor, when
// it is not shareable, to another one, and holds no snapshot of another
// Machine. A snapshot hold is refused while another Machine has the Volume
// attached. A Volume that does not exist gives NotFound.
func (s *Service) UseVolume(tx *store.Tx, id string, u Use) (VolumeInfo, error) {
	v, err := records.Get[volumeRecord](tx, kindVolumes, id, "Volume")
	if err != nil {
		return VolumeInfo{}, err
	}
	if v.State != cimi.StateAvailable {
		return VolumeInfo{}, errdefs.Conflictf("Volume %s is %s, not AVAILABLE", id, v.State)
	}
	for _, cur := range v.Users {
		switch {
		case cur.User == u.User && cur.Attached() == u.Attached():
			if u.Attached() {
				return VolumeInfo{}, errdefs.Conflictf("Volume %s is already attached to Machine %s as %s", id, cur.Machine, cur.Target)
			}
			return infoOf(v), nil
		case u.Attached() && cur.Attached() && !v.Shareable:
			return VolumeInfo{}, errdefs.Conflictf("Volume %s is attached to Machine %s as %s; it is not shareable, so it is attached to one Machine at a time (a Volume created with shareable true attaches to several)", id, cur.Machine, cur.Target)
		case u.Attached() && !cur.Attached() && cur.Machine != u.Machine:
			return VolumeInfo{}, errdefs.Conflictf("Volume %s holds %s, a snapshot of Machine %s: delete that snapshot before attaching the Volume elsewhere", id, cur.User, cur.Machine)
		case !u.Attached() && cur.Attached() && cur.Machine != u.Machine:
			return VolumeInfo{}, errdefs.Conflictf("Volume %s is also attached to Machine %s as %s: a snapshot of Machine %s cannot keep part of it", id, cur.Machine, cur.Target, u.Machine)
		}
	}
	v.Users = append(v.Users, u)
	if err := records.Put(tx, kindVolumes, id, v); err != nil {
		return VolumeInfo{}, err
	}
	return infoOf(v), nil
}

// ReleaseVolume forgets, in tx, that user uses the Volume: its attachment
// (attached) or its snapshot hold. A use that is not recorded, or a Volume
// that no longer exists, is not an error.
func (s *Service) ReleaseVolume(tx *store.Tx, id, user string, attached bool) error {
	v, err := records.Get[volumeRecord](tx, kindVolumes, id, "Volume")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	n := len(v.Users)
	v.Users = slices.DeleteFunc(v.Users, func(u Use) bool { return u.User == user && u.Attached() == attached })
	if len(v.Users) == n {
		return nil
	}
	if len(v.Users) == 0 {
		v.Users = nil
	}
	return records.Put(tx, kindVolumes, id, v)
}

// SnapshotHolders lists the snapshot holds on a Volume: the
// users that are not attachments.
func SnapshotHolders(info VolumeInfo) []Use {
	var out []Use
	for _, u := range info.Users {
		if !u.Attached() {
			out = append(out, u)
		}
	}
	return out
}
