package system

import (
	"cimid/agent/records"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/compute"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/network"
	"cimid/hypervisor/qemuimg"
	"cimid/store"
)

// importParams are the parameters of an import Job.
type importParams struct {
	SystemID string `json:"systemId"`
	Source   string `json:"source"`
	// TemplateID and DescriptorSHA256 are set for a System made from a
	// SystemTemplate: the package must still be the one it was made from.
	TemplateID       string `json:"templateId,omitempty"`
	DescriptorSHA256 string `json:"descriptorSha256,omitempty"`
	// Named is set when the request named the System; the package's name
	// is used otherwise.
	Named bool `json:"named,omitempty"`
}

// importSystem is the SystemCollection's import operation.
func (s *Service) importSystem(rq *api.Request) (api.Reply, error) {
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
	return s.startImport(rq, importParams{Source: act.Source}, systemRecord{}, creds)
}

// fetchCredentials reads the basic authentication credentials of an http
// source from the action's properties.
func fetchCredentials(props cimi.Properties) (credentials, error) {
	var c credentials
	for k, v := range props {
		switch strings.ToLower(k) {
		case "username", "user":
			c.user = v
		case "password":
			c.password = v
		default:
			return c, errdefs.Invalidf("property %q is not understood by the import (username and password authenticate to an http(s) source)", k)
		}
	}
	return c, nil
}

// startImport checks the source and submits the import Job. A source on
// this host is opened and its disk images identified at once, so that a
// package that is malformed, unsafe or too big for this host is refused
// with 400 and nothing is created; the Job checks everything again.
func (s *Service) startImport(rq *api.Request, p importParams, rec systemRecord, creds credentials) (api.Reply, error) {
	src, err := parseSource(p.Source)
	if err != nil {
		return api.Reply{}, err
	}
	if src.remote() {
		if src.url.User != nil {
			return api.Reply{}, errdefs.Invalidf("give the credentials of an http(s) source as the username and password properties, not in the URL")
		}
	} else {
		if creds != (credentials{}) {
			return api.Reply{}, errdefs.Invalidf("username and password apply to http(s) sources only")
		}
		plan, err := s.precheck(src, p.DescriptorSHA256)
		if err != nil {
			return api.Reply{}, err
		}
		if !p.Named {
			rec.Name, rec.Description = plan.name, plan.description
		}
	}
	id := job.NewID()
	p.SystemID = id
	rec.meta = newMeta(id, rec.Name, rec.Description, rec.Properties, s.now())
	rec.State, rec.Source, rec.TemplateID = stateCreating, src.raw, p.TemplateID
	jobID := job.NewID()
	if creds != (credentials{}) {
		s.mu.Lock()
		s.secrets[jobID] = creds
		s.mu.Unlock()
	}
	j, err := s.submit(job.Record{ID: jobID, Kind: "system.import", Action: cimi.ActionURI("import"), Name: "import System",
		Target: kindSystems, Affected: []string{kindSystems, systemPath(id)}, Locks: []string{systemPath(id)}}, p,
		func(tx *store.Tx) error {
			if p.TemplateID != "" {
				t, err := records.Get[templateRecord](tx, kindTemplates, p.TemplateID, "SystemTemplate")
				if err != nil {
					return err
				}
				if t.State != templateAvailable {
					return errdefs.Conflictf("SystemTemplate %s is %s, not AVAILABLE", t.ID, t.State)
				}
			}
			return records.Put(tx, kindSystems, id, rec)
		})
	if err != nil {
		s.takeSecret(jobID)
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.systemDoc(rq.URLs, rec, systemView{}), Location: systemPath(id), JobID: j.ID}, nil
}

// precheck opens a package on this host and plans its import without
// creating anything.
func (s *Service) precheck(src source, digest string) (*importPlan, error) {
	p, err := openLocal(src.path, src.kind)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := checkDigest(p, digest); err != nil {
		return nil, err
	}
	plan, err := s.planImport(p.Package)
	if err != nil {
		return nil, err
	}
	c := &converter{pkg: p}
	for _, m := range plan.machines {
		for _, d := range m.disks {
			if d.file != nil {
				if err := c.precheck(*d.file); err != nil {
					return nil, fmt.Errorf("%s: %w", m.name, err)
				}
			}
		}
	}
	return plan, nil
}

// checkDigest refuses a package whose descriptor is not the one a
// SystemTemplate was made from.
func checkDigest(p *pkg, want string) error {
	if want == "" {
		return nil
	}
	sum := sha256.Sum256(p.Descriptor)
	if got := hex.EncodeToString(sum[:]); got != want {
		return errdefs.Conflictf("the package's descriptor changed since its SystemTemplate was made (SHA256 %s, was %s); make the template again", got, want)
	}
	return nil
}

func (s *Service) takeSecret(jobID string) credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.secrets[jobID]
	delete(s.secrets, jobID)
	return c
}

// tmpPrefix names the temporary files and directories of an import in the
// pool.
func (s *Service) tmpPrefix(systemID string) string {
	return filepath.Join(s.compute.PoolDir(), "import-"+systemID)
}

// runImport fetches (for a remote source), opens and plans the package,
// writes the planned Machines into the System's record, converts every
// disk into the pool, puts the Machines on their networks, defines their
// domains and, in one transaction, adds the Machines, STOPPED, and ends
// the System's creation. The one undo step removes whatever of this exists.
func (s *Service) runImport(ctx context.Context, x *job.Exec) error {
	var p importParams
	if err := x.Params(&p); err != nil {
		return err
	}
	creds := s.takeSecret(x.Record().ID)
	x.OnUndo("remove what the import made", func(ctx context.Context) error { return s.undoImport(ctx, p.SystemID) })
	rec, err := s.loadSystem(p.SystemID)
	if err != nil {
		return err
	}
	src, err := parseSource(rec.Source)
	if err != nil {
		return err
	}
	prog := &progress{x: x}
	local, kind := src.path, src.kind
	if src.remote() {
		// The download is the first third of the Job, the conversion the
		// rest.
		dir := s.tmpPrefix(p.SystemID) + ".d"
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("download directory: %w", err)
		}
		dl := &progress{x: x, from: 0, to: 33}
		f := &fetcher{client: s.http, creds: creds, dir: dir, progress: dl}
		if local, err = f.fetch(ctx, src); err != nil {
			return err
		}
		prog.from = 33
	}
	pk, err := openLocal(local, kind)
	if err != nil {
		return err
	}
	defer pk.Close()
	if err := checkDigest(pk, p.DescriptorSHA256); err != nil {
		return err
	}
	plan, err := s.planImport(pk.Package)
	if err != nil {
		return err
	}
	ifaces, err := s.mapNetworks(plan)
	if err != nil {
		return err
	}
	if free, err := freeBytes(s.compute.PoolDir()); err == nil && free < plan.storedBytes {
		return errdefs.Conflictf("the pool has %d bytes free; the package's disks take at least %d", free, plan.storedBytes)
	}
	err = s.updateSystemRecord(p.SystemID, func(r *systemRecord) error {
		if !p.Named {
			r.Name, r.Description = plan.name, plan.description
		}
		r.Members = nil
		for _, m := range plan.machines {
			r.Members = append(r.Members, member{MachineID: m.id, OSType: m.osType, OSID: m.osID, Firmware: m.firmware})
		}
		return nil
	})
	if err != nil {
		return err
	}
	machines, err := s.convertDisks(ctx, p.SystemID, pk, plan, prog)
	if err != nil {
		return err
	}
	if err := s.attachImported(machines, ifaces, plan); err != nil {
		return err
	}
	for _, m := range machines {
		if err := s.compute.DefineImported(ctx, m); err != nil {
			return err
		}
	}
	err = s.db.Update(func(tx *store.Tx) error {
		for _, m := range machines {
			if err := s.compute.AddImported(tx, m); err != nil {
				return err
			}
		}
		r, err := records.Get[systemRecord](tx, kindSystems, p.SystemID, "System")
		if err != nil {
			return err
		}
		r.State, r.StatusMessage, r.Updated = "", "", s.now()
		return records.Put(tx, kindSystems, p.SystemID, r)
	})
	if err != nil {
		return err
	}
	for _, m := range machines {
		x.Affect(machinePath(m.ID))
	}
	if err := s.removeTemporary(p.SystemID); err != nil {
		x.Log().Warn("remove the import's temporary files", "err", err)
	}
	x.Commit()
	x.SetMessage(importMessage(plan))
	for _, w := range plan.warnings {
		x.Log().Warn("import", "system", p.SystemID, "warning", w)
	}
	return nil
}

func importMessage(plan *importPlan) string {
	disks := 0
	for _, m := range plan.machines {
		disks += len(m.disks)
	}
	msg := fmt.Sprintf("System imported: %d Machine(s), STOPPED, with %d disk(s)", len(plan.machines), disks)
	if len(plan.warnings) > 0 {
		msg += "; warnings: " + strings.Join(plan.warnings, "; ")
	}
	return msg
}

// mapNetworks maps the NICs of every planned Machine to agent networks.
func (s *Service) mapNetworks(plan *importPlan) ([][]network.InterfaceSpec, error) {
	var nets []networkView
	if err := s.db.View(func(tx *store.Tx) (err error) { nets, err = listNetworks(tx); return err }); err != nil {
		return nil, err
	}
	nm := newNetworkMap(nets)
	out := make([][]network.InterfaceSpec, len(plan.machines))
	for i, m := range plan.machines {
		out[i] = []network.InterfaceSpec{}
		for _, n := range m.nics {
			id, ok, warn := nm.resolve(n.network)
			if warn != "" {
				plan.warnf("%s", warn)
			}
			if ok {
				out[i] = append(out[i], interfaceSpec(id, n.model, n.mac))
			}
		}
	}
	return out, nil
}

// convertDisks converts (or creates blank) every disk of the plan into the
// pool, under the names the Machines' disks will have.
func (s *Service) convertDisks(ctx context.Context, systemID string, pk *pkg, plan *importPlan, prog *progress) ([]compute.ImportedMachine, error) {
	prog.expect(max(plan.storedBytes, 1))
	c := &converter{pkg: pk, progress: prog, warnf: plan.warnf,
		tmp: func(n int) string { return fmt.Sprintf("%s-%d.tmp", s.tmpPrefix(systemID), n) }}
	out := make([]compute.ImportedMachine, 0, len(plan.machines))
	for _, m := range plan.machines {
		im := compute.ImportedMachine{ID: m.id, Name: m.name, Description: m.description, CPU: m.cpu, MemoryKiB: m.memoryKiB}
		for i, d := range m.disks {
			final := s.compute.DiskPath(m.id, i)
			part := final + ".part"
			where := fmt.Sprintf("%s, disk %q", m.name, firstNonEmpty(d.diskID, fmt.Sprint(i)))
			if d.file == nil {
				if err := qemuimg.Create(ctx, part, qemuimg.FormatQCOW2, roundSector(d.capacity)); err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
			} else if err := c.convert(ctx, d, part); err != nil {
				os.Remove(part)
				return nil, errdefs.Wrap(errdefs.ClassOf(err), fmt.Errorf("%s: %w", where, err))
			}
			kib, err := s.fitCapacity(ctx, part, d, plan, where)
			if err != nil {
				return nil, err
			}
			if err := os.Rename(part, final); err != nil {
				return nil, err
			}
			im.DiskCapacityKiB = append(im.DiskCapacityKiB, kib)
		}
		out = append(out, im)
	}
	return out, nil
}

func roundSector(n int64) int64 { return (n + 511) &^ 511 }

// fitCapacity grows a converted image to the capacity its disk declares
// and returns its virtual size in KiB.
func (s *Service) fitCapacity(ctx context.Context, path string, d diskPlan, plan *importPlan, where string) (int64, error) {
	info, err := qemuimg.Info(ctx, path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	size := info.VirtualSize
	switch {
	case d.capacity > size:
		size = roundSector(d.capacity)
		if err := qemuimg.Resize(ctx, path, qemuimg.FormatQCOW2, size); err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
	case d.capacity > 0 && d.capacity < size:
		plan.warnf("%s declares %d bytes but its image holds %d; the image's size is kept", where, d.capacity, size)
	}
	return (size + 1023) / 1024, nil
}

// attachImported records the interfaces of the imported Machines in one
// transaction. When a MAC address the package gives is already taken, the
// interfaces get new ones, with a warning.
func (s *Service) attachImported(machines []compute.ImportedMachine, ifaces [][]network.InterfaceSpec, plan *importPlan) error {
	attach := func() error {
		return s.db.Update(func(tx *store.Tx) error {
			for i, m := range machines {
				if err := s.compute.AttachImported(tx, m, ifaces[i]); err != nil {
					return fmt.Errorf("interfaces of %s: %w", m.Name, err)
				}
			}
			return nil
		})
	}
	err := attach()
	if !errdefs.Is(err, errdefs.Conflict) || !strings.Contains(err.Error(), "macAddress") {
		return err
	}
	for i := range ifaces {
		for j := range ifaces[i] {
			ifaces[i][j].MAC = ""
		}
	}
	plan.warnf("MAC addresses of the package are in use on this host (%v); the interfaces got new ones", err)
	return attach()
}

// undoImport removes what an import made: its Machines (with their
// domains, interfaces and disks), its temporary files, then the System's
// record.
func (s *Service) undoImport(ctx context.Context, systemID string) error {
	rec, err := s.loadSystem(systemID)
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		return err
	}
	for _, m := range rec.Members {
		if err := s.compute.RemoveImported(ctx, m.MachineID); err != nil {
			return fmt.Errorf("remove Machine %s: %w", m.MachineID, err)
		}
	}
	if err := s.removeTemporary(systemID); err != nil {
		return err
	}
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindSystems, systemID) })
}

// removeTemporary removes the temporary files and downloads of an import.
func (s *Service) removeTemporary(systemID string) error {
	matches, err := filepath.Glob(s.tmpPrefix(systemID) + "*")
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupImport ends an import interrupted by a restart or stopped before
// it ran: the same removal as its undo.
func (s *Service) cleanupImport(ctx context.Context, rec job.Record) error {
	var p importParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	s.takeSecret(rec.ID)
	return s.undoImport(ctx, p.SystemID)
}
