package compute

import (
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/resource"
	"cimid/store"
)

func (s *Service) templateKind() resource.Kind[templateRecord, cimi.MachineTemplate] {
	return resource.Kind[templateRecord, cimi.MachineTemplate]{Backend: s.backend(),
		Kind: kindTemplates, Type: "MachineTemplate", MemberKey: "machineTemplates",
		Doc: s.templateDoc, Meta: func(t *templateRecord) *meta { return &t.meta }}
}

func (s *Service) templateRoutes() []api.Route {
	k := s.templateKind()
	return k.Routes(s.createTemplate, k.Delete)
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
	return s.templateKind().Create(rq, func(tx *store.Tx, id string) (templateRecord, error) {
		t, err := s.resolveTemplate(tx, rq.URLs, in)
		if err != nil {
			return t, err
		}
		t.meta = newMeta(id, body.Name, body.Description, body.Properties, s.now())
		return t, nil
	})
}
