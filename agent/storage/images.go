package storage

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/hostimage"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// imageKind serves the list, get and update of VolumeImages; their
// create and delete are Jobs.
func (s *Service) imageKind() resource.Kind[imageRecord, cimi.VolumeImage] {
	return resource.Kind[imageRecord, cimi.VolumeImage]{Backend: s.backend(),
		Kind: kindImages, Type: "VolumeImage", MemberKey: "volumeImages",
		Doc: s.imageDoc, Meta: func(im *imageRecord) *meta { return &im.meta }}
}

func (s *Service) imageRoutes() []api.Route {
	return s.imageKind().Routes(s.createImage, s.deleteImage)
}

func imagePath(id string) string { return kindImages + "/" + id }

func (s *Service) imageDoc(urls api.URLs, im imageRecord) *cimi.VolumeImage {
	d := &cimi.VolumeImage{
		Common:     commonDoc(urls, "VolumeImage", imagePath(im.ID), im.meta),
		State:      im.State,
		Bootable:   boolPtr(im.Bootable),
		DiskFormat: im.Format,
		Capacity:   im.VirtualSizeKiB,
	}
	switch {
	case im.Path != "" && im.State == cimi.StateAvailable:
		d.ImageLocation = (&url.URL{Scheme: "file", Path: im.Path}).String()
	case im.VolumeID != "":
		d.ImageLocation = urls.Abs(volumePath(im.VolumeID))
	default:
		d.ImageLocation = im.Source
	}
	if im.VolumeID != "" {
		d.Volume = cimi.NewRef(urls.Abs(volumePath(im.VolumeID)))
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if im.State == cimi.StateAvailable || im.State == cimi.StateError {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

// imageParams are the parameters of a VolumeImage Job.
type imageParams struct {
	ImageID string `json:"imageId"`
}

// createImage registers a VolumeImage: a snapshot of a Volume when
// imageLocation names one, otherwise a copy of an image file on the host.
func (s *Service) createImage(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeImageCreate
	if err := rq.Decode(&body, "VolumeImageCreate", "VolumeImage"); err != nil {
		return api.Reply{}, err
	}
	loc := strings.TrimSpace(body.ImageLocation)
	if loc == "" {
		return api.Reply{}, errdefs.Invalidf("imageLocation is required: a Volume URI (to snapshot it) or a file:// path on the host")
	}
	if p, ok := rq.URLs.Path(loc); ok && !strings.HasPrefix(loc, "file:") {
		if id, found := strings.CutPrefix(p, kindVolumes+"/"); found && id != "" && !strings.Contains(id, "/") {
			return s.captureVolume(rq, id, body)
		}
	}
	path, err := parseFileLocation(loc)
	if err != nil {
		return api.Reply{}, err
	}
	format, err := hostimage.Inspect(rq.Context(), path)
	if err != nil {
		return api.Reply{}, err
	}
	rec := imageRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()),
		State: cimi.StateCreating, Source: loc, SourceFormat: format, Bootable: body.Bootable != nil && *body.Bootable}
	return s.submitImage(rq, rec, nil, nil)
}

// captureVolume starts the snapshot of Volume id into a new VolumeImage.
func (s *Service) captureVolume(rq *api.Request, id string, body cimi.VolumeImageCreate) (api.Reply, error) {
	cur, err := view[volumeRecord](s.db, kindVolumes, id, "Volume")
	if err != nil {
		if rq.Vars["id"] == "" {
			err = referenced(err)
		}
		return api.Reply{}, err
	}
	rec := imageRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()),
		State: cimi.StateCreating, Source: rq.URLs.Abs(volumePath(id)), VolumeID: id, SourceFormat: cur.DiskFormat,
		Bootable: cur.Bootable}
	if body.Bootable != nil {
		rec.Bootable = *body.Bootable
	}
	locks := []string{volumePath(id)}
	for _, u := range cur.Users {
		if u.Attached() {
			locks = append(locks, "machines/"+u.Machine)
		}
	}
	return s.submitImage(rq, rec, locks, func(tx *store.Tx) error {
		v, err := records.Get[volumeRecord](tx, kindVolumes, id, "Volume")
		if err != nil {
			return err
		}
		if v.State != cimi.StateAvailable {
			return errdefs.Conflictf("Volume %s is %s; it can be snapshotted when AVAILABLE", id, v.State)
		}
		if !slices.Equal(v.Users, cur.Users) {
			return errdefs.Conflictf("Volume %s was attached or detached while the request was made; send it again", id)
		}
		if err := s.checkStoppedUsers(tx, v); err != nil {
			return err
		}
		v.State = cimi.StateCapturing
		return records.Put(tx, kindVolumes, id, v)
	})
}

// checkStoppedUsers refuses to copy a Volume that a running guest writes
// to: the copy would not be consistent. Every Machine the Volume is
// attached to must be STOPPED.
func (s *Service) checkStoppedUsers(tx *store.Tx, v volumeRecord) error {
	machines := s.machineOwner()
	if machines == nil {
		return nil
	}
	var busy []string
	for _, u := range v.Users {
		if !u.Attached() {
			continue
		}
		state, err := machines.MachineState(tx, u.Machine)
		if errdefs.Is(err, errdefs.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if state != cimi.StateStopped {
			busy = append(busy, fmt.Sprintf("Machine %s, which is %s", u.Machine, state))
		}
	}
	switch len(busy) {
	case 0:
		return nil
	case 1:
		return errdefs.Conflictf("Volume %s is attached to %s: stop the Machine or detach the Volume, so that the copy is consistent", v.ID, busy[0])
	default:
		return errdefs.Conflictf("Volume %s is attached to %s: stop those Machines or detach the Volume from them, so that the copy is consistent", v.ID, strings.Join(busy, ", and to "))
	}
}

func (s *Service) submitImage(rq *api.Request, rec imageRecord, locks []string, prepare func(tx *store.Tx) error) (api.Reply, error) {
	path := imagePath(rec.ID)
	affected := []string{kindImages, path}
	if rec.VolumeID != "" {
		affected = append(affected, volumePath(rec.VolumeID))
	}
	j, err := s.submit(job.Record{Kind: "volumeImage.create", Action: cimi.RelAdd, Name: "create VolumeImage",
		Target: kindImages, Affected: affected, Locks: append([]string{path}, locks...)},
		imageParams{ImageID: rec.ID},
		func(tx *store.Tx) error {
			if prepare != nil {
				if err := prepare(tx); err != nil {
					return err
				}
			}
			return records.Put(tx, kindImages, rec.ID, rec)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.imageDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

// parseFileLocation accepts file:// URLs naming an absolute path on this
// host.
func parseFileLocation(loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", errdefs.Invalidf("imageLocation %q is not a URL: %v", loc, err)
	}
	if u.Scheme != "file" {
		return "", errdefs.Invalidf("imageLocation %q: a VolumeImage comes from a Volume of this provider or a file:// path on the host", loc)
	}
	return hostimage.FilePath(loc, u)
}

func (s *Service) deleteImage(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := imagePath(id)
	j, err := s.submit(job.Record{Kind: "volumeImage.delete", Action: cimi.RelDelete, Name: "delete VolumeImage", Target: path, Locks: []string{path}},
		imageParams{ImageID: id},
		func(tx *store.Tx) error {
			return records.Edit(tx, kindImages, id, "VolumeImage", func(im *imageRecord) error {
				switch im.State {
				case cimi.StateAvailable, cimi.StateError:
				case cimi.StateDeleting:
					return errdefs.Conflictf("VolumeImage %s is already being deleted", id)
				default:
					return errdefs.Conflictf("VolumeImage %s is %s; it can be deleted when AVAILABLE", id, im.State)
				}
				if err := imageInUse(tx, id); err != nil {
					return err
				}
				im.State = cimi.StateDeleting
				return nil
			})
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID}, nil
}

// imageInUse refuses to delete an image that templates name or that a
// Volume is being made from.
func imageInUse(tx *store.Tx, id string) error {
	t, found, err := records.Find(tx, kindTemplates, func(t templateRecord) bool { return t.ImageID == id })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("VolumeImage %s is used by VolumeTemplate %s", id, t.ID)
	}
	v, found, err := records.Find(tx, kindVolumes, func(v volumeRecord) bool { return v.ImageID == id && v.State == cimi.StateCreating })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("VolumeImage %s is being copied into Volume %s", id, v.ID)
	}
	return nil
}

// lookupImage resolves a VolumeImage reference that must be AVAILABLE.
func lookupImage(tx *store.Tx, urls api.URLs, in *cimi.VolumeImageInput) (imageRecord, error) {
	if in == nil || in.Href == "" {
		return imageRecord{}, errdefs.Invalidf("volumeImage must be a reference {\"href\": ...}")
	}
	im, err := resource.Lookup[imageRecord](tx, urls, in.Href, kindImages, "VolumeImage")
	if err != nil {
		return imageRecord{}, err
	}
	if im.State != cimi.StateAvailable {
		return imageRecord{}, errdefs.Conflictf("VolumeImage %s is %s, not AVAILABLE", im.ID, im.State)
	}
	return im, nil
}
