package compute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/hostimage"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

// imageKind serves the list, get and update of MachineImages; their
// create and delete are Jobs.
func (s *Service) imageKind() resource.Kind[imageRecord, cimi.MachineImage] {
	return resource.Kind[imageRecord, cimi.MachineImage]{Backend: s.backend(),
		Kind: kindImages, Type: "MachineImage", MemberKey: "machineImages",
		Doc: s.imageDoc, Meta: func(im *imageRecord) *meta { return &im.meta }}
}

func (s *Service) imageRoutes() []api.Route {
	return s.imageKind().Routes(s.createImage, s.deleteImage)
}

func (s *Service) imageDoc(urls api.URLs, im imageRecord) *cimi.MachineImage {
	path := kindImages + "/" + im.ID
	d := &cimi.MachineImage{
		Common:        commonDoc(urls, "MachineImage", path, im.meta),
		State:         im.State,
		Type:          im.Type,
		ImageLocation: im.Source,
		DiskFormat:    im.Format,
		Capacity:      im.VirtualSizeKiB,
	}
	addOriginDoc(urls, im, d)
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if im.State != imageDeleting {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

// imageParams are the parameters of an image.create Job.
type imageParams struct {
	ImageID string `json:"imageId"`
}

// imageSource is a validated imageLocation.
type imageSource struct {
	url  *url.URL
	path string // for file:// sources
}

// parseImageLocation accepts file:// paths on the host and http(s) URLs.
func parseImageLocation(loc string) (imageSource, error) {
	loc = strings.TrimSpace(loc)
	if loc == "" {
		return imageSource{}, errdefs.Invalidf("imageLocation is required: a file:// path on the host or an http(s):// URL")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return imageSource{}, errdefs.Invalidf("imageLocation %q is not a URL: %v", loc, err)
	}
	switch u.Scheme {
	case "file":
		path, err := hostimage.FilePath(loc, u)
		if err != nil {
			return imageSource{}, err
		}
		return imageSource{url: u, path: path}, nil
	case "http", "https":
		if u.Host == "" {
			return imageSource{}, errdefs.Invalidf("imageLocation %q has no host", loc)
		}
		return imageSource{url: u}, nil
	}
	return imageSource{}, errdefs.Invalidf("imageLocation %q: scheme %q is not supported (use file:// or http(s)://)", loc, u.Scheme)
}

func (s *Service) createImage(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineImageCreate
	if err := rq.Decode(&body, "MachineImageCreate", "MachineImage"); err != nil {
		return api.Reply{}, err
	}
	if t := strings.TrimSpace(body.Type); t != "" && t != "IMAGE" {
		return api.Reply{}, errdefs.Invalidf("type %q cannot be registered from a location; only IMAGE (snapshots come from a Machine's operations)", t)
	}
	if p, ok := rq.URLs.Path(body.ImageLocation); ok && strings.HasPrefix(body.ImageLocation, "http") && strings.HasPrefix(p, kindMachines+"/") {
		return api.Reply{}, errdefs.Invalidf("imageLocation names a Machine: use that Machine's capture operation to make an image of it")
	}
	src, err := parseImageLocation(body.ImageLocation)
	if err != nil {
		return api.Reply{}, err
	}
	rec := imageRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()),
		State: imageCreating, Type: "IMAGE", Source: src.url.String()}
	if src.path != "" {
		// A host file can be judged at once; it is checked again once copied.
		if rec.SourceFormat, err = hostimage.Inspect(rq.Context(), src.path); err != nil {
			return api.Reply{}, err
		}
	}
	path := kindImages + "/" + rec.ID
	j, err := s.submit(job.Record{Kind: "image.create", Action: cimi.RelAdd, Name: "register MachineImage",
		Target: kindImages, Affected: []string{kindImages, path}, Locks: []string{path}},
		imageParams{ImageID: rec.ID},
		func(tx *store.Tx) error { return records.Put(tx, kindImages, rec.ID, rec) })
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.imageDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

func (s *Service) imageFile(id string) string { return filepath.Join(s.poolDir, "image-"+id+".qcow2") }

// runCreateImage copies the image into the pool as qcow2. Re-runnable: it
// starts over from the source after an interruption.
func (s *Service) runCreateImage(ctx context.Context, x *job.Exec) error {
	var p imageParams
	if err := x.Params(&p); err != nil {
		return err
	}
	im, err := s.loadImage(p.ImageID)
	if err != nil {
		return err
	}
	dst := s.imageFile(im.ID)
	download := filepath.Join(s.poolDir, "download-"+im.ID+".part")
	partial := dst + ".part"
	x.OnUndo("remove image record and files", func(ctx context.Context) error {
		for _, f := range []string{download, partial, dst} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindImages, im.ID) })
	})
	src, err := parseImageLocation(im.Source)
	if err != nil {
		return err
	}
	input, convertShare := src.path, 90
	if src.path == "" {
		if err := s.download(ctx, x, src.url.String(), download); err != nil {
			return err
		}
		input, convertShare = download, 50
	}
	format, err := hostimage.Inspect(ctx, input)
	if err != nil {
		return err
	}
	base := 100 - convertShare - 5
	err = qemuimg.Convert(ctx, input, format, partial, "qcow2", func(pct float64) {
		x.Progress(base + int(pct*float64(convertShare)/100))
	})
	if err != nil {
		return fmt.Errorf("copy image into the pool: %w", err)
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
	_ = os.Remove(download)
	if err := s.drv.RefreshPool(ctx, s.poolName); err != nil {
		x.Log().Warn("refresh pool", "err", err)
	}
	err = records.Update(s.db, kindImages, im.ID, "MachineImage", func(cur *imageRecord) error {
		cur.State, cur.Path, cur.Format, cur.SourceFormat = imageAvailable, dst, "qcow2", format
		cur.VirtualSizeKiB = info.VirtualSize / 1024
		return nil
	})
	if err != nil {
		return err
	}
	x.Commit()
	x.SetMessage(fmt.Sprintf("image registered (%s source, %d MiB virtual size)", format, info.VirtualSize>>20))
	return nil
}

// download fetches an http(s) image into path with progress (0-40%).
func (s *Service) download(ctx context.Context, x *job.Exec, src, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: server answered %s", src, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	total := resp.ContentLength
	var done int64
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("write download: %w", err)
			}
			done += int64(n)
			if total > 0 {
				x.Progress(int(done * 40 / total))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("download %s: %w", src, rerr)
		}
	}
	return f.Sync()
}

func (s *Service) loadImage(id string) (imageRecord, error) {
	return records.View[imageRecord](s.db, kindImages, id, "MachineImage")
}

func (s *Service) deleteImage(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	if reply, ok, err := s.deleteSnapshotImage(id); ok {
		return reply, err
	}
	path := kindImages + "/" + id
	j, err := s.submit(job.Record{Kind: "image.delete", Action: cimi.RelDelete, Name: "delete MachineImage", Target: path, Locks: []string{path}},
		imageParams{ImageID: id},
		func(tx *store.Tx) error {
			return records.Edit(tx, kindImages, id, "MachineImage", func(im *imageRecord) error {
				if err := imageInUse(tx, id); err != nil {
					return err
				}
				im.State = imageDeleting
				return nil
			})
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID}, nil
}

// imageInUse refuses to delete an image that Machines boot from (their
// disks are overlays on it) or that templates name.
func imageInUse(tx *store.Tx, id string) error {
	m, found, err := records.Find(tx, kindMachines, func(m machineRecord) bool { return m.ImageID == id })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("MachineImage %s is the base of Machine %s's disk", id, m.ID)
	}
	t, found, err := records.Find(tx, kindTemplates, func(t templateRecord) bool { return t.ImageID == id })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("MachineImage %s is used by MachineTemplate %s", id, t.ID)
	}
	return nil
}

func (s *Service) runDeleteImage(ctx context.Context, x *job.Exec) error {
	var p imageParams
	if err := x.Params(&p); err != nil {
		return err
	}
	var im imageRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if im, err = records.Get[imageRecord](tx, kindImages, p.ImageID, "MachineImage"); err != nil {
			return err
		}
		return imageInUse(tx, p.ImageID)
	})
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // already gone: a resumed delete
	}
	if err != nil {
		s.setImageState(p.ImageID, imageAvailable)
		return err
	}
	for _, f := range []string{s.imageFile(im.ID), s.imageFile(im.ID) + ".part"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove image file: %w", err)
		}
	}
	if err := s.drv.RefreshPool(ctx, s.poolName); err != nil {
		x.Log().Warn("refresh pool", "err", err)
	}
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindImages, im.ID) })
}

func (s *Service) setImageState(id, state string) {
	err := records.Update(s.db, kindImages, id, "MachineImage", func(im *imageRecord) error {
		im.State = state
		return nil
	})
	if err != nil {
		s.log.Error("set image state", "image", id, "err", err)
	}
}

// lookupImage resolves a MachineImage reference that must be AVAILABLE.
func lookupImage(tx *store.Tx, urls api.URLs, in *cimi.MachineImageInput) (imageRecord, error) {
	if in == nil || in.Href == "" {
		return imageRecord{}, errdefs.Invalidf("machineImage is required, as a reference {\"href\": ...}")
	}
	im, err := resource.Lookup[imageRecord](tx, urls, in.Href, kindImages, "MachineImage")
	if err != nil {
		return imageRecord{}, err
	}
	if im.State != imageAvailable {
		return imageRecord{}, errdefs.Conflictf("MachineImage %s is %s, not AVAILABLE", im.ID, im.State)
	}
	if im.Type == imageTypeSnapshot {
		return imageRecord{}, errdefs.Invalidf("MachineImage %s is a SNAPSHOT of Machine %s: restore it on that Machine; new Machines boot from images of type IMAGE (capture makes one)", im.ID, im.MachineID)
	}
	return im, nil
}
