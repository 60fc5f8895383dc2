package compute

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/storage"
	"cimid/hypervisor"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

// A Machine is captured into a standalone qcow2 image (type IMAGE), a copy
// of its boot disk with the backing chain flattened, taken while the Machine
// is STOPPED so that the copy is consistent. A snapshot (type SNAPSHOT) is
// an internal qcow2 snapshot of every disk of the Machine, its attached
// volumes included, with the memory state when it runs: it lives inside
// those files, is restored in place, and is deleted with the Machine.

// MachineImage types.
const (
	imageTypeImage    = "IMAGE"
	imageTypeSnapshot = "SNAPSHOT"
)

// imageOrigin is what a MachineImage made from a Machine records of it.
type imageOrigin struct {
	// MachineID is the Machine captured or snapshotted.
	MachineID string `json:"machineId,omitempty"`
	// SnapshotName names the internal snapshot in the Machine's disks.
	SnapshotName string `json:"snapshotName,omitempty"`
	// RelatedImageID is the Machine's previous snapshot.
	RelatedImageID string `json:"relatedImageId,omitempty"`
	// Running tells that the snapshot holds the guest's memory: restoring
	// it resumes the guest.
	Running bool `json:"running,omitempty"`
	// SnapshotVolumes are the volumes attached when the snapshot was
	// taken; they hold part of it.
	SnapshotVolumes []snapshotVolume `json:"snapshotVolumes,omitempty"`
	// SnapshotNICs are the MACs of the Machine's interfaces when the
	// snapshot was taken: its definition of that time has them.
	SnapshotNICs []string `json:"snapshotNics,omitempty"`
}

type snapshotVolume struct {
	VolumeID string `json:"volumeId"`
	Target   string `json:"target"`
}

// States a Machine can be snapshotted, and restored, in.
var (
	snapshotStates = []string{cimi.StateStarted, cimi.StateStopped, cimi.StatePaused}
	restoreStates  = []string{cimi.StateStarted, cimi.StateStopped, cimi.StatePaused, cimi.StateError}
)

func (s *Service) snapshotRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/machines/{id}/snapshots", Handler: s.listSnapshots},
		{Method: http.MethodGet, Path: "/machines/{id}/snapshots/{image}", Handler: s.getSnapshot},
		{Method: http.MethodPost, Path: "/machines/{id}/capture", Handler: s.captureMachine},
		{Method: http.MethodPost, Path: "/machines/{id}/snapshot", Handler: s.snapshotMachine},
		{Method: http.MethodPost, Path: "/machines/{id}/restore", Handler: s.restoreMachine},
	}
}

// storageRoutes are the routes of a Machine's volumes and images.
func (s *Service) storageRoutes() []api.Route {
	return concat(s.volumeRoutes(), s.snapshotRoutes())
}

func imagePath(id string) string { return kindImages + "/" + id }

func snapshotPath(machineID, imageID string) string {
	return machinePath(machineID) + "/snapshots/" + imageID
}

// addStorageDoc adds a Machine's volumes, snapshots and the operations
// that make images of it to its document.
func (s *Service) addStorageDoc(urls api.URLs, m machineRecord, d *cimi.Machine) {
	path := machinePath(m.ID)
	d.Volumes = cimi.NewRef(urls.Abs(path + "/volumes"))
	d.Snapshots = cimi.NewRef(urls.Abs(path + "/snapshots"))
	if m.LatestSnapshot != "" {
		d.LatestSnapshot = cimi.NewRef(urls.Abs(imagePath(m.LatestSnapshot)))
	}
	if m.State == cimi.StateStopped {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("capture"), Href: d.ID + "/capture"})
	}
	if slices.Contains(snapshotStates, m.State) {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("snapshot"), Href: d.ID + "/snapshot"})
	}
	if m.LatestSnapshot != "" && slices.Contains(restoreStates, m.State) {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("restore"), Href: d.ID + "/restore"})
	}
}

// addOriginDoc shows where an image made from a Machine comes from.
func addOriginDoc(urls api.URLs, im imageRecord, d *cimi.MachineImage) {
	if im.Type == imageTypeSnapshot {
		d.ImageLocation = urls.Abs(snapshotPath(im.MachineID, im.ID))
		if im.RelatedImageID != "" {
			d.RelatedImage = cimi.NewRef(urls.Abs(imagePath(im.RelatedImageID)))
		}
	}
}

// snapshotsOf lists the SNAPSHOT images of a Machine, oldest first.
func snapshotsOf(tx *store.Tx, machineID string) ([]imageRecord, error) {
	images, err := records.List[imageRecord](tx, kindImages)
	if err != nil {
		return nil, err
	}
	var out []imageRecord
	for _, im := range images {
		if im.Type == imageTypeSnapshot && im.MachineID == machineID {
			out = append(out, im)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (s *Service) machineSnapshots(id string) (machineRecord, []imageRecord, error) {
	var m machineRecord
	var snaps []imageRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if m, err = records.Get[machineRecord](tx, kindMachines, id, "Machine"); err != nil {
			return err
		}
		snaps, err = snapshotsOf(tx, id)
		return err
	})
	return m, snaps, err
}

func snapshotDoc(urls api.URLs, m machineRecord, im imageRecord) *cimi.MachineSnapshot {
	return &cimi.MachineSnapshot{
		Common: cimi.Common{ResourceURI: cimi.TypeURI("MachineSnapshot"), ID: urls.Abs(snapshotPath(m.ID, im.ID)),
			Name: im.Name, Created: cimi.TimePtr(im.Created), Updated: cimi.TimePtr(im.Updated)},
		Snapshot: cimi.NewRef(urls.Abs(imagePath(im.ID))),
	}
}

func (s *Service) listSnapshots(rq *api.Request) (api.Reply, error) {
	m, snaps, err := s.machineSnapshots(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(snaps))
	for i, im := range snaps {
		members[i] = snapshotDoc(rq.URLs, m, im)
	}
	return api.Reply{Body: collection(rq.URLs, "MachineSnapshot", machinePath(m.ID)+"/snapshots", "machineSnapshots", members, false)}, nil
}

func (s *Service) getSnapshot(rq *api.Request) (api.Reply, error) {
	m, snaps, err := s.machineSnapshots(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	for _, im := range snaps {
		if im.ID == rq.Vars["image"] {
			return api.Reply{Body: snapshotDoc(rq.URLs, m, im)}, nil
		}
	}
	return api.Reply{}, errdefs.NotFoundf("Machine %s has no snapshot %s", m.ID, rq.Vars["image"])
}

// snapshotParams are the parameters of capture, snapshot, restore and
// snapshot delete Jobs.
type snapshotParams struct {
	MachineID string `json:"machineId"`
	ImageID   string `json:"imageId"`
}

func (s *Service) captureMachine(rq *api.Request) (api.Reply, error) {
	return s.imageOfMachine(rq, imageTypeImage)
}

func (s *Service) snapshotMachine(rq *api.Request) (api.Reply, error) {
	return s.imageOfMachine(rq, imageTypeSnapshot)
}

// imageOfMachine handles capture and snapshot: the body is a
// MachineImageCreate (or MachineImage) whose imageLocation, when given,
// names the Machine; it may be left out altogether.
func (s *Service) imageOfMachine(rq *api.Request, typ string) (api.Reply, error) {
	var body cimi.MachineImageCreate
	if err := rq.Decode(&body, "MachineImageCreate", "MachineImage"); err != nil && !errors.Is(err, cimi.ErrEmptyBody) {
		return api.Reply{}, err
	}
	op := map[string]string{imageTypeImage: "capture", imageTypeSnapshot: "snapshot"}[typ]
	id := rq.Vars["id"]
	if t := strings.ToUpper(strings.TrimSpace(body.Type)); t != "" && t != typ {
		return api.Reply{}, errdefs.Invalidf("type %q does not match the %s operation, which makes a MachineImage of type %s", body.Type, op, typ)
	}
	if loc := strings.TrimSpace(body.ImageLocation); loc != "" && loc != id {
		if p, ok := rq.URLs.Path(loc); !ok || p != machinePath(id) {
			return api.Reply{}, errdefs.Invalidf("imageLocation %q does not name this Machine (%s)", loc, rq.URLs.Abs(machinePath(id)))
		}
	}
	if body.RelatedImage != nil {
		return api.Reply{}, errdefs.Invalidf("relatedImage is set by the provider: it names the Machine's previous snapshot")
	}
	cur, err := s.loadMachine(id)
	if err != nil {
		return api.Reply{}, err
	}
	im := imageRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()),
		State: imageCreating, Type: typ, Source: rq.URLs.Abs(machinePath(id))}
	im.MachineID = id
	locks := []string{machinePath(id), imagePath(im.ID)}
	prepare := s.prepareCapture(id, &im)
	if typ == imageTypeSnapshot {
		im.SnapshotName = im.ID
		for _, mv := range cur.Volumes {
			locks = append(locks, volumePath(mv.VolumeID))
		}
		prepare = s.prepareSnapshot(id, cur.Volumes, &im)
	}
	j, err := s.submit(job.Record{Kind: "machine." + op, Action: cimi.ActionURI(op), Name: op + " Machine",
		Target: machinePath(id), Affected: []string{machinePath(id), kindImages, imagePath(im.ID)}, Locks: locks},
		snapshotParams{MachineID: id, ImageID: im.ID}, prepare)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.imageDoc(rq.URLs, im), Location: imagePath(im.ID), JobID: j.ID}, nil
}

func (s *Service) prepareCapture(id string, im *imageRecord) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		if m.State != cimi.StateStopped {
			return errdefs.Conflictf("cannot capture Machine %s while it is %s: capture copies the disk of a STOPPED Machine, so that the image is consistent; stop it first", id, m.State)
		}
		m.State = cimi.StateCapturing
		if err := records.Put(tx, kindMachines, id, m); err != nil {
			return err
		}
		return records.Put(tx, kindImages, im.ID, *im)
	}
}

func (s *Service) prepareSnapshot(id string, seen []machineVolume, im *imageRecord) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		if !slices.Contains(snapshotStates, m.State) {
			return errdefs.Conflictf("cannot snapshot Machine %s while it is %s (valid in: %s)", id, m.State, strings.Join(snapshotStates, ", "))
		}
		if !sameAttachments(m.Volumes, seen) {
			return errdefs.Conflictf("the volumes of Machine %s changed while the request was made; send it again", id)
		}
		im.RelatedImageID = m.LatestSnapshot
		for _, mv := range m.Volumes {
			if mv.State != attachAttached {
				return errdefs.Conflictf("Volume %s of Machine %s is %s; snapshot the Machine when it is attached or detached", mv.VolumeID, id, mv.State)
			}
			if mv.Format != qemuimg.FormatQCOW2 {
				return errdefs.Conflictf("cannot snapshot Machine %s: Volume %s (%s) is %s, and internal snapshots need every writable disk in qcow2; detach it, or use a qcow2 volume", id, mv.VolumeID, mv.Target, mv.Format)
			}
			im.SnapshotVolumes = append(im.SnapshotVolumes, snapshotVolume{VolumeID: mv.VolumeID, Target: mv.Target})
			if s.cfg.Volumes != nil {
				if _, err := s.cfg.Volumes.UseVolume(tx, mv.VolumeID, storage.Use{User: imagePath(im.ID), Machine: id}); err != nil {
					return err
				}
			}
		}
		m.State = cimi.StateCapturing
		if err := records.Put(tx, kindMachines, id, m); err != nil {
			return err
		}
		return records.Put(tx, kindImages, im.ID, *im)
	}
}

func (s *Service) registerSnapshotJobs() {
	s.jobs.Register("machine.capture", job.Kind{Run: s.runCapture, Resumable: true, Cancellable: true, Cleanup: s.cleanupCapture})
	s.jobs.Register("machine.snapshot", job.Kind{Run: s.runSnapshot, Resumable: true})
	s.jobs.Register("machine.restore", job.Kind{Run: s.runRestore, Resumable: true})
	s.jobs.Register("snapshot.delete", job.Kind{Run: s.runDeleteSnapshot, Resumable: true})
}

// registerStorageJobs registers the Jobs of volumes, captures and
// snapshots.
func (s *Service) registerStorageJobs() {
	s.registerVolumeJobs()
	s.registerSnapshotJobs()
}

func (s *Service) loadSnapshotJob(x *job.Exec) (machineRecord, imageRecord, error) {
	var p snapshotParams
	if err := x.Params(&p); err != nil {
		return machineRecord{}, imageRecord{}, err
	}
	m, err := s.loadMachine(p.MachineID)
	if err != nil {
		return machineRecord{}, imageRecord{}, err
	}
	im, err := s.loadImage(p.ImageID)
	return m, im, err
}

// runCapture copies the boot disk of a stopped Machine into a standalone
// qcow2 image in the pool. Re-runnable: the copy starts over.
func (s *Service) runCapture(ctx context.Context, x *job.Exec) error {
	m, im, err := s.loadSnapshotJob(x)
	if err != nil {
		return err
	}
	x.OnUndo("remove the image and show the Machine's state", func(ctx context.Context) error {
		return s.abandonCapture(ctx, m.ID, im.ID)
	})
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	if err != nil {
		return err
	}
	if st.State != hypervisor.StateShutoff || st.HasManagedSave {
		return errdefs.Conflictf("the domain of Machine %s is %s: capture needs it shut off", m.ID, st.State)
	}
	if len(m.Disks) == 0 {
		return fmt.Errorf("Machine %s has no disk", m.ID)
	}
	disk := m.Disks[0]
	dst := s.imageFile(im.ID)
	partial := dst + ".part"
	if err := removeIfExists(partial); err != nil {
		return err
	}
	err = qemuimg.Convert(ctx, disk.Path, disk.Format, partial, qemuimg.FormatQCOW2, func(pct float64) { x.Progress(int(pct * 0.95)) })
	if err != nil {
		return fmt.Errorf("copy the disk of Machine %s: %w", m.ID, err)
	}
	info, err := qemuimg.Info(ctx, partial)
	if err != nil {
		return err
	}
	if err := os.Chmod(partial, 0o644); err != nil {
		return err
	}
	if err := os.Rename(partial, dst); err != nil {
		return err
	}
	if st, err = s.drv.DomainStatus(ctx, m.Domain); err != nil {
		return err
	}
	x.SetMessage(fmt.Sprintf("Machine captured into a standalone image (%d MiB virtual size)", info.VirtualSize>>20))
	err = s.endObserved(x, m.ID, st, func(tx *store.Tx, _ *machineRecord) error {
		cur, err := records.Get[imageRecord](tx, kindImages, im.ID, "MachineImage")
		if err != nil {
			return err
		}
		cur.State, cur.Path, cur.Format, cur.SourceFormat = imageAvailable, dst, qemuimg.FormatQCOW2, disk.Format
		cur.Source = (&url.URL{Scheme: "file", Path: dst}).String()
		cur.VirtualSizeKiB = info.VirtualSize / 1024
		return records.Put(tx, kindImages, im.ID, cur)
	})
	if err != nil {
		return err
	}
	// libvirt's view of the pool follows; nothing of the API depends on it
	if err := s.drv.RefreshPool(ctx, s.poolName); err != nil {
		x.Log().Warn("refresh pool", "err", err)
	}
	return nil
}

func removeIfExists(files ...string) error {
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
	}
	return nil
}

// abandonCapture removes the files of an unfinished capture, then its
// record, and shows the Machine's observed state. A capture that finished
// is left alone.
func (s *Service) abandonCapture(ctx context.Context, machineID, imageID string) error {
	im, err := s.loadImage(imageID)
	switch {
	case err == nil && im.State == imageCreating:
		dst := s.imageFile(imageID)
		if err := removeIfExists(dst+".part", dst); err != nil {
			return err
		}
		if err := s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindImages, imageID) }); err != nil {
			return err
		}
	case err != nil && !errdefs.Is(err, errdefs.NotFound):
		return err
	}
	if err := s.settle(ctx, machineID); err != nil && !errdefs.Is(err, errdefs.NotFound) {
		return err
	}
	return nil
}

func (s *Service) cleanupCapture(ctx context.Context, rec job.Record) error {
	var p snapshotParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	return s.abandonCapture(ctx, p.MachineID, p.ImageID)
}

// findSnapshot looks for an internal snapshot of a domain.
func (s *Service) findSnapshot(ctx context.Context, domain, name string) (hypervisor.SnapshotInfo, bool, error) {
	list, err := s.drv.ListSnapshots(ctx, domain)
	if err != nil {
		return hypervisor.SnapshotInfo{}, false, err
	}
	for _, sn := range list {
		if sn.Name == name {
			return sn, true, nil
		}
	}
	return hypervisor.SnapshotInfo{}, false, nil
}

// runSnapshot takes the internal snapshot of every disk of the Machine
// (and of its memory when it runs). Re-runnable: a snapshot that exists
// already is kept.
func (s *Service) runSnapshot(ctx context.Context, x *job.Exec) error {
	m, im, err := s.loadSnapshotJob(x)
	if err != nil {
		return err
	}
	x.OnUndo("remove the snapshot and show the Machine's state", func(ctx context.Context) error {
		err := s.drv.DeleteSnapshot(ctx, m.Domain, im.SnapshotName)
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return err
		}
		if err := s.db.Update(func(tx *store.Tx) error { return s.forgetSnapshot(tx, im) }); err != nil {
			return err
		}
		return s.settle(ctx, m.ID)
	})
	nics, err := s.interfaceMACs(m.ID)
	if err != nil {
		return err
	}
	// Only a resumed Job can find its snapshot already taken.
	var info hypervisor.SnapshotInfo
	found := false
	if x.Resumed() {
		if info, found, err = s.findSnapshot(ctx, m.Domain, im.SnapshotName); err != nil {
			return err
		}
	}
	if !found {
		if info, err = s.drv.CreateSnapshot(ctx, m.Domain, im.SnapshotName); err != nil {
			return err
		}
	}
	// A domain that the snapshot just taken shows shut off is still so: no
	// Job of ours starts it while this one holds the Machine. Any other is
	// observed again, since it may have changed since.
	st := hypervisor.DomainStatus{Name: m.Domain, State: hypervisor.StateShutoff}
	if found || info.State != hypervisor.StateShutoff {
		if st, err = s.drv.DomainStatus(ctx, m.Domain); err != nil {
			return err
		}
	}
	what := "its disks"
	if info.Running {
		what = "its disks and memory"
	}
	x.SetMessage(fmt.Sprintf("snapshot of Machine %s taken (%s, %d volume(s))", m.ID, what, len(im.SnapshotVolumes)))
	return s.endObserved(x, m.ID, st, func(tx *store.Tx, mach *machineRecord) error {
		cur, err := records.Get[imageRecord](tx, kindImages, im.ID, "MachineImage")
		if err != nil {
			return err
		}
		cur.State, cur.Running, cur.SnapshotNICs = imageAvailable, info.Running, nics
		mach.LatestSnapshot = im.ID
		return records.Put(tx, kindImages, im.ID, cur)
	})
}

// forgetSnapshot deletes, in tx, the record of a snapshot whose internal
// snapshot is gone: the snapshots that followed it inherit its
// relatedImage, the Machine's latestSnapshot moves to its relatedImage (or
// to the newest snapshot left), and the volumes holding part of it are
// released.
func (s *Service) forgetSnapshot(tx *store.Tx, im imageRecord) error {
	snaps, err := snapshotsOf(tx, im.MachineID)
	if err != nil {
		return err
	}
	newest := ""
	for _, other := range snaps {
		if other.ID == im.ID {
			continue
		}
		if other.RelatedImageID == im.ID {
			other.RelatedImageID = im.RelatedImageID
			if err := records.Put(tx, kindImages, other.ID, other); err != nil {
				return err
			}
		}
		if other.State == imageAvailable {
			newest = other.ID
		}
	}
	m, err := records.Get[machineRecord](tx, kindMachines, im.MachineID, "Machine")
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		return err
	}
	if err == nil && m.LatestSnapshot == im.ID {
		m.LatestSnapshot = im.RelatedImageID
		if m.LatestSnapshot == "" {
			m.LatestSnapshot = newest
		}
		if err := records.Put(tx, kindMachines, m.ID, m); err != nil {
			return err
		}
	}
	if s.cfg.Volumes != nil {
		for _, v := range im.SnapshotVolumes {
			if err := s.cfg.Volumes.ReleaseVolume(tx, v.VolumeID, imagePath(im.ID), false); err != nil {
				return err
			}
		}
	}
	return tx.Delete(kindImages, im.ID)
}

func (s *Service) restoreMachine(rq *api.Request) (api.Reply, error) {
	act, err := rq.DecodeAction("restore")
	if err != nil {
		if errors.Is(err, cimi.ErrEmptyBody) {
			return api.Reply{}, errdefs.Invalidf("restore needs an Action naming the snapshot: {\"action\": %q, \"image\": {\"href\": ...}}", cimi.ActionURI("restore"))
		}
		return api.Reply{}, err
	}
	if act.Image == nil || act.Image.Href == "" {
		return api.Reply{}, errdefs.Invalidf("image is required: a reference {\"href\": ...} to a SNAPSHOT MachineImage of this Machine")
	}
	imageID, err := refID(rq.URLs, act.Image.Href, kindImages, "MachineImage")
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	locks := []string{machinePath(id), imagePath(imageID)}
	cur, err := s.loadMachine(id)
	if err != nil {
		return api.Reply{}, err
	}
	for _, mv := range cur.Volumes {
		locks = append(locks, volumePath(mv.VolumeID))
	}
	if im, err := s.loadImage(imageID); err == nil && im.Type == imageTypeSnapshot && im.MachineID == id {
		if err := s.sameInterfaces(cur, im); err != nil {
			return api.Reply{}, err
		}
	}
	j, err := s.submit(job.Record{Kind: "machine.restore", Action: cimi.ActionURI("restore"), Name: "restore Machine",
		Target: machinePath(id), Affected: []string{machinePath(id), imagePath(imageID)}, Locks: locks},
		snapshotParams{MachineID: id, ImageID: imageID},
		func(tx *store.Tx) error {
			m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
			if err != nil {
				return err
			}
			if !slices.Contains(restoreStates, m.State) {
				return errdefs.Conflictf("cannot restore Machine %s while it is %s (valid in: %s)", id, m.State, strings.Join(restoreStates, ", "))
			}
			if !sameAttachments(m.Volumes, cur.Volumes) {
				return errdefs.Conflictf("the volumes of Machine %s changed while the request was made; send it again", id)
			}
			im, err := records.Get[imageRecord](tx, kindImages, imageID, "MachineImage")
			if err != nil {
				return referenced(err)
			}
			switch {
			case im.Type != imageTypeSnapshot:
				return errdefs.Invalidf("MachineImage %s is of type %s: restore takes a SNAPSHOT of this Machine (restoring from an IMAGE is not offered: create a new Machine from it)", imageID, im.Type)
			case im.MachineID != id:
				return errdefs.Invalidf("MachineImage %s is a snapshot of Machine %s, not of Machine %s", imageID, im.MachineID, id)
			case im.State != imageAvailable:
				return errdefs.Conflictf("snapshot %s is %s, not AVAILABLE", imageID, im.State)
			}
			if err := sameVolumes(m, im); err != nil {
				return err
			}
			m.State = cimi.StateRestoring
			m.StatusMessage = ""
			return records.Put(tx, kindMachines, id, m)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: machinePath(id)}, nil
}

// sameVolumes refuses a restore when the Machine's volumes are not those
// attached when the snapshot was taken: the snapshot brings back the
// domain's definition of that time.
func sameVolumes(m machineRecord, im imageRecord) error {
	now := map[snapshotVolume]bool{}
	for _, mv := range m.Volumes {
		if mv.State != attachAttached {
			return errdefs.Conflictf("Volume %s of Machine %s is %s; restore when it is attached or detached", mv.VolumeID, m.ID, mv.State)
		}
		now[snapshotVolume{VolumeID: mv.VolumeID, Target: mv.Target}] = true
	}
	var missing, extra []string
	for _, v := range im.SnapshotVolumes {
		if !now[v] {
			missing = append(missing, v.VolumeID+" as "+v.Target)
		}
		delete(now, v)
	}
	for v := range now {
		extra = append(extra, v.VolumeID+" ("+v.Target+")")
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	var why []string
	if len(missing) > 0 {
		why = append(why, "attach "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		why = append(why, "detach "+strings.Join(extra, ", ")+", attached after the snapshot")
	}
	return errdefs.Conflictf("Machine %s has other volumes than when snapshot %s was taken: %s, then restore", m.ID, im.ID, strings.Join(why, "; "))
}

// runRestore reverts every disk of the Machine to the snapshot, and its
// run state to the one the snapshot was taken in. Re-runnable: reverting
// again gives the same result.
func (s *Service) runRestore(ctx context.Context, x *job.Exec) error {
	m, im, err := s.loadSnapshotJob(x)
	if err != nil {
		return err
	}
	x.OnUndo("show the observed state", func(ctx context.Context) error { return s.settle(ctx, m.ID) })
	if err := s.sameInterfaces(m, im); err != nil {
		return err
	}
	if err := s.drv.RevertSnapshot(ctx, m.Domain, im.SnapshotName); err != nil {
		return err
	}
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	if err != nil {
		return err
	}
	if state, _, ok := observedState(st, ""); ok {
		s.setDesired(ctx, m, state)
	}
	err = s.db.Update(func(tx *store.Tx) error {
		cur, err := records.Get[machineRecord](tx, kindMachines, m.ID, "Machine")
		if err != nil {
			return err
		}
		cur.LatestSnapshot = im.ID
		return records.Put(tx, kindMachines, m.ID, cur)
	})
	if err != nil {
		return err
	}
	x.Commit()
	if im.Running {
		x.SetMessage("Machine restored from snapshot " + im.ID + ", running as when it was taken")
	} else {
		x.SetMessage("Machine restored from snapshot " + im.ID)
	}
	return s.settle(ctx, m.ID)
}

// deleteSnapshotImage answers the DELETE of a SNAPSHOT MachineImage; ok is
// false for other images, which the caller deletes as files.
func (s *Service) deleteSnapshotImage(id string) (reply api.Reply, ok bool, err error) {
	cur, err := s.loadImage(id)
	if err != nil || cur.Type != imageTypeSnapshot {
		return api.Reply{}, false, nil
	}
	path := imagePath(id)
	j, err := s.submit(job.Record{Kind: "snapshot.delete", Action: cimi.RelDelete, Name: "delete snapshot", Target: path,
		Affected: []string{path, machinePath(cur.MachineID)}, Locks: []string{path, machinePath(cur.MachineID)}},
		snapshotParams{MachineID: cur.MachineID, ImageID: id},
		func(tx *store.Tx) error {
			im, err := records.Get[imageRecord](tx, kindImages, id, "MachineImage")
			if err != nil {
				return err
			}
			switch im.State {
			case imageAvailable, imageError:
			case imageDeleting:
				return errdefs.Conflictf("snapshot %s is already being deleted", id)
			default:
				return errdefs.Conflictf("snapshot %s is %s; it can be deleted once it is AVAILABLE", id, im.State)
			}
			im.State = imageDeleting
			return records.Put(tx, kindImages, id, im)
		})
	if err != nil {
		return api.Reply{}, true, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID}, true, nil
}

// runDeleteSnapshot deletes the internal snapshot from the Machine's disks,
// then its record. Re-runnable: a snapshot already gone is not an error.
func (s *Service) runDeleteSnapshot(ctx context.Context, x *job.Exec) error {
	var p snapshotParams
	if err := x.Params(&p); err != nil {
		return err
	}
	im, err := s.loadImage(p.ImageID)
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // deleted meanwhile, with its Machine or by a resumed run
	}
	if err != nil {
		return err
	}
	if err := s.removeSnapshot(ctx, im); err != nil {
		s.setImageState(im.ID, imageAvailable)
		return err
	}
	x.SetMessage("snapshot deleted from the Machine's disks")
	return nil
}

// removeSnapshot deletes an internal snapshot, then its record.
func (s *Service) removeSnapshot(ctx context.Context, im imageRecord) error {
	m, err := s.loadMachine(im.MachineID)
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		return err
	}
	if err == nil {
		if err := s.drv.DeleteSnapshot(ctx, m.Domain, im.SnapshotName); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return err
		}
	}
	return s.db.Update(func(tx *store.Tx) error { return s.forgetSnapshot(tx, im) })
}

// deleteSnapshotsOf deletes every snapshot of a Machine that is being
// deleted, newest first, while its domain still knows them: parts of them
// live in volumes that outlive the Machine.
func (s *Service) deleteSnapshotsOf(ctx context.Context, m machineRecord) error {
	var snaps []imageRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		snaps, err = snapshotsOf(tx, m.ID)
		return err
	})
	if err != nil {
		return err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if err := s.removeSnapshot(ctx, snaps[i]); err != nil {
			return fmt.Errorf("delete snapshot %s: %w", snaps[i].ID, err)
		}
	}
	return nil
}

// PoolFiles implements storage.Machines: the name prefixes of the pool
// files of every MachineImage and Machine.
func (s *Service) PoolFiles(tx *store.Tx) ([]string, error) {
	images, err := records.List[imageRecord](tx, kindImages)
	if err != nil {
		return nil, err
	}
	machines, err := records.List[machineRecord](tx, kindMachines)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, 2*len(images)+len(machines))
	for _, im := range images {
		out = append(out, "image-"+im.ID+".", "download-"+im.ID+".")
	}
	for _, m := range machines {
		out = append(out, "machine-"+m.ID+"-")
	}
	return out, nil
}

// MachineState implements storage.Machines.
func (s *Service) MachineState(tx *store.Tx, id string) (string, error) {
	m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
	return m.State, err
}

// storageMetadata adds what Machines offer for volumes and images to the
// metadata of the Machine family.
func storageMetadata(list []cimi.ResourceMetadata) []cimi.ResourceMetadata {
	for i := range list {
		if list[i].Name != "Machine" {
			continue
		}
		md := &list[i]
		md.Attributes = append(md.Attributes, cimi.AttributeMeta{Name: "volumes"}, cimi.AttributeMeta{Name: "snapshots"}, cimi.AttributeMeta{Name: "latestSnapshot"})
		md.Capabilities = append(md.Capabilities,
			capability("Machine", "RestoreFromImage", "false", "restore takes a SNAPSHOT of the Machine; an IMAGE makes new Machines"),
			extCapability("Machine", "CaptureStates", cimi.StateStopped, "a Machine is captured while STOPPED, so that the image is consistent"),
			extCapability("Machine", "SnapshotStates", strings.Join(snapshotStates, ","), "internal qcow2 snapshots, with the memory of a running guest"),
			extCapability("Machine", "HotPlugVolumes", "true", "volumes attach to and detach from a STARTED Machine while the guest runs"))
		md.Actions = append(md.Actions,
			cimi.ActionMeta{Name: "capture", URI: cimi.ActionURI("capture"), Method: "POST", InputMessage: "application/json",
				Description: "copy the boot disk of a STOPPED Machine into a standalone MachineImage of type IMAGE; the body is a MachineImageCreate whose imageLocation is the Machine"},
			cimi.ActionMeta{Name: "snapshot", URI: cimi.ActionURI("snapshot"), Method: "POST", InputMessage: "application/json",
				Description: "take an internal snapshot of every disk (and of the memory of a running guest) as a MachineImage of type SNAPSHOT; refused when an attached volume is raw"},
			cimi.ActionMeta{Name: "restore", URI: cimi.ActionURI("restore"), Method: "POST", InputMessage: "application/json",
				Description: "revert the Machine to one of its snapshots, given as image; it runs afterwards if it ran when the snapshot was taken"})
	}
	return append(list,
		cimi.ResourceMetadata{Common: cimi.Common{Name: "MachineVolume"}, TypeURI: cimi.TypeURI("MachineVolume"),
			Attributes: []cimi.AttributeMeta{{Name: "volume", Required: true}, {Name: "initialLocation", Description: "vdb to vdz, or /dev/vdb to /dev/vdz; the first free one when absent"},
				{Name: "state", Namespace: cimi.ExtNamespace, Type: "string", Description: "ATTACHING, ATTACHED or DETACHING"}}},
		cimi.ResourceMetadata{Common: cimi.Common{Name: "MachineSnapshot"}, TypeURI: cimi.TypeURI("MachineSnapshot"),
			Attributes: []cimi.AttributeMeta{{Name: "snapshot", Required: true}}})
}
