package storage

import (
	"cimid/agent/records"
	"net/http"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

func (s *Service) templateRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/volumeTemplates", Handler: s.listTemplates},
		{Method: http.MethodPost, Path: "/volumeTemplates", Handler: s.createTemplate},
		{Method: http.MethodGet, Path: "/volumeTemplates/{id}", Handler: s.getTemplate},
		{Method: http.MethodPut, Path: "/volumeTemplates/{id}", Handler: s.updateTemplate},
		{Method: http.MethodDelete, Path: "/volumeTemplates/{id}", Handler: s.deleteTemplate},
	}
}

func (s *Service) templateDoc(urls api.URLs, t templateRecord) *cimi.VolumeTemplate {
	d := &cimi.VolumeTemplate{Common: commonDoc(urls, "VolumeTemplate", kindTemplates+"/"+t.ID, t.meta)}
	switch {
	case t.ConfigID != "":
		d.VolumeConfig = &cimi.VolumeConfigInput{Href: urls.Abs(kindConfigs + "/" + t.ConfigID)}
	case t.Config != nil:
		d.VolumeConfig = &cimi.VolumeConfigInput{Type: t.Config.Type, Format: t.Config.Format,
			Capacity: t.Config.CapacityKiB, DiskFormat: t.Config.DiskFormat}
		if t.Config.Shareable {
			d.VolumeConfig.Shareable = boolPtr(true)
		}
	}
	if t.ImageID != "" {
		d.VolumeImage = &cimi.VolumeImageInput{Href: urls.Abs(kindImages + "/" + t.ImageID)}
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) listTemplates(rq *api.Request) (api.Reply, error) {
	var recs []templateRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		recs, err = records.List[templateRecord](tx, kindTemplates)
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, t := range recs {
		members[i] = s.templateDoc(rq.URLs, t)
	}
	return api.Reply{Body: collection(rq.URLs, "VolumeTemplate", kindTemplates, "volumeTemplates", members, true)}, nil
}

func (s *Service) getTemplate(rq *api.Request) (api.Reply, error) {
	t, err := view[templateRecord](s.db, kindTemplates, rq.Vars["id"], "VolumeTemplate")
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.templateDoc(rq.URLs, t)}, nil
}

// resolveTemplate turns a template given by value into a record (not
// stored), checking every reference.
func (s *Service) resolveTemplate(tx *store.Tx, urls api.URLs, in *cimi.VolumeTemplateInput) (templateRecord, error) {
	var t templateRecord
	if in.VolumeConfig == nil && in.VolumeImage == nil {
		return t, errdefs.Invalidf("a VolumeTemplate needs a volumeConfig, a volumeImage, or both")
	}
	if in.VolumeConfig != nil {
		spec, configID, err := s.lookupConfig(tx, urls, in.VolumeConfig)
		if err != nil {
			return t, err
		}
		if configID != "" {
			t.ConfigID = configID
		} else {
			t.Config = &spec
		}
	}
	if in.VolumeImage != nil {
		im, err := lookupImage(tx, urls, in.VolumeImage)
		if err != nil {
			return t, err
		}
		t.ImageID = im.ID
	}
	return t, nil
}

func (s *Service) createTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeTemplateCreate
	if err := rq.Decode(&body, "VolumeTemplateCreate", "VolumeTemplate"); err != nil {
		return api.Reply{}, err
	}
	in := body.VolumeTemplate
	if in == nil {
		in = &cimi.VolumeTemplateInput{VolumeConfig: body.VolumeConfig, VolumeImage: body.VolumeImage}
	} else if body.VolumeConfig != nil || body.VolumeImage != nil {
		return api.Reply{}, errdefs.Invalidf("give the template's attributes either inside volumeTemplate or at the top level, not both")
	}
	if in.Href != "" {
		return api.Reply{}, errdefs.Invalidf("a VolumeTemplate is created by value; a reference to another template is not accepted")
	}
	var rec templateRecord
	id := job.NewID()
	path := kindTemplates + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create VolumeTemplate", Target: kindTemplates, Affected: []string{kindTemplates, path}},
		func(tx *store.Tx) error {
			t, err := s.resolveTemplate(tx, rq.URLs, in)
			if err != nil {
				return err
			}
			t.meta = newMeta(id, body.Name, body.Description, body.Properties, s.now())
			rec = t
			return records.Put(tx, kindTemplates, id, t)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: s.templateDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

func (s *Service) updateTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeTemplate
	if err := rq.Decode(&body, "VolumeTemplate"); err != nil {
		return api.Reply{}, err
	}
	selected, err := selectedAttrs(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(kindTemplates+"/"+id, func(tx *store.Tx) error {
		t, err := records.Get[templateRecord](tx, kindTemplates, id, "VolumeTemplate")
		if err != nil {
			return err
		}
		if err := applyUpdate(&t.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindTemplates, id, t)
	})
}

func (s *Service) deleteTemplate(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := kindTemplates + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete VolumeTemplate", Target: path}, func(tx *store.Tx) error {
		if _, err := records.Get[templateRecord](tx, kindTemplates, id, "VolumeTemplate"); err != nil {
			return err
		}
		return tx.Delete(kindTemplates, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}
