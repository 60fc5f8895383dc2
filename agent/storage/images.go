package storage

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

func (s *Service) imageRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/volumeImages", Handler: s.listImages},
		{Method: http.MethodPost, Path: "/volumeImages", Handler: s.createImage},
		{Method: http.MethodGet, Path: "/volumeImages/{id}", Handler: s.getImage},
		{Method: http.MethodPut, Path: "/volumeImages/{id}", Handler: s.updateImage},
		{Method: http.MethodDelete, Path: "/volumeImages/{id}", Handler: s.deleteImage},
	}
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

func (s *Service) listImages(rq *api.Request) (api.Reply, error) {
	var recs []imageRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		recs, err = records.List[imageRecord](tx, kindImages)
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, im := range recs {
		members[i] = s.imageDoc(rq.URLs, im)
	}
	return api.Reply{Body: collection(rq.URLs, "VolumeImage", kindImages, "volumeImages", members, true)}, nil
}

func (s *Service) getImage(rq *api.Request) (api.Reply, error) {
	im, err := view[imageRecord](s.db, kindImages, rq.Vars["id"], "VolumeImage")
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.imageDoc(rq.URLs, im)}, nil
}

func (s *Service) updateImage(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeImage
	if err := rq.Decode(&body, "VolumeImage"); err != nil {
		return api.Reply{}, err
	}
	selected, err := selectedAttrs(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(imagePath(id), func(tx *store.Tx) error {
		im, err := records.Get[imageRecord](tx, kindImages, id, "VolumeImage")
		if err != nil {
			return err
		}
		if err := applyUpdate(&im.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindImages, id, im)
	})
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
	format, err := inspectHostImage(rq.Context(), path)
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
	if u.Host != "" && u.Host != "localhost" {
		return "", errdefs.Invalidf("imageLocation %q names another host; file:// must name a path on this host", loc)
	}
	if !filepath.IsAbs(u.Path) {
		return "", errdefs.Invalidf("imageLocation %q must name an absolute path", loc)
	}
	return filepath.Clean(u.Path), nil
}

// inspectHostImage detects the format of a host file and refuses images
// that reference other files.
func inspectHostImage(ctx context.Context, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errdefs.Invalidf("image file %s does not exist", path)
		}
		return "", errdefs.Invalidf("image file %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", errdefs.Invalidf("image file %s is not a regular file", path)
	}
	format, err := qemuimg.DetectFormat(path)
	if err != nil {
		return "", errdefs.Invalidf("image file %s: %v", path, err)
	}
	if err := qemuimg.CheckSelfContained(ctx, path, format); err != nil {
		if errors.Is(err, qemuimg.ErrExternalReference) {
			return "", errdefs.Invalidf("image %s is refused: %v", path, err)
		}
		return "", errdefs.Invalidf("image %s cannot be read as %s: %v", path, format, err)
	}
	return format, nil
}

func (s *Service) deleteImage(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := imagePath(id)
	j, err := s.submit(job.Record{Kind: "volumeImage.delete", Action: cimi.RelDelete, Name: "delete VolumeImage", Target: path, Locks: []string{path}},
		imageParams{ImageID: id},
		func(tx *store.Tx) error {
			im, err := records.Get[imageRecord](tx, kindImages, id, "VolumeImage")
			if err != nil {
				return err
			}
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
			return records.Put(tx, kindImages, id, im)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID}, nil
}

// imageInUse refuses to delete an image that templates name or that a
// Volume is being made from.
func imageInUse(tx *store.Tx, id string) error {
	templates, err := records.List[templateRecord](tx, kindTemplates)
	if err != nil {
		return err
	}
	for _, t := range templates {
		if t.ImageID == id {
			return errdefs.Conflictf("VolumeImage %s is used by VolumeTemplate %s", id, t.ID)
		}
	}
	volumes, err := records.List[volumeRecord](tx, kindVolumes)
	if err != nil {
		return err
	}
	for _, v := range volumes {
		if v.ImageID == id && v.State == cimi.StateCreating {
			return errdefs.Conflictf("VolumeImage %s is being copied into Volume %s", id, v.ID)
		}
	}
	return nil
}

// lookupImage resolves a VolumeImage reference that must be AVAILABLE.
func lookupImage(tx *store.Tx, urls api.URLs, in *cimi.VolumeImageInput) (imageRecord, error) {
	if in == nil || in.Href == "" {
		return imageRecord{}, errdefs.Invalidf("volumeImage must be a reference {\"href\": ...}")
	}
	id, err := refID(urls, in.Href, kindImages, "VolumeImage")
	if err != nil {
		return imageRecord{}, err
	}
	im, err := records.Get[imageRecord](tx, kindImages, id, "VolumeImage")
	if err != nil {
		return imageRecord{}, referenced(err)
	}
	if im.State != cimi.StateAvailable {
		return imageRecord{}, errdefs.Conflictf("VolumeImage %s is %s, not AVAILABLE", id, im.State)
	}
	return im, nil
}
