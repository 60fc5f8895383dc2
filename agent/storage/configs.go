package storage

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

// providerConfigs are the volume sizes every host offers out of the box.
var providerConfigs = []configRecord{
	{meta: meta{ID: "small", Name: "small", Description: "1 GiB qcow2 volume, unformatted"},
		configSpec: configSpec{CapacityKiB: 1 << 20, DiskFormat: diskQCOW2}},
	{meta: meta{ID: "medium", Name: "medium", Description: "10 GiB qcow2 volume, unformatted"},
		configSpec: configSpec{CapacityKiB: 10 << 20, DiskFormat: diskQCOW2}},
	{meta: meta{ID: "large", Name: "large", Description: "100 GiB qcow2 volume, unformatted"},
		configSpec: configSpec{CapacityKiB: 100 << 20, DiskFormat: diskQCOW2}},
}

// Bounds of a Volume's capacity, in KiB.
const (
	minCapacityKiB          = 1 << 10  // 1 MiB
	minFormattedCapacityKiB = 16 << 10 // room for a file system and its journal
	maxCapacityKiB          = 16 << 30 // 16 TiB
)

func (s *Service) seedConfigs() error {
	now := s.now()
	return s.db.Update(func(tx *store.Tx) error {
		for _, c := range providerConfigs {
			if _, err := tx.Get(kindConfigs, c.ID); err == nil {
				continue
			}
			c.Created, c.Updated, c.Provider, c.Type = now, now, true, cimi.VolumeTypeBlock
			if err := records.Put(tx, kindConfigs, c.ID, c); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Service) configRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/volumeConfigs", Handler: s.listConfigs},
		{Method: http.MethodPost, Path: "/volumeConfigs", Handler: s.createConfig},
		{Method: http.MethodGet, Path: "/volumeConfigs/{id}", Handler: s.getConfig},
		{Method: http.MethodPut, Path: "/volumeConfigs/{id}", Handler: s.updateConfig},
		{Method: http.MethodDelete, Path: "/volumeConfigs/{id}", Handler: s.deleteConfig},
	}
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

func (s *Service) listConfigs(rq *api.Request) (api.Reply, error) {
	var recs []configRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		recs, err = records.List[configRecord](tx, kindConfigs)
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, c := range recs {
		members[i] = s.configDoc(rq.URLs, c)
	}
	return api.Reply{Body: collection(rq.URLs, "VolumeConfiguration", kindConfigs, "volumeConfigurations", members, true)}, nil
}

func (s *Service) getConfig(rq *api.Request) (api.Reply, error) {
	c, err := view[configRecord](s.db, kindConfigs, rq.Vars["id"], "VolumeConfiguration")
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.configDoc(rq.URLs, c)}, nil
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
	rec := configRecord{meta: newMeta(job.NewID(), body.Name, body.Description, body.Properties, s.now()), configSpec: spec}
	path := kindConfigs + "/" + rec.ID
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create VolumeConfiguration", Target: kindConfigs, Affected: []string{kindConfigs, path}},
		func(tx *store.Tx) error { return records.Put(tx, kindConfigs, rec.ID, rec) })
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: s.configDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

func (s *Service) updateConfig(rq *api.Request) (api.Reply, error) {
	var body cimi.VolumeConfiguration
	if err := rq.Decode(&body, "VolumeConfiguration"); err != nil {
		return api.Reply{}, err
	}
	selected, err := selectedAttrs(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(kindConfigs+"/"+id, func(tx *store.Tx) error {
		c, err := records.Get[configRecord](tx, kindConfigs, id, "VolumeConfiguration")
		if err != nil {
			return err
		}
		if err := applyUpdate(&c.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindConfigs, id, c)
	})
}

func (s *Service) deleteConfig(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := kindConfigs + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete VolumeConfiguration", Target: path}, func(tx *store.Tx) error {
		c, err := records.Get[configRecord](tx, kindConfigs, id, "VolumeConfiguration")
		if err != nil {
			return err
		}
		if c.Provider {
			return errdefs.Conflictf("VolumeConfiguration %s is provider-defined and cannot be deleted", id)
		}
		templates, err := records.List[templateRecord](tx, kindTemplates)
		if err != nil {
			return err
		}
		for _, t := range templates {
			if t.ConfigID == id {
				return errdefs.Conflictf("VolumeConfiguration %s is used by VolumeTemplate %s", id, t.ID)
			}
		}
		return tx.Delete(kindConfigs, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
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
		id, err := refID(urls, in.Href, kindConfigs, "VolumeConfiguration")
		if err != nil {
			return configSpec{}, "", err
		}
		c, err := records.Get[configRecord](tx, kindConfigs, id, "VolumeConfiguration")
		if err != nil {
			return configSpec{}, "", referenced(err)
		}
		return c.configSpec, id, nil
	}
	spec := specFromInput(in)
	if err := s.validateSpec(&spec, true); err != nil {
		return configSpec{}, "", err
	}
	return spec, "", nil
}
