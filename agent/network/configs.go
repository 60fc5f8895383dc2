package network

import (
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// Network types a configuration may name.
const (
	typePublic  = "PUBLIC"
	typePrivate = "PRIVATE"
)

// checkSpec validates a network shape and normalises it. The subnet is
// not compared with other networks here; that happens when a Network is
// made of it.
func checkSpec(in netSpec) (netSpec, error) {
	out := in
	switch m := strings.ToLower(strings.TrimSpace(in.ForwardMode)); m {
	case "":
		out.ForwardMode = ""
	case forwardNAT, forwardIsolated:
		out.ForwardMode = m
	default:
		return netSpec{}, errdefs.Invalidf("forwardMode %q is not supported: use nat or isolated", in.ForwardMode)
	}
	switch t := strings.ToUpper(strings.TrimSpace(in.NetworkType)); t {
	case "", typePublic, typePrivate:
		out.NetworkType = t
	default:
		return netSpec{}, errdefs.Invalidf("networkType %q is not supported: use PUBLIC (NAT to the host's uplink) or PRIVATE (isolated)", in.NetworkType)
	}
	if out.NetworkType == typePublic && out.ForwardMode == forwardIsolated || out.NetworkType == typePrivate && out.ForwardMode == forwardNAT {
		return netSpec{}, errdefs.Invalidf("networkType %s contradicts forwardMode %s", out.NetworkType, out.ForwardMode)
	}
	if in.MTU != 0 && (in.MTU < 68 || in.MTU > 65535) {
		return netSpec{}, errdefs.Invalidf("mtu %d is outside 68..65535", in.MTU)
	}
	out.Subnet = strings.TrimSpace(in.Subnet)
	out.DHCPRange = strings.TrimSpace(in.DHCPRange)
	if out.Subnet == "" {
		if out.DHCPRange != "" {
			return netSpec{}, errdefs.Invalidf("dhcpRange %s needs a subnet to belong to", out.DHCPRange)
		}
		return out, nil
	}
	a, err := planAddressing(out.Subnet, out.DHCPRange)
	if err != nil {
		return netSpec{}, err
	}
	out.Subnet = a.Subnet.String()
	if out.DHCPRange != "" {
		out.DHCPRange = a.rangeString()
	}
	return out, nil
}

// resolveMode fills in the forward mode and network type of a spec.
func resolveMode(in netSpec) netSpec {
	if in.ForwardMode == "" {
		in.ForwardMode = forwardNAT
		if in.NetworkType == typePrivate {
			in.ForwardMode = forwardIsolated
		}
	}
	if in.NetworkType == "" {
		in.NetworkType = typePublic
		if in.ForwardMode == forwardIsolated {
			in.NetworkType = typePrivate
		}
	}
	return in
}

func specFromInput(in *cimi.NetworkConfigInput) netSpec {
	return netSpec{NetworkType: in.NetworkType, MTU: in.MTU, ClassOfService: in.ClassOfService,
		ForwardMode: in.ForwardMode, Subnet: in.Subnet, DHCPRange: in.DHCPRange}
}

func (s *Service) configKind() resource.Kind[configRecord, cimi.NetworkConfiguration] {
	return resource.Kind[configRecord, cimi.NetworkConfiguration]{Backend: s.backend(),
		Kind: kindConfigs, Type: "NetworkConfiguration", MemberKey: "networkConfigurations",
		Doc: s.configDoc, Meta: func(c *configRecord) *meta { return &c.meta }, InUse: configInUse}
}

func (s *Service) configRoutes() []api.Route {
	k := s.configKind()
	return k.Routes(s.createConfig, k.Delete)
}

// configInUse refuses to delete a configuration that templates name.
func configInUse(tx *store.Tx, c configRecord) error {
	t, found, err := records.Find(tx, kindTemplates, func(t templateRecord) bool { return t.ConfigID == c.ID })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("NetworkConfiguration %s is used by NetworkTemplate %s", c.ID, t.ID)
	}
	return nil
}

func (s *Service) configDoc(urls api.URLs, c configRecord) *cimi.NetworkConfiguration {
	d := &cimi.NetworkConfiguration{
		Common:      commonDoc(urls, "NetworkConfiguration", kindConfigs+"/"+c.ID, c.meta),
		NetworkType: c.NetworkType, MTU: c.MTU, ClassOfService: c.ClassOfService,
		ForwardMode: c.ForwardMode, Subnet: c.Subnet, DHCPRange: c.DHCPRange,
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) createConfig(rq *api.Request) (api.Reply, error) {
	var body cimi.NetworkConfigurationCreate
	if err := rq.Decode(&body, "NetworkConfigurationCreate", "NetworkConfiguration"); err != nil {
		return api.Reply{}, err
	}
	spec, err := checkSpec(netSpec{NetworkType: body.NetworkType, MTU: body.MTU, ClassOfService: body.ClassOfService,
		ForwardMode: body.ForwardMode, Subnet: body.Subnet, DHCPRange: body.DHCPRange})
	if err != nil {
		return api.Reply{}, err
	}
	return s.configKind().Create(rq, func(_ *store.Tx, id string) (configRecord, error) {
		return configRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), netSpec: spec}, nil
	})
}

// lookupConfig resolves a configuration given by reference or by value.
func (s *Service) lookupConfig(tx *store.Tx, urls api.URLs, in *cimi.NetworkConfigInput) (netSpec, string, error) {
	if in == nil {
		return netSpec{}, "", errdefs.Invalidf("networkConfig is required")
	}
	if in.Href != "" {
		c, err := resource.Lookup[configRecord](tx, urls, in.Href, kindConfigs, "NetworkConfiguration")
		if err != nil {
			return netSpec{}, "", err
		}
		return c.netSpec, c.ID, nil
	}
	spec, err := checkSpec(specFromInput(in))
	return spec, "", err
}

func (s *Service) templateKind() resource.Kind[templateRecord, cimi.NetworkTemplate] {
	return resource.Kind[templateRecord, cimi.NetworkTemplate]{Backend: s.backend(),
		Kind: kindTemplates, Type: "NetworkTemplate", MemberKey: "networkTemplates",
		Doc: s.templateDoc, Meta: func(t *templateRecord) *meta { return &t.meta }}
}

func (s *Service) templateRoutes() []api.Route {
	k := s.templateKind()
	return k.Routes(s.createTemplate, k.Delete)
}

func (s *Service) templateDoc(urls api.URLs, t templateRecord) *cimi.NetworkTemplate {
	d := &cimi.NetworkTemplate{Common: commonDoc(urls, "NetworkTemplate", kindTemplates+"/"+t.ID, t.meta)}
	switch {
	case t.ConfigID != "":
		d.NetworkConfig = &cimi.NetworkConfigInput{Href: urls.Abs(kindConfigs + "/" + t.ConfigID)}
	case t.Config != nil:
		c := t.Config
		d.NetworkConfig = &cimi.NetworkConfigInput{NetworkType: c.NetworkType, MTU: c.MTU, ClassOfService: c.ClassOfService,
			ForwardMode: c.ForwardMode, Subnet: c.Subnet, DHCPRange: c.DHCPRange}
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) createTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.NetworkTemplateCreate
	if err := rq.Decode(&body, "NetworkTemplateCreate", "NetworkTemplate"); err != nil {
		return api.Reply{}, err
	}
	in := body.NetworkTemplate
	if in == nil {
		in = &cimi.NetworkTemplateInput{NetworkConfig: body.NetworkConfig, ForwardingGroup: body.ForwardingGroup}
	} else if body.NetworkConfig != nil {
		return api.Reply{}, errdefs.Invalidf("give the template's attributes either inside networkTemplate or at the top level, not both")
	}
	if in.Href != "" {
		return api.Reply{}, errdefs.Invalidf("a NetworkTemplate is created by value; a reference to another template is not accepted")
	}
	if in.ForwardingGroup != nil {
		return api.Reply{}, errdefs.Invalidf("forwardingGroup is not supported: networks on this host are not routed to each other")
	}
	return s.templateKind().Create(rq, func(tx *store.Tx, id string) (templateRecord, error) {
		spec, configID, err := s.lookupConfig(tx, rq.URLs, in.NetworkConfig)
		if err != nil {
			return templateRecord{}, err
		}
		t := templateRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), ConfigID: configID}
		if configID == "" {
			t.Config = &spec
		}
		return t, nil
	})
}

// templateSpec resolves the template of a Network create: a stored one
// (whose configuration a networkConfig in the request replaces) or one
// given by value.
func (s *Service) templateSpec(tx *store.Tx, urls api.URLs, in *cimi.NetworkTemplateInput) (netSpec, error) {
	if in.ForwardingGroup != nil {
		return netSpec{}, errdefs.Invalidf("forwardingGroup is not supported: networks on this host are not routed to each other")
	}
	if in.Href == "" {
		spec, _, err := s.lookupConfig(tx, urls, in.NetworkConfig)
		return spec, err
	}
	t, err := resource.Lookup[templateRecord](tx, urls, in.Href, kindTemplates, "NetworkTemplate")
	if err != nil {
		return netSpec{}, err
	}
	if in.NetworkConfig != nil {
		spec, _, err := s.lookupConfig(tx, urls, in.NetworkConfig)
		return spec, err
	}
	if t.ConfigID != "" {
		c, err := records.Get[configRecord](tx, kindConfigs, t.ConfigID, "NetworkConfiguration")
		if err != nil {
			return netSpec{}, referenced(err)
		}
		return c.netSpec, nil
	}
	if t.Config == nil {
		return netSpec{}, errdefs.Invalidf("NetworkTemplate %s has no networkConfig", t.ID)
	}
	return *t.Config, nil
}
