package storage

import (
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// providerConfigs are the volume sizes every host offers out of the box.
var providerConfigs = []configRecord{
	{meta: meta{ID: "small", Name: "small", Description: "1 GiB qcow2 volume, unformatted"}, Provider: true,
		configSpec: configSpec{Type: cimi.VolumeTypeBlock, CapacityKiB: 1 << 20, DiskFormat: diskQCOW2}},
	{meta: meta{ID: "medium", Name: "medium", Description: "10 GiB qcow2 volume, unformatted"}, Provider: true,
		configSpec: configSpec{Type: cimi.VolumeTypeBlock, CapacityKiB: 10 << 20, DiskFormat: diskQCOW2}},
	{meta: meta{ID: "large", Name: "large", Description: "100 GiB qcow2 volume, unformatted"}, Provider: true,
		configSpec: configSpec{Type: cimi.VolumeTypeBlock, CapacityKiB: 100 << 20, DiskFormat: diskQCOW2}},
}

// Bounds of a Volume's capacity, in KiB.
const (
	minCapacityKiB          = 1 << 10  // 1 MiB
	minFormattedCapacityKiB = 16 << 10 // room for a file system and its journal
	maxCapacityKiB          = 16 << 30 // 16 TiB
)

// seedConfigs writes the provider's configurations that the store does
// not hold yet.
func (s *Service) seedConfigs() error { return s.configKind().Seed(providerConfigs) }

func (s *Service) configKind() resource.Kind[configRecord, cimi.VolumeConfiguration] {
	return resource.Kind[configRecord, cimi.VolumeConfiguration]{Backend: s.backend(),
		Kind: kindConfigs, Type: "VolumeConfiguration", MemberKey: "volumeConfigurations",
		Doc: s.configDoc, Meta: func(c *configRecord) *meta { return &c.meta }, InUse: configInUse}
}

func (s *Service) configRoutes() []api.Route {
	k := s.configKind()
	return k.Routes(s.createConfig, k.Delete)
}

// configInUse refuses to delete a provider-defined configuration or one
// that templates name.
func configInUse(tx *store.Tx, c configRecord) error {
	if c.Provider {
		return errdefs.Conflictf("VolumeConfiguration %s is provider-defined and cannot be deleted", c.ID)
	}
	t, found, err := records.Find(tx, kindTemplates, func(t templateRecord) bool { return t.ConfigID == c.ID })
	if err != nil {
		return err
	}
	if found {
		return errdefs.Conflictf("VolumeConfiguration %s is used by VolumeTemplate %s", c.ID, t.ID)
	}
	return nil
}

func (s *Service) configDoc(urls api.URLs, c configRecord) *cimi.VolumeConfiguration {
	d := &cimi.VolumeConfiguration{
		Common:     commonDoc(urls, "VolumeConfiguration", kindConfigs+"/"+c.ID, c.meta),
		Type:       c.Type,
		Format:     c.Format,
		Capacity:   c.CapacityKiB,
		DiskFormat: c.DiskFormat,
		Shareable:  boolPtr(c.Shareable),
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if !c.Provider {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

// validateSpec checks what a configuration asks for against this host and
// fills in the defaults. A capacity of 0 is allowed when allowNoCapacity
// (a Volume made from an image takes the image's size).
func (s *Service) validateSpec(c *configSpec, allowNoCapacity bool) error {
	switch t := strings.TrimSpace(c.Type); t {
	case "", cimi.VolumeTypeBlock:
		c.Type = cimi.VolumeTypeBlock
	default:
		return errdefs.Invalidf("type %q is not offered: this host makes volumes of type %s", t, cimi.VolumeTypeBlock)
	}
	switch f := strings.ToLower(strings.TrimSpace(c.DiskFormat)); {
	case f == "" && c.Shareable:
		c.DiskFormat = diskRaw
	case f == "" || f == diskQCOW2:
		c.DiskFormat = diskQCOW2
	case f == diskRaw:
		c.DiskFormat = diskRaw
	default:
		return errdefs.Invalidf("diskFormat %q is not supported: use qcow2 (the default) or raw", c.DiskFormat)
	}
	if c.Shareable && c.DiskFormat != diskRaw {
		return errdefs.Invalidf("a shareable volume must be raw, not %s: guests on several Machines writing one %s image would corrupt it (leave diskFormat out, or give raw)", c.DiskFormat, c.DiskFormat)
	}
	c.Format = strings.ToLower(strings.TrimSpace(c.Format))
	if c.Format != "" {
		if _, ok := s.mkfs[c.Format]; !ok {
			return errdefs.Invalidf("format %q is not a file system this host can make (it makes: %s); leave format empty for an unformatted volume",
				c.Format, strings.Join(s.mkfs.names(), ", "))
		}
	}
	switch {
	case c.CapacityKiB == 0 && allowNoCapacity:
	case c.CapacityKiB <= 0:
		return errdefs.Invalidf("capacity must be a positive number of KiB, not %d", c.CapacityKiB)
	case c.CapacityKiB < minCapacityKiB:
		return errdefs.Invalidf("capacity %d KiB is below the minimum of %d KiB (1 MiB)", c.CapacityKiB, minCapacityKiB)
	case c.CapacityKiB > maxCapacityKiB:
		return errdefs.Invalidf("capacity %d KiB exceeds the maximum of %d KiB (16 TiB)", c.CapacityKiB, maxCapacityKiB)
	case c.Format != "" && c.CapacityKiB < minFormattedCapacityKiB:
		return errdefs.Invalidf("capacity %d KiB is too small for a %s file system (at least %d KiB)", c.CapacityKiB, c.Format, minFormattedCapacityKiB)
	}
	return nil
}

func specFromInput(in *cimi.VolumeConfigInput) configSpec {
	return configSpec{Type: in.Type, Format: in.Format, CapacityKiB: in.Capacity, DiskFormat: in.DiskFormat,
		Shareable: in.Shareable != nil && *in.Shareable}
}

func (s *Service) createConfig(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeConfigurationCreate
	if err := rq.Decode(&body, "VolumeConfigurationCreate", "VolumeConfiguration"); err != nil {
		return api.Reply{}, err
	}
	spec := configSpec{Type: body.Type, Format: body.Format, CapacityKiB: body.Capacity, DiskFormat: body.DiskFormat,
		Shareable: body.Shareable != nil && *body.Shareable}
	if err := s.validateSpec(&spec, false); err != nil {
		return api.Reply{}, err
	}
	return s.configKind().Create(rq, func(_ *store.Tx, id string) (configRecord, error) {
		return configRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()), configSpec: spec}, nil
	})
}

// lookupConfig resolves a configuration given by reference or by value.
func (s *Service) lookupConfig(tx *store.Tx, urls api.URLs, in *cimi.VolumeConfigInput) (configSpec, string, error) {
	if in == nil {
		return configSpec{}, "", errdefs.Invalidf("volumeConfig is required, by reference {\"href\": ...} or by value {\"capacity\": KiB, ...}")
	}
	if in.Href != "" {
		if in.Capacity != 0 || in.Format != "" || in.DiskFormat != "" || in.Type != "" || in.Shareable != nil {
			return configSpec{}, "", errdefs.Invalidf("volumeConfig is given by reference: it cannot carry capacity, format, type, diskFormat or shareable as well")
		}
		c, err := resource.Lookup[configRecord](tx, urls, in.Href, kindConfigs, "VolumeConfiguration")
		if err != nil {
			return configSpec{}, "", err
		}
		return c.configSpec, c.ID, nil
	}
	spec := specFromInput(in)
	if err := s.validateSpec(&spec, true); err != nil {
		return configSpec{}, "", err
	}
	return spec, "", nil
}
