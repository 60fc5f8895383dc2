package system

import (
	"archive/tar"
	"cimid/agent/records"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/resource"
	"cimid/ovf"
	"cimid/store"
)

// A SystemTemplate is made from an OVF package: its descriptor is read and
// checked, the package's VirtualSystems become its component descriptors,
// and its source becomes importImage. No disk is copied: a System made
// from the template imports the package again, after checking that its
// descriptor is still the one the template was made from.

func (s *Service) templateDoc(urls api.URLs, t templateRecord) *cimi.SystemTemplate {
	path := templatePath(t.ID)
	d := &cimi.SystemTemplate{Common: commonDoc(urls, "SystemTemplate", path, t.meta), ImportImage: t.ImportImage}
	for _, c := range t.Components {
		cfg := &cimi.MachineConfigInput{CPU: c.CPU, Memory: c.MemoryKiB}
		for _, kib := range c.DiskKiB {
			cfg.Disks = append(cfg.Disks, cimi.DiskConfig{Capacity: kib})
		}
		d.ComponentDescriptors = append(d.ComponentDescriptors, cimi.ComponentDescriptor{
			Name: c.Name, Description: c.Description, Type: cimi.TypeURI("Machine"), Quantity: 1,
			MachineTemplate: &cimi.MachineTemplateInput{InputCommon: cimi.InputCommon{Name: c.Name}, MachineConfig: cfg, InitialState: cimi.StateStopped},
		})
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if t.State != templateCreating {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
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
	c := collection(rq.URLs, "SystemTemplate", kindTemplates, "systemTemplates", members,
		cimi.Operation{Rel: cimi.RelAdd, Href: rq.URLs.Abs(kindTemplates)},
		cimi.Operation{Rel: cimi.ActionURI("import"), Href: rq.URLs.Abs(kindTemplates + "/import")})
	return api.Reply{Body: c}, nil
}

func (s *Service) loadTemplate(id string) (templateRecord, error) {
	var t templateRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		t, err = records.Get[templateRecord](tx, kindTemplates, id, "SystemTemplate")
		return err
	})
	return t, err
}

func (s *Service) getTemplate(rq *api.Request) (api.Reply, error) {
	t, err := s.loadTemplate(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.templateDoc(rq.URLs, t)}, nil
}

func (s *Service) updateTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.SystemTemplate
	if err := rq.Decode(&body, "SystemTemplate"); err != nil {
		return api.Reply{}, err
	}
	selected, err := resource.UpdateSelection(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(templatePath(id), func(tx *store.Tx) error {
		t, err := records.Get[templateRecord](tx, kindTemplates, id, "SystemTemplate")
		if err != nil {
			return err
		}
		if body.ImportImage != "" && body.ImportImage != t.ImportImage {
			return errdefs.Invalidf("importImage cannot be changed; make a new SystemTemplate from the other package")
		}
		if err := resource.ApplyUpdate(&t.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindTemplates, id, t)
	})
}

func (s *Service) deleteTemplate(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := templatePath(id)
	rec, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete SystemTemplate", Target: path},
		func(tx *store.Tx) error {
			t, err := records.Get[templateRecord](tx, kindTemplates, id, "SystemTemplate")
			if err != nil {
				return err
			}
			if t.State == templateCreating {
				return errdefs.Conflictf("SystemTemplate %s is being made; stop its Job to remove it", id)
			}
			return tx.Delete(kindTemplates, id)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: rec.ID}, nil
}

// createTemplate makes a SystemTemplate from the package importImage names.
func (s *Service) createTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.SystemTemplateCreate
	if err := rq.Decode(&body, "SystemTemplateCreate", "SystemTemplate"); err != nil {
		return api.Reply{}, err
	}
	if len(body.ComponentDescriptors) > 0 {
		return api.Reply{}, errdefs.Invalidf("componentDescriptors by value are not supported: a SystemTemplate is made from an OVF package named by importImage")
	}
	if strings.TrimSpace(body.ImportImage) == "" {
		return api.Reply{}, errdefs.Invalidf("importImage is required: the file:// path on this host or http(s):// URL of an OVF package")
	}
	return s.startTemplateImport(rq, body.ImportImage, meta{Name: body.Name, Description: body.Description, Properties: body.Properties}, credentials{})
}

// importTemplate is the SystemTemplateCollection's import operation.
func (s *Service) importTemplate(rq *api.Request) (api.Reply, error) {
	act, err := rq.DecodeAction("import")
	if errors.Is(err, cimi.ErrEmptyBody) {
		return api.Reply{}, errdefs.Invalidf("the import needs an Action body with source, a file:// path on this host or an http(s):// URL")
	}
	if err != nil {
		return api.Reply{}, err
	}
	if act.Format != "" && act.Format != cimi.MediaTypeOVF {
		return api.Reply{}, errdefs.Invalidf("format %q cannot be imported; only %s packages are", act.Format, cimi.MediaTypeOVF)
	}
	creds, err := fetchCredentials(act.Properties)
	if err != nil {
		return api.Reply{}, err
	}
	return s.startTemplateImport(rq, act.Source, meta{}, creds)
}

// templateParams are the parameters of a template import Job.
type templateParams struct {
	TemplateID string `json:"templateId"`
	Named      bool   `json:"named,omitempty"`
}

func (s *Service) startTemplateImport(rq *api.Request, raw string, m meta, creds credentials) (api.Reply, error) {
	src, err := parseSource(raw)
	if err != nil {
		return api.Reply{}, err
	}
	if src.remote() && src.url.User != nil {
		return api.Reply{}, errdefs.Invalidf("give the credentials of an http(s) source as the username and password properties, not in the URL")
	}
	if !src.remote() && creds != (credentials{}) {
		return api.Reply{}, errdefs.Invalidf("username and password apply to http(s) sources only")
	}
	id := job.NewID()
	t := templateRecord{meta: newMeta(id, m.Name, m.Description, m.Properties, s.now()), State: templateCreating, ImportImage: src.raw}
	p := templateParams{TemplateID: id, Named: t.Name != ""}
	if !src.remote() {
		if err := s.readTemplateLocal(src, &t); err != nil {
			return api.Reply{}, err
		}
	}
	jobID := job.NewID()
	if creds != (credentials{}) {
		s.mu.Lock()
		s.secrets[jobID] = creds
		s.mu.Unlock()
	}
	j, err := s.submit(job.Record{ID: jobID, Kind: "systemTemplate.import", Action: cimi.ActionURI("import"), Name: "import SystemTemplate",
		Target: kindTemplates, Affected: []string{kindTemplates, templatePath(id)}, Locks: []string{templatePath(id)}}, p,
		func(tx *store.Tx) error { return records.Put(tx, kindTemplates, id, t) })
	if err != nil {
		s.takeSecret(jobID)
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.templateDoc(rq.URLs, t), Location: templatePath(id), JobID: j.ID}, nil
}

// readTemplateLocal opens a package on this host, checks it as an import
// would (disk images included) and fills the template from it.
func (s *Service) readTemplateLocal(src source, t *templateRecord) error {
	plan, err := s.precheck(src, "")
	if err != nil {
		return err
	}
	p, err := openLocal(src.path, src.kind)
	if err != nil {
		return err
	}
	defer p.Close()
	fillTemplate(t, p.Descriptor, plan)
	if t.Name == "" {
		t.Name = plan.name
	}
	return nil
}

func fillTemplate(t *templateRecord, descriptor []byte, plan *importPlan) {
	sum := sha256.Sum256(descriptor)
	t.DescriptorSHA256 = hex.EncodeToString(sum[:])
	t.Components, t.Warnings = nil, plan.warnings
	for _, m := range plan.machines {
		c := component{Name: m.name, Description: m.description, CPU: m.cpu, MemoryKiB: m.memoryKiB}
		for _, d := range m.disks {
			c.DiskKiB = append(c.DiskKiB, (d.capacity+1023)/1024)
		}
		for _, n := range m.nics {
			c.Networks = append(c.Networks, n.network)
		}
		t.Components = append(t.Components, c)
	}
}

// runTemplateImport reads the descriptor of a remote package (for a local
// one the request did it) and makes the template AVAILABLE.
func (s *Service) runTemplateImport(ctx context.Context, x *job.Exec) error {
	var p templateParams
	if err := x.Params(&p); err != nil {
		return err
	}
	creds := s.takeSecret(x.Record().ID)
	x.OnUndo("remove the SystemTemplate", func(context.Context) error {
		return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindTemplates, p.TemplateID) })
	})
	t, err := s.loadTemplate(p.TemplateID)
	if err != nil {
		return err
	}
	src, err := parseSource(t.ImportImage)
	if err != nil {
		return err
	}
	if src.remote() {
		descriptor, err := s.fetchDescriptor(ctx, src, creds)
		if err != nil {
			return err
		}
		env, err := ovf.Parse(descriptor, ovf.Options{})
		if err != nil {
			return packageError(fmt.Errorf("descriptor: %w", err))
		}
		plan, err := s.planImport(&ovf.Package{Envelope: env, Descriptor: descriptor, Warnings: env.Warnings})
		if err != nil {
			return err
		}
		fillTemplate(&t, descriptor, plan)
		if !p.Named {
			t.Name = plan.name
		}
	}
	err = s.db.Update(func(tx *store.Tx) error {
		cur, err := records.Get[templateRecord](tx, kindTemplates, p.TemplateID, "SystemTemplate")
		if err != nil {
			return err
		}
		t.meta.Properties, t.meta.Description = cur.Properties, firstNonEmpty(cur.Description, t.Description)
		t.State, t.Updated = templateAvailable, s.now()
		return records.Put(tx, kindTemplates, p.TemplateID, t)
	})
	if err != nil {
		return err
	}
	x.Commit()
	msg := fmt.Sprintf("SystemTemplate made from a package of %d VirtualSystem(s)", len(t.Components))
	if len(t.Warnings) > 0 {
		msg += "; warnings: " + strings.Join(t.Warnings, "; ")
	}
	x.SetMessage(msg)
	return nil
}

// fetchDescriptor reads only the descriptor of a remote package: the
// .ovf itself, or the first member of an OVA, read as the archive streams
// in.
func (s *Service) fetchDescriptor(ctx context.Context, src source, creds credentials) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.url.String(), nil)
	if err != nil {
		return nil, err
	}
	if creds != (credentials{}) {
		req.SetBasicAuth(creds.user, creds.password)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redacted(src.url), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", redacted(src.url), resp.Status)
	}
	limit := ovf.DefaultLimits.MaxDescriptorBytes
	body := io.Reader(resp.Body)
	if src.kind == kindOVA {
		tr := tar.NewReader(resp.Body)
		hdr, err := tr.Next()
		if err != nil {
			return nil, errdefs.Invalidf("%s is not a tar archive: %v", redacted(src.url), err)
		}
		if !strings.EqualFold(path.Ext(hdr.Name), ".ovf") {
			return nil, errdefs.Invalidf("the first member of %s is %q, not the .ovf descriptor an OVA starts with", redacted(src.url), hdr.Name)
		}
		if hdr.Size > limit {
			return nil, errdefs.Invalidf("the descriptor of %s is larger than %d bytes", redacted(src.url), limit)
		}
		body = tr
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redacted(src.url), err)
	}
	if int64(len(b)) > limit {
		return nil, errdefs.Invalidf("the descriptor of %s is larger than %d bytes", redacted(src.url), limit)
	}
	return b, nil
}

// cleanupTemplateImport removes a template whose making was interrupted.
func (s *Service) cleanupTemplateImport(_ context.Context, rec job.Record) error {
	var p templateParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	s.takeSecret(rec.ID)
	return s.db.Update(func(tx *store.Tx) error {
		t, err := records.Get[templateRecord](tx, kindTemplates, p.TemplateID, "SystemTemplate")
		if errdefs.Is(err, errdefs.NotFound) || (err == nil && t.State != templateCreating) {
			return nil
		}
		if err != nil {
			return err
		}
		return tx.Delete(kindTemplates, p.TemplateID)
	})
}
