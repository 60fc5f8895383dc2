package compute

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/storage"
	"cimid/hypervisor"
	"cimid/store"
)

// Volumes is what Machines need from the service that owns Volumes. Every
// method works inside the caller's store transaction, so that a Machine's
// record and the Volume's list of users change together.
type Volumes interface {
	LookupVolume(tx *store.Tx, id string) (storage.VolumeInfo, error)
	UseVolume(tx *store.Tx, id string, u storage.Use) (storage.VolumeInfo, error)
	ReleaseVolume(tx *store.Tx, id, user string, attached bool) error
}

// Attachment states, shown as the MachineVolume's state (an extension).
const (
	attachAttaching = "ATTACHING"
	attachAttached  = "ATTACHED"
	attachDetaching = "DETACHING"
)

// detachTimeout bounds how long a live detach waits for the guest to
// release the disk.
const detachTimeout = time.Minute

// machineVolume is a Volume attached to a Machine.
type machineVolume struct {
	ID       string    `json:"id"`
	VolumeID string    `json:"volumeId"`
	Target   string    `json:"target"`
	Path     string    `json:"path"`
	Format   string    `json:"format"`
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
	// Shareable is set when the Volume may be attached to other Machines
	// too: its disk is then opened so that their guests can share it.
	Shareable bool `json:"shareable,omitempty"`
}

// machineStorage is what a Machine record keeps of its volumes and
// snapshots.
type machineStorage struct {
	Volumes []machineVolume `json:"volumes,omitempty"`
	// LatestSnapshot is the id of the SNAPSHOT MachineImage taken or
	// restored last.
	LatestSnapshot string `json:"latestSnapshot,omitempty"`
}

func (m *machineStorage) attachment(id string) (int, *machineVolume) {
	for i := range m.Volumes {
		if m.Volumes[i].ID == id {
			return i, &m.Volumes[i]
		}
	}
	return -1, nil
}

// attachStates are the Machine states in which a Volume can be attached:
// hot-plugged while STARTED, written into the definition while STOPPED.
var attachStates = []string{cimi.StateStarted, cimi.StateStopped}

// detachStates are the Machine states in which a Volume can be detached.
var detachStates = []string{cimi.StateStarted, cimi.StateStopped, cimi.StateError}

// sameAttachments tells whether two readings of a Machine's volumes are
// the same.
func sameAttachments(a, b []machineVolume) bool {
	return slices.EqualFunc(a, b, func(x, y machineVolume) bool {
		return x.ID == y.ID && x.VolumeID == y.VolumeID && x.Target == y.Target && x.State == y.State
	})
}

func (s *Service) volumeRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/machines/{id}/volumes", Handler: s.listMachineVolumes},
		{Method: http.MethodPost, Path: "/machines/{id}/volumes", Handler: s.attachVolume},
		{Method: http.MethodGet, Path: "/machines/{id}/volumes/{volume}", Handler: s.getMachineVolume},
		{Method: http.MethodDelete, Path: "/machines/{id}/volumes/{volume}", Handler: s.detachVolume},
	}
}

func attachmentPath(machineID, id string) string { return machinePath(machineID) + "/volumes/" + id }

func volumePath(id string) string { return "volumes/" + id }

func (s *Service) machineVolumeDoc(urls api.URLs, m machineRecord, mv machineVolume) *cimi.MachineVolume {
	d := &cimi.MachineVolume{
		Common: cimi.Common{ResourceURI: cimi.TypeURI("MachineVolume"), ID: urls.Abs(attachmentPath(m.ID, mv.ID)),
			Created: cimi.TimePtr(mv.Created), Updated: cimi.TimePtr(mv.Created)},
		InitialLocation: "/dev/" + mv.Target,
		Volume:          cimi.NewRef(urls.Abs(volumePath(mv.VolumeID))),
		State:           mv.State,
	}
	if mv.State == attachAttached && slices.Contains(detachStates, m.State) {
		d.Operations = []cimi.Operation{{Rel: cimi.RelDelete, Href: d.ID}}
	}
	return d
}

func (s *Service) listMachineVolumes(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMachine(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(m.Volumes))
	for i, mv := range m.Volumes {
		members[i] = s.machineVolumeDoc(rq.URLs, m, mv)
	}
	c := collection(rq.URLs, "MachineVolume", machinePath(m.ID)+"/volumes", "machineVolumes", members, slices.Contains(attachStates, m.State))
	return api.Reply{Body: c}, nil
}

func (s *Service) getMachineVolume(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMachine(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	if _, mv := m.attachment(rq.Vars["volume"]); mv != nil {
		return api.Reply{Body: s.machineVolumeDoc(rq.URLs, m, *mv)}, nil
	}
	return api.Reply{}, errdefs.NotFoundf("Machine %s has no attached volume %s", m.ID, rq.Vars["volume"])
}

// attachParams are the parameters of attach and detach Jobs.
type attachParams struct {
	MachineID    string `json:"machineId"`
	AttachmentID string `json:"attachmentId"`
}

var targetPattern = regexp.MustCompile(`^vd[b-z]$`)

// parseTarget accepts initialLocation as a device name or path: "vdb" or
// "/dev/vdb". vda is the boot disk.
func parseTarget(loc string) (string, error) {
	t := strings.TrimPrefix(strings.TrimSpace(loc), "/dev/")
	if t == "" || targetPattern.MatchString(t) {
		return t, nil
	}
	return "", errdefs.Invalidf("initialLocation %q is not a device this host can attach: use vdb to vdz (or /dev/vdb to /dev/vdz)", loc)
}

// usedTargets lists the guest devices a Machine's disks and volumes take.
func usedTargets(m machineRecord) map[string]string {
	used := map[string]string{}
	for _, d := range m.Disks {
		used[d.Target] = "its disk " + d.ID
	}
	for _, mv := range m.Volumes {
		used[mv.Target] = "Volume " + mv.VolumeID
	}
	return used
}

func (s *Service) attachVolume(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineVolumeCreate
	if err := rq.Decode(&body, "MachineVolume", "MachineVolumeCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.Volume == nil || body.Volume.Href == "" {
		return api.Reply{}, errdefs.Invalidf("volume is required, as a reference {\"href\": ...} to the Volume to attach")
	}
	volumeID, err := refID(rq.URLs, body.Volume.Href, "volumes", "Volume")
	if err != nil {
		return api.Reply{}, err
	}
	target, err := parseTarget(body.InitialLocation)
	if err != nil {
		return api.Reply{}, err
	}
	if s.cfg.Volumes == nil {
		return api.Reply{}, errdefs.New(errdefs.NotImplemented, "volumes are not served by this agent")
	}
	id := rq.Vars["id"]
	mv := machineVolume{ID: job.NewID(), VolumeID: volumeID, State: attachAttaching, Created: s.now()}
	var m machineRecord
	j, err := s.submit(job.Record{Kind: "machine.attach", Action: cimi.RelAdd, Name: "attach Volume",
		Target: machinePath(id) + "/volumes", Affected: []string{machinePath(id), attachmentPath(id, mv.ID), volumePath(volumeID)},
		Locks: []string{machinePath(id), volumePath(volumeID)}},
		attachParams{MachineID: id, AttachmentID: mv.ID},
		func(tx *store.Tx) (err error) {
			if m, err = records.Get[machineRecord](tx, kindMachines, id, "Machine"); err != nil {
				return err
			}
			if !slices.Contains(attachStates, m.State) {
				return errdefs.Conflictf("cannot attach a volume to Machine %s while it is %s (valid in: %s)", id, m.State, strings.Join(attachStates, ", "))
			}
			used := usedTargets(m)
			if target == "" {
				target = freeTarget(used)
				if target == "" {
					return errdefs.Conflictf("Machine %s has no free device left (vdb to vdz are taken)", id)
				}
			} else if by, taken := used[target]; taken {
				return errdefs.Conflictf("%s of Machine %s is taken by %s", target, id, by)
			}
			info, err := s.cfg.Volumes.UseVolume(tx, volumeID, storage.Use{User: machinePath(id), Machine: id, Domain: m.Domain, Target: target})
			if err != nil {
				return referenced(err)
			}
			mv.Target, mv.Path, mv.Format, mv.Shareable = target, info.Path, info.DiskFormat, info.Shareable
			m.Volumes = append(m.Volumes, mv)
			return records.Put(tx, kindMachines, id, m)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.machineVolumeDoc(rq.URLs, m, mv), Location: attachmentPath(id, mv.ID), JobID: j.ID}, nil
}

func freeTarget(used map[string]string) string {
	for c := 'b'; c <= 'z'; c++ {
		t := "vd" + string(c)
		if _, ok := used[t]; !ok {
			return t
		}
	}
	return ""
}

func (s *Service) detachVolume(rq *api.Request) (api.Reply, error) {
	id, attachmentID := rq.Vars["id"], rq.Vars["volume"]
	var volumeID string
	if m, err := s.loadMachine(id); err == nil {
		if _, mv := m.attachment(attachmentID); mv != nil {
			volumeID = mv.VolumeID
		}
	}
	locks := []string{machinePath(id)}
	if volumeID != "" {
		locks = append(locks, volumePath(volumeID))
	}
	j, err := s.submit(job.Record{Kind: "machine.detach", Action: cimi.RelDelete, Name: "detach Volume",
		Target: attachmentPath(id, attachmentID), Affected: []string{attachmentPath(id, attachmentID), machinePath(id), volumePath(volumeID)},
		Locks: locks},
		attachParams{MachineID: id, AttachmentID: attachmentID},
		func(tx *store.Tx) error {
			m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
			if err != nil {
				return err
			}
			_, mv := m.attachment(attachmentID)
			if mv == nil || mv.VolumeID != volumeID {
				return errdefs.NotFoundf("Machine %s has no attached volume %s", id, attachmentID)
			}
			if !slices.Contains(detachStates, m.State) {
				return errdefs.Conflictf("cannot detach a volume from Machine %s while it is %s (valid in: %s)", id, m.State, strings.Join(detachStates, ", "))
			}
			if mv.State != attachAttached {
				return errdefs.Conflictf("Volume %s of Machine %s is %s", mv.VolumeID, id, mv.State)
			}
			if s.cfg.Volumes != nil {
				info, err := s.cfg.Volumes.LookupVolume(tx, mv.VolumeID)
				if err != nil && !errdefs.Is(err, errdefs.NotFound) {
					return err
				}
				for _, h := range storage.SnapshotHolders(info) {
					if h.Machine == id {
						return errdefs.Conflictf("Volume %s holds %s, a snapshot of Machine %s taken while it was attached: delete that snapshot before detaching the Volume", mv.VolumeID, h.User, id)
					}
				}
			}
			mv.State = attachDetaching
			return records.Put(tx, kindMachines, id, m)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: machinePath(id)}, nil
}

// volumeDisk is the block device of an attached Volume.
func volumeDisk(mv machineVolume) hypervisor.Disk {
	serial := strings.ReplaceAll(mv.VolumeID, "-", "")
	if len(serial) > 20 {
		serial = serial[:20] // what virtio-blk carries
	}
	return hypervisor.Disk{Path: mv.Path, Format: mv.Format, Target: mv.Target, Bus: "virtio", Serial: serial, Shareable: mv.Shareable}
}

// volumeDisks are the disks of a Machine's attached Volumes, for its
// domain definition.
func volumeDisks(m machineRecord) []hypervisor.Disk {
	var out []hypervisor.Disk
	for _, mv := range m.Volumes {
		if mv.State == attachAttached {
			out = append(out, volumeDisk(mv))
		}
	}
	return out
}

// domainRuns reports whether device changes must reach a live guest.
func (s *Service) domainRuns(ctx context.Context, domain string) (bool, error) {
	st, err := s.drv.DomainStatus(ctx, domain)
	if err != nil {
		return false, err
	}
	return st.State == hypervisor.StateRunning || st.State == hypervisor.StatePaused, nil
}

func (s *Service) registerVolumeJobs() {
	s.jobs.Register("machine.attach", job.Kind{Run: s.runAttach, Resumable: true})
	s.jobs.Register("machine.detach", job.Kind{Run: s.runDetach, Resumable: true})
}

// runAttach adds the Volume's disk to the domain: to the running guest
// and the definition when it runs, to the definition only otherwise. A
// repeated attach of the same image is a no-op for the driver, so a
// resumed run simply attaches again.
func (s *Service) runAttach(ctx context.Context, x *job.Exec) error {
	var p attachParams
	if err := x.Params(&p); err != nil {
		return err
	}
	m, err := s.loadMachine(p.MachineID)
	if err != nil {
		return err
	}
	_, mv := m.attachment(p.AttachmentID)
	if mv == nil {
		return fmt.Errorf("attachment %s of Machine %s is no longer recorded", p.AttachmentID, m.ID)
	}
	if mv.State == attachAttached {
		return nil
	}
	x.OnUndo("detach the volume and forget the attachment", func(ctx context.Context) error {
		return s.dropAttachment(ctx, m, *mv)
	})
	live, err := s.domainRuns(ctx, m.Domain)
	if err != nil {
		return err
	}
	if err := s.drv.AttachDisk(ctx, m.Domain, volumeDisk(*mv), live); err != nil {
		return err
	}
	if err := s.setAttachmentState(m.ID, mv.ID, attachAttached); err != nil {
		return err
	}
	x.Commit()
	if live {
		x.SetMessage(fmt.Sprintf("Volume %s attached as %s and hot-plugged into the running guest", mv.VolumeID, mv.Target))
	} else {
		x.SetMessage(fmt.Sprintf("Volume %s attached as %s; the guest sees it at its next boot", mv.VolumeID, mv.Target))
	}
	return nil
}

// dropAttachment removes an attachment from the domain (live too when it
// runs), then from the records.
func (s *Service) dropAttachment(ctx context.Context, m machineRecord, mv machineVolume) error {
	live, err := s.domainRuns(ctx, m.Domain)
	if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return err
	}
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, detachTimeout)
		err = s.drv.DetachDisk(dctx, m.Domain, mv.Target, live)
		cancel()
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return err
		}
	}
	return s.forgetAttachment(m.ID, mv)
}

// forgetAttachment deletes an attachment's record and the Volume's use
// together.
func (s *Service) forgetAttachment(machineID string, mv machineVolume) error {
	return s.db.Update(func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, machineID, "Machine")
		if err != nil && !errdefs.Is(err, errdefs.NotFound) {
			return err
		}
		if err == nil {
			if i, _ := m.attachment(mv.ID); i >= 0 {
				m.Volumes = slices.Delete(m.Volumes, i, i+1)
				if err := records.Put(tx, kindMachines, machineID, m); err != nil {
					return err
				}
			}
		}
		if s.cfg.Volumes == nil {
			return nil
		}
		return s.cfg.Volumes.ReleaseVolume(tx, mv.VolumeID, machinePath(machineID), true)
	})
}

func (s *Service) setAttachmentState(machineID, id, state string) error {
	return s.db.Update(func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, machineID, "Machine")
		if err != nil {
			return err
		}
		_, mv := m.attachment(id)
		if mv == nil {
			return fmt.Errorf("attachment %s of Machine %s is no longer recorded", id, machineID)
		}
		mv.State = state
		return records.Put(tx, kindMachines, machineID, m)
	})
}

// runDetach removes the Volume's disk from the domain, waiting for a
// running guest to release it, then forgets the attachment. Re-runnable:
// a disk already gone is not an error.
func (s *Service) runDetach(ctx context.Context, x *job.Exec) error {
	var p attachParams
	if err := x.Params(&p); err != nil {
		return err
	}
	m, err := s.loadMachine(p.MachineID)
	if err != nil {
		return err
	}
	_, mv := m.attachment(p.AttachmentID)
	if mv == nil {
		return nil // a resumed detach that had finished
	}
	x.OnUndo("keep the volume attached", func(ctx context.Context) error {
		// A live detach that timed out has already changed the definition.
		if err := s.drv.AttachDisk(ctx, m.Domain, volumeDisk(*mv), false); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return err
		}
		return s.setAttachmentState(m.ID, mv.ID, attachAttached)
	})
	live, err := s.domainRuns(ctx, m.Domain)
	if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
		return err
	}
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, detachTimeout)
		err = s.drv.DetachDisk(dctx, m.Domain, mv.Target, live)
		cancel()
		if err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			return err
		}
	}
	if err := s.forgetAttachment(m.ID, *mv); err != nil {
		return err
	}
	x.Commit()
	if live {
		x.SetMessage(fmt.Sprintf("Volume %s detached from the running guest (%s)", mv.VolumeID, mv.Target))
	} else {
		x.SetMessage(fmt.Sprintf("Volume %s detached (%s)", mv.VolumeID, mv.Target))
	}
	return nil
}

// releaseVolumes forgets, in tx, every Volume use of a Machine being
// deleted: its domain, and so its attachments, are gone.
func (s *Service) releaseVolumes(tx *store.Tx, m machineRecord) error {
	if s.cfg.Volumes == nil {
		return nil
	}
	for _, mv := range m.Volumes {
		if err := s.cfg.Volumes.ReleaseVolume(tx, mv.VolumeID, machinePath(m.ID), true); err != nil {
			return err
		}
	}
	return nil
}
