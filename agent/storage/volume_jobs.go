package storage

import (
	"cimid/agent/records"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/hostimage"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

func (s *Service) registerJobs() {
	s.jobs.Register("volume.create", job.Kind{Run: s.runCreateVolume, Resumable: true, Cancellable: true, Cleanup: s.cleanupVolume})
	s.jobs.Register("volume.delete", job.Kind{Run: s.runDeleteVolume, Resumable: true})
	s.jobs.Register("volume.resize", job.Kind{Run: s.runResizeVolume, Resumable: true})
	s.jobs.Register("volumeImage.create", job.Kind{Run: s.runCreateImage, Resumable: true, Cancellable: true, Cleanup: s.cleanupImage})
	s.jobs.Register("volumeImage.delete", job.Kind{Run: s.runDeleteImage, Resumable: true})
}

// removeFiles deletes files, ignoring those already gone.
func removeFiles(files ...string) error {
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	return nil
}

// volumeFiles are every file a Volume may have in the pool, the partial
// ones of an interrupted creation included.
func volumeFiles(v volumeRecord) []string {
	return []string{v.Path, v.Path + ".part", v.Path + ".mkfs.part"}
}

// removeVolume deletes a Volume's files, then its record.
func (s *Service) removeVolume(ctx context.Context, v volumeRecord) error {
	if err := s.ahead.discard(v.ID); err != nil {
		return err
	}
	if err := removeFiles(volumeFiles(v)...); err != nil {
		return err
	}
	s.refreshPool(ctx)
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindVolumes, v.ID) })
}

// runCreateVolume makes a Volume's image file: empty, with a file system,
// or a copy of a VolumeImage. Re-runnable: a finished file is kept, a
// partial one is made again.
func (s *Service) runCreateVolume(ctx context.Context, x *job.Exec) error {
	var p volumeParams
	if err := x.Params(&p); err != nil {
		return err
	}
	v, err := view[volumeRecord](s.db, kindVolumes, p.VolumeID, "Volume")
	if err != nil {
		return err
	}
	x.OnUndo("remove the Volume", func(ctx context.Context) error { return s.removeVolume(ctx, v) })
	if _, err := os.Stat(v.Path); err != nil {
		if err := s.makeVolumeFile(ctx, x, v); err != nil {
			return err
		}
	}
	what := "empty"
	switch {
	case v.ImageID != "":
		what = "a copy of VolumeImage " + v.ImageID
	case v.Format != "":
		what = "formatted as " + v.Format
	}
	x.SetMessage(fmt.Sprintf("Volume created: %d KiB %s, %s", v.CapacityKiB, v.DiskFormat, what))
	// The Volume turns AVAILABLE in the transaction that ends the Job.
	return x.Succeed(func(tx *store.Tx) error {
		return records.Edit(tx, kindVolumes, v.ID, "Volume", func(cur *volumeRecord) error {
			cur.State = cimi.StateAvailable
			return nil
		})
	})
}

func (s *Service) makeVolumeFile(ctx context.Context, x *job.Exec, v volumeRecord) error {
	tmp, mkfsTmp := v.Path+".part", v.Path+".mkfs.part"
	made, err := s.ahead.take(ctx, v.ID)
	if err != nil {
		return err
	}
	if made {
		err := os.Rename(tmp, v.Path)
		s.ahead.forget(v.ID)
		return err
	}
	if err := s.ahead.discard(v.ID); err != nil { // made ahead, but failed
		return err
	}
	if err := removeFiles(tmp, mkfsTmp); err != nil {
		return err
	}
	size := v.CapacityKiB * 1024
	progress := func(pct float64) { x.Progress(5 + int(pct*0.9)) }
	switch {
	case v.ImageID != "":
		im, err := view[imageRecord](s.db, kindImages, v.ImageID, "VolumeImage")
		if err != nil {
			return fmt.Errorf("source image: %w", err)
		}
		if err := qemuimg.Convert(ctx, im.Path, im.Format, tmp, v.DiskFormat, progress); err != nil {
			return err
		}
		if v.CapacityKiB > im.VirtualSizeKiB {
			if err := qemuimg.Resize(ctx, tmp, v.DiskFormat, size); err != nil {
				return err
			}
		}
	case v.Format != "":
		if err := qemuimg.Create(ctx, mkfsTmp, diskRaw, size); err != nil {
			return err
		}
		if err := s.mkfs.make(ctx, v.Format, mkfsTmp); err != nil {
			return err
		}
		x.Progress(40)
		if v.DiskFormat == diskRaw {
			if err := os.Rename(mkfsTmp, tmp); err != nil {
				return err
			}
		} else {
			if err := qemuimg.Convert(ctx, mkfsTmp, diskRaw, tmp, v.DiskFormat, nil); err != nil {
				return err
			}
			if err := removeFiles(mkfsTmp); err != nil {
				return err
			}
		}
	default:
		if err := qemuimg.Create(ctx, tmp, v.DiskFormat, size); err != nil {
			return err
		}
	}
	return os.Rename(tmp, v.Path)
}

// cleanupVolume ends an interrupted or stopped create.
func (s *Service) cleanupVolume(ctx context.Context, rec job.Record) error {
	var p volumeParams
	if err := unmarshalParams(rec.Params, &p); err != nil {
		return err
	}
	v, err := view[volumeRecord](s.db, kindVolumes, p.VolumeID, "Volume")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if v.State != cimi.StateCreating {
		return nil
	}
	return s.removeVolume(ctx, v)
}

func unmarshalParams(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

func (s *Service) runDeleteVolume(ctx context.Context, x *job.Exec) error {
	var p volumeParams
	if err := x.Params(&p); err != nil {
		return err
	}
	v, err := view[volumeRecord](s.db, kindVolumes, p.VolumeID, "Volume")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // a resumed delete that had finished
	}
	if err != nil {
		return err
	}
	if err := inUse(v); err != nil {
		s.setVolumeState(v.ID, cimi.StateAvailable)
		return err
	}
	if err := s.removeVolume(ctx, v); err != nil {
		s.setVolumeState(v.ID, cimi.StateError)
		return err
	}
	x.SetMessage("Volume deleted with its file")
	return nil
}

func (s *Service) setVolumeState(id, state string) {
	err := update(s.db, kindVolumes, id, "Volume", func(v *volumeRecord) error {
		v.State = state
		return nil
	})
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		s.log.Error("set volume state", "volume", id, "err", err)
	}
}

// runResizeVolume grows a Volume's file: through the hypervisor when
// running guests use it (each of them sees the new size at once), with
// qemu-img otherwise. Re-runnable: growing to the size it has is a no-op.
func (s *Service) runResizeVolume(ctx context.Context, x *job.Exec) error {
	var p volumeParams
	if err := x.Params(&p); err != nil {
		return err
	}
	v, err := view[volumeRecord](s.db, kindVolumes, p.VolumeID, "Volume")
	if err != nil {
		return err
	}
	if p.CapacityKiB <= v.CapacityKiB {
		x.SetMessage(fmt.Sprintf("Volume already has %d KiB", v.CapacityKiB))
		return nil
	}
	size := uint64(p.CapacityKiB) * 1024
	live, err := s.liveUses(ctx, v)
	if err != nil {
		return err
	}
	// The first running guest grows the file; the others, which share it,
	// only learn the new size. A guest whose disk is not plugged in yet
	// finds the grown file when it is.
	var told []string
	for _, u := range live {
		err := s.drv.ResizeDisk(ctx, u.Domain, u.Target, size)
		if errors.Is(err, hypervisor.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("grow %s of Machine %s: %w", u.Target, u.Machine, err)
		}
		told = append(told, u.Machine)
	}
	if len(told) == 0 {
		if err := qemuimg.Resize(ctx, v.Path, v.DiskFormat, int64(size)); err != nil {
			return err
		}
	}
	err = update(s.db, kindVolumes, v.ID, "Volume", func(cur *volumeRecord) error {
		cur.CapacityKiB = p.CapacityKiB
		return nil
	})
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("Volume grown from %d to %d KiB", v.CapacityKiB, p.CapacityKiB)
	switch len(told) {
	case 0:
	case 1:
		msg += "; " + runningGuests(told) + " sees the new size"
	default:
		msg += "; " + runningGuests(told) + " see the new size"
	}
	x.SetMessage(msg)
	return nil
}

// runningGuests names the guests of the Machines with ids.
func runningGuests(ids []string) string {
	if len(ids) == 1 {
		return "the running guest of Machine " + ids[0]
	}
	return "the running guests of Machines " + strings.Join(ids, ", ")
}

// liveUses returns the attachments of v to domains that run (or are
// paused); none when no running guest uses it. A domain saved to disk, or
// in a transition, cannot have its disks changed: that is a Conflict.
func (s *Service) liveUses(ctx context.Context, v volumeRecord) ([]Use, error) {
	var live []Use
	for _, u := range v.Users {
		if !u.Attached() {
			continue
		}
		st, err := s.drv.DomainStatus(ctx, u.Domain)
		if errors.Is(err, hypervisor.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case st.State == hypervisor.StateRunning || st.State == hypervisor.StatePaused:
			live = append(live, u)
		case st.HasManagedSave:
			return nil, errdefs.Conflictf("Machine %s is suspended with Volume %s attached: start or stop it first", u.Machine, v.ID)
		case st.State != hypervisor.StateShutoff:
			return nil, errdefs.Conflictf("the domain of Machine %s is %s; try again when it is running or shut off", u.Machine, st.State)
		}
	}
	return live, nil
}

// runCreateImage copies a Volume, or an image file of the host, into a
// standalone qcow2 VolumeImage. Re-runnable: it starts the copy over.
func (s *Service) runCreateImage(ctx context.Context, x *job.Exec) error {
	var p imageParams
	if err := x.Params(&p); err != nil {
		return err
	}
	im, err := view[imageRecord](s.db, kindImages, p.ImageID, "VolumeImage")
	if err != nil {
		return err
	}
	x.OnUndo("remove the VolumeImage", func(ctx context.Context) error { return s.abandonImage(ctx, im.ID) })
	src, srcFormat := "", im.SourceFormat
	if im.VolumeID != "" {
		v, err := view[volumeRecord](s.db, kindVolumes, im.VolumeID, "Volume")
		if err != nil {
			return fmt.Errorf("source volume: %w", err)
		}
		live, err := s.liveUses(ctx, v)
		if err != nil {
			return err
		}
		if len(live) > 0 {
			machines := make([]string, len(live))
			for i, u := range live {
				machines[i] = u.Machine
			}
			return errdefs.Conflictf("Volume %s is in use by %s: stop every Machine that uses it, or detach the Volume", v.ID, runningGuests(machines))
		}
		src, srcFormat = v.Path, v.DiskFormat
	} else {
		if src, err = parseFileLocation(im.Source); err != nil {
			return err
		}
		if srcFormat, err = hostimage.Inspect(ctx, src); err != nil {
			return err
		}
	}
	dst := s.imageFile(im.ID)
	partial := dst + ".part"
	if err := removeFiles(partial); err != nil {
		return err
	}
	err = qemuimg.Convert(ctx, src, srcFormat, partial, qemuimg.FormatQCOW2, func(pct float64) { x.Progress(int(pct * 0.95)) })
	if err != nil {
		return fmt.Errorf("copy into the pool: %w", err)
	}
	info, err := qemuimg.Info(ctx, partial)
	if err != nil {
		return err
	}
	if err := os.Rename(partial, dst); err != nil {
		return err
	}
	s.refreshPool(ctx)
	err = s.db.Update(func(tx *store.Tx) error {
		cur, err := records.Get[imageRecord](tx, kindImages, im.ID, "VolumeImage")
		if err != nil {
			return err
		}
		cur.State, cur.Path, cur.Format, cur.SourceFormat = cimi.StateAvailable, dst, qemuimg.FormatQCOW2, srcFormat
		cur.VirtualSizeKiB = info.VirtualSize / 1024
		if err := records.Put(tx, kindImages, im.ID, cur); err != nil {
			return err
		}
		return volumeBack(tx, im.VolumeID)
	})
	if err != nil {
		return err
	}
	x.Commit()
	if im.VolumeID != "" {
		x.SetMessage(fmt.Sprintf("snapshot of Volume %s stored (%d MiB virtual size)", im.VolumeID, info.VirtualSize>>20))
	} else {
		x.SetMessage(fmt.Sprintf("image registered (%s source, %d MiB virtual size)", srcFormat, info.VirtualSize>>20))
	}
	return nil
}

// volumeBack returns a Volume whose snapshot ended to AVAILABLE.
func volumeBack(tx *store.Tx, volumeID string) error {
	if volumeID == "" {
		return nil
	}
	v, err := records.Get[volumeRecord](tx, kindVolumes, volumeID, "Volume")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if v.State != cimi.StateCapturing {
		return nil
	}
	v.State = cimi.StateAvailable
	return records.Put(tx, kindVolumes, volumeID, v)
}

// abandonImage removes the files of an image being created, then its
// record, and gives its Volume back.
func (s *Service) abandonImage(ctx context.Context, id string) error {
	dst := s.imageFile(id)
	if err := removeFiles(dst+".part", dst); err != nil {
		return err
	}
	s.refreshPool(ctx)
	return s.db.Update(func(tx *store.Tx) error {
		im, err := records.Get[imageRecord](tx, kindImages, id, "VolumeImage")
		if errdefs.Is(err, errdefs.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := volumeBack(tx, im.VolumeID); err != nil {
			return err
		}
		return tx.Delete(kindImages, id)
	})
}

func (s *Service) cleanupImage(ctx context.Context, rec job.Record) error {
	var p imageParams
	if err := unmarshalParams(rec.Params, &p); err != nil {
		return err
	}
	im, err := view[imageRecord](s.db, kindImages, p.ImageID, "VolumeImage")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if im.State != cimi.StateCreating {
		return nil
	}
	return s.abandonImage(ctx, im.ID)
}

func (s *Service) runDeleteImage(ctx context.Context, x *job.Exec) error {
	var p imageParams
	if err := x.Params(&p); err != nil {
		return err
	}
	var im imageRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if im, err = records.Get[imageRecord](tx, kindImages, p.ImageID, "VolumeImage"); err != nil {
			return err
		}
		return imageInUse(tx, p.ImageID)
	})
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // a resumed delete that had finished
	}
	if err != nil {
		_ = update(s.db, kindImages, p.ImageID, "VolumeImage", func(cur *imageRecord) error {
			cur.State = cimi.StateAvailable
			return nil
		})
		return err
	}
	dst := s.imageFile(im.ID)
	if err := removeFiles(dst, dst+".part"); err != nil {
		return err
	}
	s.refreshPool(ctx)
	if err := s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindImages, im.ID) }); err != nil {
		return err
	}
	x.SetMessage("VolumeImage deleted with its file")
	return nil
}
