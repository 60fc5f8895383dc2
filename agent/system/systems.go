package system

import (
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/compute"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/resource"
	"cimid/store"
)

// systemActions are the operations a System applies to all its Machines.
var systemActions = []string{"start", "stop", "restart"}

// systemView is what a System's document shows of its Machines.
type systemView struct {
	machines []compute.MachineDescription // the members that still exist, in order
}

// viewOf reads the members of a System in tx.
func (s *Service) viewOf(tx *store.Tx, rec systemRecord) (systemView, error) {
	var v systemView
	for _, m := range rec.Members {
		d, err := s.compute.DescribeMachine(tx, m.MachineID)
		if errdefs.Is(err, errdefs.NotFound) {
			continue
		}
		if err != nil {
			return v, err
		}
		v.machines = append(v.machines, d)
	}
	return v, nil
}

// state derives a System's state: its own while it is created, deleted or
// failed, else the state all its Machines share, else MIXED.
func (v systemView) state(rec systemRecord) string {
	if rec.State != "" {
		return rec.State
	}
	if len(v.machines) == 0 {
		return cimi.StateMixed
	}
	first := v.machines[0].State
	for _, m := range v.machines[1:] {
		if m.State != first {
			return cimi.StateMixed
		}
	}
	return first
}

// allStopped tells whether the System has Machines and all are STOPPED.
func (v systemView) allStopped() bool {
	if len(v.machines) == 0 {
		return false
	}
	for _, m := range v.machines {
		if m.State != cimi.StateStopped {
			return false
		}
	}
	return true
}

func (s *Service) systemDoc(urls api.URLs, rec systemRecord, v systemView) *cimi.System {
	path := systemPath(rec.ID)
	d := &cimi.System{
		Common:        commonDoc(urls, "System", path, rec.meta),
		State:         v.state(rec),
		Machines:      cimi.NewRef(urls.Abs(path + "/machines")),
		Volumes:       cimi.NewRef(urls.Abs(path + "/volumes")),
		Networks:      cimi.NewRef(urls.Abs(path + "/networks")),
		StatusMessage: rec.StatusMessage,
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if rec.State == stateCreating || rec.State == stateDeleting {
		return d
	}
	d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	if len(v.machines) > 0 {
		for _, a := range systemActions {
			d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI(a), Href: d.ID + "/" + a})
		}
	}
	if v.allStopped() {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("export"), Href: d.ID + "/export"})
	}
	return d
}

func (s *Service) listSystems(rq *api.Request) (api.Reply, error) {
	var members []any
	err := s.db.View(func(tx *store.Tx) error {
		recs, err := records.List[systemRecord](tx, kindSystems)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			v, err := s.viewOf(tx, rec)
			if err != nil {
				return err
			}
			members = append(members, s.systemDoc(rq.URLs, rec, v))
		}
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	c := collection(rq.URLs, "System", kindSystems, "systems", members,
		cimi.Operation{Rel: cimi.RelAdd, Href: rq.URLs.Abs(kindSystems)},
		cimi.Operation{Rel: cimi.ActionURI("import"), Href: rq.URLs.Abs(kindSystems + "/import")})
	return api.Reply{Body: c}, nil
}

// readSystem loads a System and the view of its members.
func (s *Service) readSystem(id string) (systemRecord, systemView, error) {
	var rec systemRecord
	var v systemView
	err := s.db.View(func(tx *store.Tx) (err error) {
		if rec, err = records.Get[systemRecord](tx, kindSystems, id, "System"); err != nil {
			return err
		}
		v, err = s.viewOf(tx, rec)
		return err
	})
	return rec, v, err
}

func (s *Service) getSystem(rq *api.Request) (api.Reply, error) {
	rec, v, err := s.readSystem(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.systemDoc(rq.URLs, rec, v)}, nil
}

func (s *Service) updateSystem(rq *api.Request) (api.Reply, error) {
	var body cimi.System
	if err := rq.Decode(&body, "System"); err != nil {
		return api.Reply{}, err
	}
	selected, err := resource.UpdateSelection(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(systemPath(id), func(tx *store.Tx) error {
		rec, err := records.Get[systemRecord](tx, kindSystems, id, "System")
		if err != nil {
			return err
		}
		if err := resource.ApplyUpdate(&rec.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindSystems, id, rec)
	})
}

// createSystem makes a System from a SystemTemplate: the template's
// package is imported again, under the name the request gives.
func (s *Service) createSystem(rq *api.Request) (api.Reply, error) {
	var body cimi.SystemCreate
	if err := rq.Decode(&body, "SystemCreate"); err != nil {
		return api.Reply{}, err
	}
	in := body.SystemTemplate
	if in == nil {
		return api.Reply{}, errdefs.Invalidf("systemTemplate is required, by reference {\"href\": ...} or by value with importImage")
	}
	rec := systemRecord{meta: meta{Name: body.Name, Description: body.Description, Properties: body.Properties}}
	p := importParams{Named: strings.TrimSpace(body.Name) != ""}
	switch {
	case in.Href != "":
		id, err := refID(rq.URLs, in.Href, kindTemplates, "SystemTemplate")
		if err != nil {
			return api.Reply{}, err
		}
		var t templateRecord
		err = s.db.View(func(tx *store.Tx) (err error) {
			t, err = records.Get[templateRecord](tx, kindTemplates, id, "SystemTemplate")
			return err
		})
		if errdefs.Is(err, errdefs.NotFound) {
			return api.Reply{}, errdefs.Invalidf("%v", err)
		}
		if err != nil {
			return api.Reply{}, err
		}
		if t.State != templateAvailable {
			return api.Reply{}, errdefs.Conflictf("SystemTemplate %s is %s, not AVAILABLE", t.ID, t.State)
		}
		p.Source, p.TemplateID, p.DescriptorSHA256 = t.ImportImage, t.ID, t.DescriptorSHA256
	case len(in.ComponentDescriptors) > 0:
		return api.Reply{}, errdefs.Invalidf("componentDescriptors by value are not supported: give a SystemTemplate made from an OVF package, or one by value with importImage")
	case in.ImportImage != "":
		p.Source = in.ImportImage
	default:
		return api.Reply{}, errdefs.Invalidf("systemTemplate names neither a template (href) nor a package (importImage)")
	}
	return s.startImport(rq, p, rec, credentials{})
}

func (s *Service) deleteSystem(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := systemPath(id)
	j, err := s.submit(job.Record{Kind: "system.delete", Action: cimi.RelDelete, Name: "delete System", Target: path, Locks: []string{path}},
		systemParams{SystemID: id},
		func(tx *store.Tx) error {
			rec, err := records.Get[systemRecord](tx, kindSystems, id, "System")
			if err != nil {
				return err
			}
			switch rec.State {
			case stateCreating:
				return errdefs.Conflictf("System %s is being imported; stop its import Job to remove it", id)
			case stateDeleting:
				return errdefs.Conflictf("System %s is already being deleted", id)
			}
			rec.State, rec.StatusMessage = stateDeleting, ""
			return records.Put(tx, kindSystems, id, rec)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// systemParams are the parameters of delete and action Jobs.
type systemParams struct {
	SystemID string      `json:"systemId"`
	Action   string      `json:"action,omitempty"`
	Act      cimi.Action `json:"act,omitempty"`
}

// nestedPoll is how often a System Job looks at the Machine Jobs it runs.
const nestedPoll = 200 * time.Millisecond

// waitJobs waits until every Job of ids has ended and returns them,
// reporting the share ended as progress.
func (s *Service) waitJobs(ctx context.Context, x *job.Exec, ids []string) ([]job.Record, error) {
	out := make([]job.Record, len(ids))
	for {
		ended := 0
		for i, id := range ids {
			rec, err := s.jobs.Get(id)
			if err != nil {
				return nil, err
			}
			out[i] = rec
			if rec.Final() {
				ended++
			}
		}
		if len(ids) > 0 {
			x.Progress(99 * ended / len(ids))
		}
		if ended == len(ids) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(nestedPoll):
		}
	}
}

// runDelete deletes every Machine of the System through the Machines' own
// delete Jobs, then the System. It may run again after a restart.
func (s *Service) runDelete(ctx context.Context, x *job.Exec) error {
	var p systemParams
	if err := x.Params(&p); err != nil {
		return err
	}
	rec, err := s.loadSystem(p.SystemID)
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var ids []string
	var names []string
	for _, m := range rec.Members {
		j, err := s.compute.SubmitDelete(m.MachineID)
		switch {
		case errdefs.Is(err, errdefs.NotFound):
			continue
		case errdefs.Is(err, errdefs.Conflict):
			// Already being deleted: wait for the Machine to go.
			if err := s.waitGone(ctx, m.MachineID); err != nil {
				return s.failSystem(p.SystemID, err)
			}
			continue
		case err != nil:
			return s.failSystem(p.SystemID, fmt.Errorf("delete Machine %s: %w", m.MachineID, err))
		}
		x.Affect(machinePath(m.MachineID))
		ids, names = append(ids, j.ID), append(names, m.MachineID)
	}
	recs, err := s.waitJobs(ctx, x, ids)
	if err != nil {
		return err
	}
	var failed []string
	for i, j := range recs {
		if j.State != job.Success {
			failed = append(failed, fmt.Sprintf("Machine %s: %s", names[i], j.StatusMessage))
		}
	}
	if len(failed) > 0 {
		return s.failSystem(p.SystemID, fmt.Errorf("%d of %d Machines could not be deleted: %s", len(failed), len(recs), strings.Join(failed, "; ")))
	}
	if err := s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindSystems, p.SystemID) }); err != nil {
		return err
	}
	x.SetMessage(fmt.Sprintf("System deleted with its %d Machine(s)", len(recs)))
	return nil
}

// waitGone polls until a Machine no longer exists.
func (s *Service) waitGone(ctx context.Context, machineID string) error {
	for {
		var exists bool
		if err := s.db.View(func(tx *store.Tx) error { exists = s.compute.MachineExists(tx, machineID); return nil }); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(nestedPoll):
		}
	}
}

// failSystem records why a delete failed on the System and returns err.
func (s *Service) failSystem(id string, err error) error {
	uerr := s.updateSystemRecord(id, func(r *systemRecord) error {
		r.State, r.StatusMessage = stateError, err.Error()
		return nil
	})
	if uerr != nil {
		s.log.Error("record System error", "system", id, "err", uerr)
	}
	return err
}

// actionHandler serves start, stop and restart: one Job that runs the
// action's Job on every Machine of the System.
func (s *Service) actionHandler(name string) api.HandlerFunc {
	return func(rq *api.Request) (api.Reply, error) {
		act, err := rq.DecodeAction(name)
		if err != nil && !errors.Is(err, cimi.ErrEmptyBody) {
			return api.Reply{}, err
		}
		if (act.StopTimeout != nil || act.ForceOnTimeout != nil) && name == "start" {
			return api.Reply{}, errdefs.Invalidf("stopTimeout and forceOnTimeout apply to stop and restart only")
		}
		id := rq.Vars["id"]
		path := systemPath(id)
		j, err := s.submit(job.Record{Kind: "system." + name, Action: cimi.ActionURI(name), Name: name + " System", Target: path, Locks: []string{path}},
			systemParams{SystemID: id, Action: name, Act: act},
			func(tx *store.Tx) error {
				rec, err := records.Get[systemRecord](tx, kindSystems, id, "System")
				if err != nil {
					return err
				}
				if rec.State == stateCreating || rec.State == stateDeleting {
					return errdefs.Conflictf("cannot %s System %s while it is %s", name, id, rec.State)
				}
				v, err := s.viewOf(tx, rec)
				if err != nil {
					return err
				}
				if len(v.machines) == 0 {
					return errdefs.Conflictf("System %s has no Machines to %s", id, name)
				}
				return nil
			})
		if err != nil {
			return api.Reply{}, err
		}
		return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
	}
}

// actionCheckpoint is what an action Job started: it waits for those Jobs
// again after a restart instead of starting others.
type actionCheckpoint struct {
	Jobs    []string `json:"jobs"`
	Names   []string `json:"names"`
	Skipped []string `json:"skipped,omitempty"`
}

// runAction starts the action's Job on every Machine whose state allows
// it (the others are left as they are) and waits for them all. It fails
// when one of them failed, naming it; the others keep their outcome.
func (s *Service) runAction(ctx context.Context, x *job.Exec) error {
	var p systemParams
	if err := x.Params(&p); err != nil {
		return err
	}
	var cp actionCheckpoint
	found, err := x.Checkpoint(&cp)
	if err != nil {
		return err
	}
	if !found {
		rec, err := s.loadSystem(p.SystemID)
		if err != nil {
			return err
		}
		for _, m := range rec.Members {
			j, err := s.compute.SubmitAction(m.MachineID, p.Action, p.Act)
			switch {
			case errdefs.Is(err, errdefs.NotFound):
				continue
			case errdefs.Is(err, errdefs.Conflict):
				cp.Skipped = append(cp.Skipped, err.Error())
				continue
			case err != nil:
				return fmt.Errorf("%s Machine %s: %w", p.Action, m.MachineID, err)
			}
			x.Affect(machinePath(m.MachineID))
			cp.Jobs, cp.Names = append(cp.Jobs, j.ID), append(cp.Names, m.MachineID)
		}
		if err := x.SetCheckpoint(cp); err != nil {
			return err
		}
	}
	recs, err := s.waitJobs(ctx, x, cp.Jobs)
	if err != nil {
		return err
	}
	var failed []string
	for i, j := range recs {
		if j.State != job.Success {
			failed = append(failed, fmt.Sprintf("Machine %s: %s %s", cp.Names[i], j.State, j.StatusMessage))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d Machines did not %s: %s", len(failed), len(recs), p.Action, strings.Join(failed, "; "))
	}
	msg := fmt.Sprintf("%s done on %d Machine(s)", p.Action, len(recs))
	if len(cp.Skipped) > 0 {
		msg += fmt.Sprintf("; %d left as they were: %s", len(cp.Skipped), strings.Join(cp.Skipped, "; "))
	}
	x.SetMessage(msg)
	return nil
}

// Member collections of a System.
type memberKind int

const (
	memberMachines memberKind = iota
	memberVolumes
	memberNetworks
)

// memberDocs lists the entries of one member collection of a System.
func (s *Service) memberDocs(urls api.URLs, id string, kind memberKind) (string, string, []any, error) {
	rec, v, err := s.readSystem(id)
	if err != nil {
		return "", "", nil, err
	}
	base := systemPath(rec.ID)
	entry := func(typeName, path, name string, created time.Time) cimi.Common {
		return cimi.Common{ResourceURI: cimi.TypeURI(typeName), ID: urls.Abs(path), Name: name, Created: cimi.TimePtr(created), Updated: cimi.TimePtr(created)}
	}
	var out []any
	switch kind {
	case memberMachines:
		for _, m := range v.machines {
			out = append(out, &cimi.SystemMachine{Common: entry("SystemMachine", base+"/machines/"+m.ID, m.Name, rec.Created),
				Machine: cimi.NewRef(urls.Abs(machinePath(m.ID)))})
		}
		return "SystemMachine", "systemMachines", out, nil
	case memberVolumes:
		seen := map[string]bool{}
		for _, m := range v.machines {
			for _, d := range m.Disks {
				if d.VolumeID == "" || seen[d.VolumeID] {
					continue
				}
				seen[d.VolumeID] = true
				out = append(out, &cimi.SystemVolume{Common: entry("SystemVolume", base+"/volumes/"+d.VolumeID, "", rec.Created),
					Volume: cimi.NewRef(urls.Abs("volumes/" + d.VolumeID))})
			}
		}
		return "SystemVolume", "systemVolumes", out, nil
	default:
		var ids []string
		for _, m := range v.machines {
			ifaces, err := s.compute.MachineInterfaces(m.ID)
			if err != nil {
				return "", "", nil, err
			}
			for _, i := range ifaces {
				if !slices.Contains(ids, i.NetworkID) {
					ids = append(ids, i.NetworkID)
				}
			}
		}
		for _, n := range ids {
			out = append(out, &cimi.SystemNetwork{Common: entry("SystemNetwork", base+"/networks/"+n, "", rec.Created),
				Network: cimi.NewRef(urls.Abs("networks/" + n))})
		}
		return "SystemNetwork", "systemNetworks", out, nil
	}
}

var memberPaths = map[memberKind]string{memberMachines: "machines", memberVolumes: "volumes", memberNetworks: "networks"}

func (s *Service) listMembers(kind memberKind) api.HandlerFunc {
	return func(rq *api.Request) (api.Reply, error) {
		id := rq.Vars["id"]
		typeName, key, docs, err := s.memberDocs(rq.URLs, id, kind)
		if err != nil {
			return api.Reply{}, err
		}
		return api.Reply{Body: collection(rq.URLs, typeName, systemPath(id)+"/"+memberPaths[kind], key, docs)}, nil
	}
}

func (s *Service) getMember(kind memberKind) api.HandlerFunc {
	return func(rq *api.Request) (api.Reply, error) {
		id, want := rq.Vars["id"], rq.Vars["member"]
		_, _, docs, err := s.memberDocs(rq.URLs, id, kind)
		if err != nil {
			return api.Reply{}, err
		}
		path := rq.URLs.Abs(systemPath(id) + "/" + memberPaths[kind] + "/" + want)
		for _, d := range docs {
			var got string
			switch e := d.(type) {
			case *cimi.SystemMachine:
				got = e.ID
			case *cimi.SystemVolume:
				got = e.ID
			case *cimi.SystemNetwork:
				got = e.ID
			}
			if got == path {
				return api.Reply{Body: d}, nil
			}
		}
		return api.Reply{}, errdefs.NotFoundf("System %s has no %s %s", id, strings.TrimSuffix(memberPaths[kind], "s"), want)
	}
}
