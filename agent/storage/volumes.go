package storage

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// volumeKind serves the list and get of Volumes; every change of a Volume
// is its own.
func (s *Service) volumeKind() resource.Kind[volumeRecord, cimi.Volume] {
	return resource.Kind[volumeRecord, cimi.Volume]{Backend: s.backend(), Kind: kindVolumes, Type: "Volume", MemberKey: "volumes",
		Doc: s.volumeDoc, Meta: func(v *volumeRecord) *meta { return &v.meta }}
}

func (s *Service) volumeRoutes() []api.Route {
	k := s.volumeKind()
	return []api.Route{
		{Method: http.MethodGet, Path: "/volumes", Handler: k.List},
		{Method: http.MethodPost, Path: "/volumes", Handler: s.createVolume},
		{Method: http.MethodGet, Path: "/volumes/{id}", Handler: k.Get},
		{Method: http.MethodPut, Path: "/volumes/{id}", Handler: s.updateVolume},
		{Method: http.MethodDelete, Path: "/volumes/{id}", Handler: s.deleteVolume},
		{Method: http.MethodGet, Path: "/volumes/{id}/images", Handler: s.listVolumeImages},
		{Method: http.MethodGet, Path: "/volumes/{id}/images/{image}", Handler: s.getVolumeImage},
		{Method: http.MethodPost, Path: "/volumes/{id}/snapshot", Handler: s.snapshotVolume},
	}
}

func volumePath(id string) string { return kindVolumes + "/" + id }

func (s *Service) volumeDoc(urls api.URLs, v volumeRecord) *cimi.Volume {
	path := volumePath(v.ID)
	d := &cimi.Volume{
		Common:     commonDoc(urls, "Volume", path, v.meta),
		State:      v.State,
		Type:       v.Type,
		Capacity:   v.CapacityKiB,
		Bootable:   boolPtr(v.Bootable),
		Images:     cimi.NewRef(urls.Abs(path + "/images")),
		DiskFormat: v.DiskFormat,
		Format:     v.Format,
		Shareable:  boolPtr(v.Shareable),
	}
	for _, u := range v.Users {
		if u.Attached() {
			d.Machines = append(d.Machines, cimi.Ref{Href: urls.Abs("machines/" + u.Machine)})
		}
	}
	if v.State != cimi.StateDeleting {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelEdit, Href: d.ID})
	}
	if (v.State == cimi.StateAvailable || v.State == cimi.StateError) && len(v.Users) == 0 {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	if v.State == cimi.StateAvailable {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("snapshot"), Href: d.ID + "/snapshot"})
	}
	return d
}

// volumeParams are the parameters of every volume Job.
type volumeParams struct {
	VolumeID    string `json:"volumeId"`
	CapacityKiB int64  `json:"capacityKiB,omitempty"`
}

func (s *Service) createVolume(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeCreate
	if err := rq.Decode(&body, "VolumeCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.VolumeTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("volumeTemplate is required, by reference {\"href\": ...} or by value {\"volumeConfig\": ...}")
	}
	id := job.NewID()
	path := volumePath(id)
	var rec volumeRecord
	j, err := s.submit(job.Record{Kind: "volume.create", Action: cimi.RelAdd, Name: "create Volume",
		Target: kindVolumes, Affected: []string{kindVolumes, path}, Locks: []string{path}},
		volumeParams{VolumeID: id},
		func(tx *store.Tx) error {
			t, err := s.templateFor(tx, rq.URLs, body.VolumeTemplate)
			if err != nil {
				return err
			}
			if rec, err = s.newVolume(tx, id, body, t); err != nil {
				return err
			}
			if err := records.Put(tx, kindVolumes, id, rec); err != nil {
				return err
			}
			if rec.ImageID == "" && rec.Format == "" {
				s.ahead.start(id, rec.Path+".part", rec.DiskFormat, rec.CapacityKiB*1024)
			}
			return nil
		})
	if err != nil {
		if discardErr := s.ahead.discard(id); discardErr != nil {
			s.log.Error("remove the partial image of a volume that was not created", "volume", id, "err", discardErr)
		}
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.volumeDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

// templateFor resolves the template of a create: a stored one with
// overrides, or one given by value.
func (s *Service) templateFor(tx *store.Tx, urls api.URLs, in *cimi.VolumeTemplateInput) (templateRecord, error) {
	if in.Href == "" {
		return s.resolveTemplate(tx, urls, in)
	}
	t, err := resource.Lookup[templateRecord](tx, urls, in.Href, kindTemplates, "VolumeTemplate")
	if err != nil {
		return templateRecord{}, err
	}
	err = s.applyTemplateInput(tx, urls, &t, in)
	return t, err
}

// newVolume builds the record of a Volume about to be created.
func (s *Service) newVolume(tx *store.Tx, id string, body cimi.VolumeCreate, t templateRecord) (volumeRecord, error) {
	spec := configSpec{}
	switch {
	case t.ConfigID != "":
		c, err := records.Get[configRecord](tx, kindConfigs, t.ConfigID, "VolumeConfiguration")
		if err != nil {
			return volumeRecord{}, referenced(err)
		}
		spec = c.configSpec
	case t.Config != nil:
		spec = *t.Config
	}
	if err := s.validateSpec(&spec, true); err != nil {
		return volumeRecord{}, err
	}
	v := volumeRecord{
		meta:        newMeta(id, body.Name, body.Description, body.Properties, s.now()),
		State:       cimi.StateCreating,
		Type:        spec.Type,
		CapacityKiB: spec.CapacityKiB,
		DiskFormat:  spec.DiskFormat,
		Format:      spec.Format,
		Shareable:   spec.Shareable,
	}
	if t.ImageID != "" {
		im, err := records.Get[imageRecord](tx, kindImages, t.ImageID, "VolumeImage")
		if err != nil {
			return v, referenced(err)
		}
		if im.State != cimi.StateAvailable {
			return v, errdefs.Conflictf("VolumeImage %s is %s, not AVAILABLE", im.ID, im.State)
		}
		if spec.Format != "" {
			return v, errdefs.Invalidf("format %q applies to empty volumes only; a volume made from VolumeImage %s keeps the image's content", spec.Format, im.ID)
		}
		switch {
		case v.CapacityKiB == 0:
			v.CapacityKiB = im.VirtualSizeKiB
		case v.CapacityKiB < im.VirtualSizeKiB:
			return v, errdefs.Invalidf("capacity %d KiB is smaller than VolumeImage %s (%d KiB)", v.CapacityKiB, im.ID, im.VirtualSizeKiB)
		}
		v.ImageID, v.Bootable = im.ID, im.Bootable
	}
	if v.CapacityKiB == 0 {
		return v, errdefs.Invalidf("capacity is required (KiB) in the volumeConfig of a volume that is not made from a VolumeImage")
	}
	v.Path = s.volumeFile(id, v.DiskFormat)
	return v, nil
}

func (s *Service) updateVolume(rq *api.Request) (api.Reply, error) {
	var body cimi.Volume
	if err := rq.Decode(&body, "Volume"); err != nil {
		return api.Reply{}, err
	}
	selected, err := resource.UpdateSelection(rq, "capacity")
	if err != nil {
		return api.Reply{}, err
	}
	if selected != nil {
		switch {
		case body.Capacity != 0 && !slices.Contains(selected, "capacity"):
			return api.Reply{}, errdefs.Invalidf("the body carries capacity, which $select does not name")
		case body.Capacity == 0 && slices.Contains(selected, "capacity"):
			return api.Reply{}, errdefs.Invalidf("capacity cannot be removed; give the new capacity in KiB")
		}
		selected = slices.DeleteFunc(selected, func(a string) bool { return a == "capacity" })
	}
	id := rq.Vars["id"]
	path := volumePath(id)
	cur, err := view[volumeRecord](s.db, kindVolumes, id, "Volume")
	if err != nil {
		return api.Reply{}, err
	}
	if body.Capacity == 0 || body.Capacity == cur.CapacityKiB {
		return s.syncUpdate(path, func(tx *store.Tx) error {
			return records.Edit(tx, kindVolumes, id, "Volume", func(v *volumeRecord) error {
				return resource.ApplyUpdate(&v.meta, body.Common, selected, s.now())
			})
		})
	}
	return s.resize(rq, cur, body, selected)
}

// resize grows a Volume, applying the PUT's other attributes at once.
func (s *Service) resize(rq *api.Request, cur volumeRecord, body cimi.Volume, selected []string) (api.Reply, error) {
	want := body.Capacity
	switch {
	case want < 0:
		return api.Reply{}, errdefs.Invalidf("capacity must be a positive number of KiB, not %d", want)
	case want < cur.CapacityKiB:
		return api.Reply{}, errdefs.Conflictf("Volume %s has %d KiB; shrinking to %d KiB is refused, as it would cut off data (volumes only grow)", cur.ID, cur.CapacityKiB, want)
	case want > maxCapacityKiB:
		return api.Reply{}, errdefs.Invalidf("capacity %d KiB exceeds the maximum of %d KiB (16 TiB)", want, maxCapacityKiB)
	}
	path := volumePath(cur.ID)
	locks := []string{path}
	for _, u := range cur.Users {
		if u.Attached() {
			locks = append(locks, "machines/"+u.Machine)
		}
	}
	j, err := s.submit(job.Record{Kind: "volume.resize", Action: cimi.RelEdit, Name: "resize Volume", Target: path, Locks: locks},
		volumeParams{VolumeID: cur.ID, CapacityKiB: want},
		func(tx *store.Tx) error {
			v, err := records.Get[volumeRecord](tx, kindVolumes, cur.ID, "Volume")
			if err != nil {
				return err
			}
			if v.State != cimi.StateAvailable {
				return errdefs.Conflictf("Volume %s is %s; it can be resized when AVAILABLE", v.ID, v.State)
			}
			if !slices.Equal(v.Users, cur.Users) {
				return errdefs.Conflictf("Volume %s was attached or detached while the request was made; send it again", v.ID)
			}
			if want < v.CapacityKiB {
				return errdefs.Conflictf("Volume %s has %d KiB; shrinking to %d KiB is refused (volumes only grow)", v.ID, v.CapacityKiB, want)
			}
			for _, u := range v.Users {
				if !u.Attached() {
					return errdefs.Conflictf("Volume %s holds %s, a snapshot of Machine %s; restoring it would bring the old size back: delete that snapshot before growing the Volume", v.ID, u.User, u.Machine)
				}
			}
			if err := s.checkAttachedMachines(tx, v, "resized"); err != nil {
				return err
			}
			if err := resource.ApplyUpdate(&v.meta, body.Common, selected, s.now()); err != nil {
				return err
			}
			return records.Put(tx, kindVolumes, v.ID, v)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// checkAttachedMachines refuses to act on a Volume whose Machine is in a
// state where its disks cannot change: saved to disk, or in a transition.
func (s *Service) checkAttachedMachines(tx *store.Tx, v volumeRecord, what string) error {
	machines := s.machineOwner()
	if machines == nil {
		return nil
	}
	for _, u := range v.Users {
		if !u.Attached() {
			continue
		}
		state, err := machines.MachineState(tx, u.Machine)
		if err != nil {
			if errdefs.Is(err, errdefs.NotFound) {
				continue
			}
			return err
		}
		switch state {
		case cimi.StateStarted, cimi.StateStopped, cimi.StatePaused, cimi.StateError:
		default:
			return errdefs.Conflictf("Volume %s is attached to Machine %s, which is %s: it can be %s when the Machine is STARTED, PAUSED or STOPPED", v.ID, u.Machine, state, what)
		}
	}
	return nil
}

func (s *Service) deleteVolume(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := volumePath(id)
	j, err := s.submit(job.Record{Kind: "volume.delete", Action: cimi.RelDelete, Name: "delete Volume", Target: path, Locks: []string{path}},
		volumeParams{VolumeID: id},
		func(tx *store.Tx) error {
			v, err := records.Get[volumeRecord](tx, kindVolumes, id, "Volume")
			if err != nil {
				return err
			}
			switch v.State {
			case cimi.StateAvailable, cimi.StateError:
			case cimi.StateDeleting:
				return errdefs.Conflictf("Volume %s is already being deleted", id)
			default:
				return errdefs.Conflictf("Volume %s is %s; it can be deleted when AVAILABLE", id, v.State)
			}
			if err := inUse(v); err != nil {
				return err
			}
			v.State = cimi.StateDeleting
			return records.Put(tx, kindVolumes, id, v)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// inUse refuses to delete a Volume that a Machine uses, naming the user.
func inUse(v volumeRecord) error {
	if len(v.Users) == 0 {
		return nil
	}
	var why []string
	for _, u := range v.Users {
		if u.Attached() {
			why = append(why, fmt.Sprintf("it is attached to Machine %s as %s: detach it first", u.Machine, u.Target))
		} else {
			why = append(why, fmt.Sprintf("it holds %s, a snapshot of Machine %s: delete that snapshot first", u.User, u.Machine))
		}
	}
	return errdefs.Conflictf("Volume %s is in use: %s", v.ID, strings.Join(why, "; "))
}

// volumeImageEntry renders an entry of a Volume's images collection.
func volumeImageEntry(urls api.URLs, v volumeRecord, im imageRecord) *cimi.VolumeVolumeImage {
	path := volumePath(v.ID) + "/images/" + im.ID
	return &cimi.VolumeVolumeImage{
		Common: cimi.Common{ResourceURI: cimi.TypeURI("VolumeVolumeImage"), ID: urls.Abs(path),
			Created: cimi.TimePtr(im.Created), Updated: cimi.TimePtr(im.Updated)},
		VolumeImage: cimi.NewRef(urls.Abs(kindImages + "/" + im.ID)),
	}
}

// imagesOf reads a Volume and the VolumeImages taken of it.
func (s *Service) imagesOf(id string) (volumeRecord, []imageRecord, error) {
	var v volumeRecord
	var out []imageRecord
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		if v, err = records.Get[volumeRecord](tx, kindVolumes, id, "Volume"); err != nil {
			return err
		}
		images, err := records.List[imageRecord](tx, kindImages)
		if err != nil {
			return err
		}
		for _, im := range images {
			if im.VolumeID == id {
				out = append(out, im)
			}
		}
		return nil
	})
	return v, out, err
}

func (s *Service) listVolumeImages(rq *api.Request) (api.Reply, error) {
	v, images, err := s.imagesOf(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(images))
	for i, im := range images {
		members[i] = volumeImageEntry(rq.URLs, v, im)
	}
	return api.Reply{Body: collection(rq.URLs, "VolumeVolumeImage", volumePath(v.ID)+"/images", "volumeVolumeImages", members, false)}, nil
}

func (s *Service) getVolumeImage(rq *api.Request) (api.Reply, error) {
	v, images, err := s.imagesOf(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	for _, im := range images {
		if im.ID == rq.Vars["image"] {
			return api.Reply{Body: volumeImageEntry(rq.URLs, v, im)}, nil
		}
	}
	return api.Reply{}, errdefs.NotFoundf("Volume %s has no image %s", v.ID, rq.Vars["image"])
}

// snapshotVolume takes a VolumeImage of the Volume: the body, optional, is
// a VolumeImageCreate whose imageLocation, when given, names this Volume.
func (s *Service) snapshotVolume(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeImageCreate
	if err := rq.Decode(&body, "VolumeImageCreate", "VolumeImage"); err != nil && !errors.Is(err, cimi.ErrEmptyBody) {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	if loc := strings.TrimSpace(body.ImageLocation); loc != "" {
		if p, ok := rq.URLs.Path(loc); !ok || p != volumePath(id) {
			return api.Reply{}, errdefs.Invalidf("imageLocation %q does not name this Volume (%s)", loc, rq.URLs.Abs(volumePath(id)))
		}
	}
	return s.captureVolume(rq, id, body)
}
