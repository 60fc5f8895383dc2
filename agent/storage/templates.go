package storage

import (
	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/resource"
	"cimid/store"
)

func (s *Service) templateKind() resource.Kind[templateRecord, cimi.VolumeTemplate] {
	return resource.Kind[templateRecord, cimi.VolumeTemplate]{Backend: s.backend(),
		Kind: kindTemplates, Type: "VolumeTemplate", MemberKey: "volumeTemplates",
		Doc: s.templateDoc, Meta: func(t *templateRecord) *meta { return &t.meta }}
}

func (s *Service) templateRoutes() []api.Route {
	k := s.templateKind()
	return k.Routes(s.createTemplate, k.Delete)
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

// resolveTemplate turns a template given by value into a record (not
// stored), checking every reference.
func (s *Service) resolveTemplate(tx *store.Tx, urls api.URLs, in *cimi.VolumeTemplateInput) (templateRecord, error) {
	var t templateRecord
	if in.VolumeConfig == nil && in.VolumeImage == nil {
		return t, errdefs.Invalidf("a VolumeTemplate needs a volumeConfig, a volumeImage, or both")
	}
	err := s.applyTemplateInput(tx, urls, &t, in)
	return t, err
}

// applyTemplateInput sets on t the configuration and the image that in
// gives, checking their references.
func (s *Service) applyTemplateInput(tx *store.Tx, urls api.URLs, t *templateRecord, in *cimi.VolumeTemplateInput) error {
	if in.VolumeConfig != nil {
		spec, configID, err := s.lookupConfig(tx, urls, in.VolumeConfig)
		if err != nil {
			return err
		}
		t.ConfigID, t.Config = configID, nil
		if configID == "" {
			t.Config = &spec
		}
	}
	if in.VolumeImage != nil {
		im, err := lookupImage(tx, urls, in.VolumeImage)
		if err != nil {
			return err
		}
		t.ImageID = im.ID
	}
	return nil
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
	return s.templateKind().Create(rq, func(tx *store.Tx, id string) (templateRecord, error) {
		t, err := s.resolveTemplate(tx, rq.URLs, in)
		if err != nil {
			return t, err
		}
		t.meta = newMeta(id, body.Name, body.Description, body.Properties, s.now())
		return t, nil
	})
}
