package compute

import (
	"cimid/agent/records"
	"net/http"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

func (s *Service) templateRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/machineTemplates", Handler: s.listTemplates},
		{Method: http.MethodPost, Path: "/machineTemplates", Handler: s.createTemplate},
		{Method: http.MethodGet, Path: "/machineTemplates/{id}", Handler: s.getTemplate},
		{Method: http.MethodPut, Path: "/machineTemplates/{id}", Handler: s.updateTemplate},
		{Method: http.MethodDelete, Path: "/machineTemplates/{id}", Handler: s.deleteTemplate},
	}
}

func (s *Service) templateDoc(urls api.URLs, t templateRecord) *cimi.MachineTemplate {
	path := kindTemplates + "/" + t.ID
	d := &cimi.MachineTemplate{
		Common:       commonDoc(urls, "MachineTemplate", path, t.meta),
		InitialState: t.InitialState,
	}
	net := t.templateNet()
	d.UserData = net.UserData
	if s.cfg.Networks != nil {
		d.NetworkInterfaces, d.Credential = s.cfg.Networks.TemplateDoc(urls, net)
		if net.Interfaces != nil && d.NetworkInterfaces == nil {
			d.NetworkInterfaces = []cimi.MachineNetworkInterfaceInput{} // no interface, unlike an absent list
		}
	}
	switch {
	case t.ConfigID != "":
		d.MachineConfig = &cimi.MachineConfigInput{Href: urls.Abs(kindConfigs + "/" + t.ConfigID)}
	case t.Config != nil:
		d.MachineConfig = &cimi.MachineConfigInput{CPU: t.Config.CPU, Memory: t.Config.MemoryKiB,
			CPUArch: t.Config.CPUArch, CPUSpeed: t.Config.CPUSpeed, Disks: diskConfigDocs(t.Config.Disks)}
	}
	if t.ImageID != "" {
		d.MachineImage = &cimi.MachineImageInput{Href: urls.Abs(kindImages + "/" + t.ImageID)}
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
	return api.Reply{Body: collection(rq.URLs, "MachineTemplate", kindTemplates, "machineTemplates", members, true)}, nil
}

func (s *Service) getTemplate(rq *api.Request) (api.Reply, error) {
	var t templateRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		t, err = records.Get[templateRecord](tx, kindTemplates, rq.Vars["id"], "MachineTemplate")
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.templateDoc(rq.URLs, t)}, nil
}

// checkInitialState accepts the non-transient states a Machine can be
// created in.
func checkInitialState(state string) (string, error) {
	switch st := strings.ToUpper(strings.TrimSpace(state)); st {
	case "":
		return "", nil
	case cimi.StateStarted, cimi.StateStopped:
		return st, nil
	default:
		return "", errdefs.Invalidf("initialState %q is not supported: use STARTED or STOPPED", state)
	}
}

// resolveTemplate turns a template given by value into a record (not
// stored), checking every reference.
func (s *Service) resolveTemplate(tx *store.Tx, urls api.URLs, in *cimi.MachineTemplateInput) (templateRecord, error) {
	var t templateRecord
	spec, configID, err := s.lookupConfig(tx, urls, in.MachineConfig)
	if err != nil {
		return t, err
	}
	if configID != "" {
		t.ConfigID = configID
	} else {
		t.Config = &spec
	}
	im, err := lookupImage(tx, urls, in.MachineImage)
	if err != nil {
		return t, err
	}
	t.ImageID = im.ID
	if t.InitialState, err = checkInitialState(in.InitialState); err != nil {
		return t, err
	}
	if t.Net, err = s.resolveNet(tx, urls, nil, in); err != nil {
		return t, err
	}
	return t, nil
}

func (s *Service) createTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineTemplateCreate
	if err := rq.Decode(&body, "MachineTemplateCreate", "MachineTemplate"); err != nil {
		return api.Reply{}, err
	}
	in := body.MachineTemplate
	if in == nil {
		in = &cimi.MachineTemplateInput{MachineConfig: body.MachineConfig, MachineImage: body.MachineImage,
			InitialState: body.InitialState, UserData: body.UserData,
			NetworkInterfaces: body.NetworkInterfaces, Credential: body.Credential}
	} else if body.MachineConfig != nil || body.MachineImage != nil || body.InitialState != "" || body.UserData != nil ||
		body.NetworkInterfaces != nil || body.Credential != nil {
		return api.Reply{}, errdefs.Invalidf("give the template's attributes either inside machineTemplate or at the top level, not both")
	}
	if in.Href != "" {
		return api.Reply{}, errdefs.Invalidf("a MachineTemplate is created by value; a reference to another template is not accepted")
	}
	var rec templateRecord
	id := job.NewID()
	path := kindTemplates + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create MachineTemplate", Target: kindTemplates, Affected: []string{kindTemplates, path}},
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
	var body cimi.MachineTemplate
	if err := rq.Decode(&body, "MachineTemplate"); err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(rq, kindTemplates+"/"+id, func(tx *store.Tx) error {
		t, err := records.Get[templateRecord](tx, kindTemplates, id, "MachineTemplate")
		if err != nil {
			return err
		}
		if err := applyUpdate(&t.meta, body.Common, selectedAttrs(rq), s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindTemplates, id, t)
	})
}

func (s *Service) deleteTemplate(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := kindTemplates + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete MachineTemplate", Target: path}, func(tx *store.Tx) error {
		if _, err := records.Get[templateRecord](tx, kindTemplates, id, "MachineTemplate"); err != nil {
			return err
		}
		return tx.Delete(kindTemplates, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}
