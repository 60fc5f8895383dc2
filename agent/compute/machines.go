package compute

import (
	"cimid/agent/records"
	"cimid/agent/resource"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

// defaultInitialState is the state a Machine is created in when its
// template names none (advertised as DefaultInitialState).
const defaultInitialState = cimi.StateStarted

// maxStopTimeout bounds the graceful-stop deadline a request may ask for.
const maxStopTimeout = 24 * time.Hour

func (s *Service) machineRoutes() []api.Route {
	routes := []api.Route{
		{Method: http.MethodGet, Path: "/machines", Handler: s.listMachines},
		{Method: http.MethodPost, Path: "/machines", Handler: s.createMachine},
		{Method: http.MethodGet, Path: "/machines/{id}", Handler: s.getMachine},
		{Method: http.MethodPut, Path: "/machines/{id}", Handler: s.updateMachine},
		{Method: http.MethodDelete, Path: "/machines/{id}", Handler: s.deleteMachine},
		{Method: http.MethodGet, Path: "/machines/{id}/disks", Handler: s.listDisks},
		{Method: http.MethodGet, Path: "/machines/{id}/disks/{disk}", Handler: s.getDisk},
	}
	for _, a := range machineActions {
		routes = append(routes, api.Route{Method: http.MethodPost, Path: "/machines/{id}/" + a.name, Handler: s.actionHandler(a)})
	}
	return append(routes, s.storageRoutes()...)
}

// machineAction describes one CIMI action on a Machine.
type machineAction struct {
	name       string
	from       []string // states it is valid in
	transition string   // state shown while its Job runs
	kind       string   // Job kind
}

var machineActions = []machineAction{
	{name: "start", from: []string{cimi.StateStopped, cimi.StatePaused, cimi.StateSuspended, cimi.StateError}, transition: cimi.StateStarting, kind: "machine.start"},
	{name: "stop", from: []string{cimi.StateStarted, cimi.StatePaused, cimi.StateStopping, cimi.StateError}, transition: cimi.StateStopping, kind: "machine.stop"},
	{name: "restart", from: []string{cimi.StateStarted, cimi.StateStopped}, transition: cimi.StateStopping, kind: "machine.restart"},
	{name: "pause", from: []string{cimi.StateStarted}, transition: cimi.StatePausing, kind: "machine.pause"},
	{name: "suspend", from: []string{cimi.StateStarted, cimi.StatePaused}, transition: cimi.StateSuspending, kind: "machine.suspend"},
}

func (a machineAction) validIn(state string) bool {
	for _, f := range a.from {
		if f == state {
			return true
		}
	}
	return false
}

func machinePath(id string) string { return kindMachines + "/" + id }

func (s *Service) machineDoc(urls api.URLs, m machineRecord) *cimi.Machine {
	path := machinePath(m.ID)
	d := &cimi.Machine{
		Common:        commonDoc(urls, "Machine", path, m.meta),
		State:         m.State,
		CPU:           m.CPU,
		Memory:        m.MemoryKiB,
		CPUArch:       m.CPUArch,
		StatusMessage: m.StatusMessage,
		Disks:         cimi.NewRef(urls.Abs(path + "/disks")),
	}
	if s.cfg.Networks != nil {
		d.NetworkInterfaces = cimi.NewRef(urls.Abs(path + "/networkInterfaces"))
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if m.State != cimi.StateDeleting {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	for _, a := range machineActions {
		if a.validIn(m.State) {
			d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI(a.name), Href: d.ID + "/" + a.name})
		}
	}
	s.addStorageDoc(urls, m, d)
	if m.State == cimi.StateStopped {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.ActionURI("export"), Href: d.ID + "/export"})
	}
	return d
}

func (s *Service) loadMachine(id string) (machineRecord, error) {
	var m machineRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		m, err = records.Get[machineRecord](tx, kindMachines, id, "Machine")
		return err
	})
	return m, err
}

// listMachines answers from the JSON documents the cache keeps: only
// Machines whose records changed are rendered again. XML, $select and
// $expand need the documents themselves.
func (s *Service) listMachines(rq *api.Request) (api.Reply, error) {
	var recs []machineRecord
	var docs [][]byte
	err := s.db.View(func(tx *store.Tx) (err error) {
		recs, docs, err = s.listed.listJSON(tx, kindMachines, rq.URLs.Base(), func(m machineRecord) ([]byte, error) {
			return cimi.EncodeJSON(s.machineDoc(rq.URLs, m))
		})
		return err
	})
	if err != nil {
		return api.Reply{}, err
	}
	coll := collection(rq.URLs, "Machine", kindMachines, "machines", nil, true)
	coll.Count, coll.MemberJSON = len(docs), docs
	if !rq.JSONMembers() {
		coll.Members = make([]any, len(recs))
		for i, m := range recs {
			coll.Members[i] = s.machineDoc(rq.URLs, m)
		}
	}
	return api.Reply{Body: coll}, nil
}

func (s *Service) getMachine(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMachine(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.machineDoc(rq.URLs, m)}, nil
}

func (s *Service) updateMachine(rq *api.Request) (api.Reply, error) {
	var body cimi.Machine
	if err := rq.Decode(&body, "Machine"); err != nil {
		return api.Reply{}, err
	}
	selected, err := resource.UpdateSelection(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	return s.syncUpdate(rq, machinePath(id), func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		if err := resource.ApplyUpdate(&m.meta, body.Common, selected, s.now()); err != nil {
			return err
		}
		return records.Put(tx, kindMachines, id, m)
	})
}

func (s *Service) diskDoc(urls api.URLs, m machineRecord, d machineDisk) *cimi.MachineDisk {
	path := machinePath(m.ID) + "/disks/" + d.ID
	return &cimi.MachineDisk{
		Common:          cimi.Common{ResourceURI: cimi.TypeURI("MachineDisk"), ID: urls.Abs(path), Name: d.Target, Created: cimi.TimePtr(m.Created), Updated: cimi.TimePtr(m.Created)},
		Capacity:        d.CapacityKiB,
		InitialLocation: "/dev/" + d.Target,
	}
}

func (s *Service) listDisks(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMachine(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(m.Disks))
	for i, d := range m.Disks {
		members[i] = s.diskDoc(rq.URLs, m, d)
	}
	return api.Reply{Body: collection(rq.URLs, "MachineDisk", machinePath(m.ID)+"/disks", "disks", members, false)}, nil
}

func (s *Service) getDisk(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMachine(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	for _, d := range m.Disks {
		if d.ID == rq.Vars["disk"] {
			return api.Reply{Body: s.diskDoc(rq.URLs, m, d)}, nil
		}
	}
	return api.Reply{}, errdefs.NotFoundf("Machine %s has no disk %s", m.ID, rq.Vars["disk"])
}

// machineParams are the parameters of every machine Job.
type machineParams struct {
	MachineID string `json:"machineId"`
	Force     bool   `json:"force,omitempty"`
}

func (s *Service) createMachine(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineCreate
	if err := rq.Decode(&body, "MachineCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.MachineTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("machineTemplate is required, by reference {\"href\": ...} or by value")
	}
	id := job.NewID()
	path := machinePath(id)
	var rec machineRecord
	j, err := s.submit(job.Record{Kind: "machine.create", Action: cimi.RelAdd, Name: "create Machine",
		Target: kindMachines, Affected: []string{kindMachines, path}, Locks: []string{path}},
		machineParams{MachineID: id},
		func(tx *store.Tx) error {
			t, err := s.templateFor(tx, rq.URLs, body.MachineTemplate)
			if err != nil {
				return err
			}
			rec, err = s.newMachine(tx, id, body, t)
			if err != nil {
				return err
			}
			if err := s.attachNetworks(tx, rec, t); err != nil {
				return err
			}
			return records.Put(tx, kindMachines, id, rec)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.machineDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

// templateFor resolves the template of a create: a stored one with
// overrides, or one given by value.
func (s *Service) templateFor(tx *store.Tx, urls api.URLs, in *cimi.MachineTemplateInput) (templateRecord, error) {
	if in.Href == "" {
		return s.resolveTemplate(tx, urls, in)
	}
	id, err := refID(urls, in.Href, kindTemplates, "MachineTemplate")
	if err != nil {
		return templateRecord{}, err
	}
	t, err := records.Get[templateRecord](tx, kindTemplates, id, "MachineTemplate")
	if err != nil {
		return templateRecord{}, referenced(err)
	}
	if in.MachineConfig != nil {
		spec, configID, err := s.lookupConfig(tx, urls, in.MachineConfig)
		if err != nil {
			return t, err
		}
		t.ConfigID, t.Config = configID, nil
		if configID == "" {
			t.Config = &spec
		}
	}
	if in.MachineImage != nil {
		im, err := lookupImage(tx, urls, in.MachineImage)
		if err != nil {
			return t, err
		}
		t.ImageID = im.ID
	}
	if in.InitialState != "" {
		if t.InitialState, err = checkInitialState(in.InitialState); err != nil {
			return t, err
		}
	}
	base := t.templateNet()
	if t.Net, err = s.resolveNet(tx, urls, &base, in); err != nil {
		return t, err
	}
	return t, nil
}

// newMachine builds the record of a Machine about to be created.
func (s *Service) newMachine(tx *store.Tx, id string, body cimi.MachineCreate, t templateRecord) (machineRecord, error) {
	spec := t.Config
	if t.ConfigID != "" {
		c, err := records.Get[configRecord](tx, kindConfigs, t.ConfigID, "MachineConfiguration")
		if err != nil {
			return machineRecord{}, referenced(err)
		}
		spec = &c.configSpec
	}
	if spec == nil {
		return machineRecord{}, errdefs.Invalidf("the template has no machineConfig")
	}
	if err := s.validateConfig(spec); err != nil {
		return machineRecord{}, err
	}
	im, err := records.Get[imageRecord](tx, kindImages, t.ImageID, "MachineImage")
	if err != nil {
		return machineRecord{}, referenced(err)
	}
	if im.State != imageAvailable {
		return machineRecord{}, errdefs.Conflictf("MachineImage %s is %s, not AVAILABLE", im.ID, im.State)
	}
	initial := t.InitialState
	if initial == "" {
		initial = defaultInitialState
	}
	m := machineRecord{
		meta:         newMeta(id, body.Name, body.Description, body.Properties, s.now()),
		State:        cimi.StateCreating,
		CPU:          spec.CPU,
		MemoryKiB:    spec.MemoryKiB,
		CPUArch:      spec.CPUArch,
		ImageID:      im.ID,
		InitialState: initial,
		Domain:       s.domainName(id),
		ConsoleLog:   s.consoleLog(id),
	}
	boot := im.VirtualSizeKiB
	if len(spec.Disks) > 0 && spec.Disks[0].CapacityKiB > boot {
		boot = spec.Disks[0].CapacityKiB
	}
	m.Disks = append(m.Disks, machineDisk{ID: "disk0", Path: s.diskFile(id, 0), Format: "qcow2", Target: "vda", CapacityKiB: boot})
	for i := 1; i < len(spec.Disks); i++ {
		m.Disks = append(m.Disks, machineDisk{ID: diskID(i), Path: s.diskFile(id, i), Format: "qcow2",
			Target: "vd" + string(rune('a'+i)), CapacityKiB: spec.Disks[i].CapacityKiB})
	}
	return m, nil
}

func diskID(i int) string { return fmt.Sprintf("disk%d", i) }

// actionIntent writes, in the action's Job transaction, the Machine's move
// to the action's transitional state and, for stop and restart, the
// deadline of the graceful stop; it refuses the action with Conflict when
// the Machine's state does not allow it now.
func (s *Service) actionIntent(a machineAction, id string, timeout time.Duration, forceOnTimeout bool) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		if !a.validIn(m.State) || m.State == cimi.StateStopping {
			return errdefs.Conflictf("cannot %s Machine %s while it is %s (valid in: %s)", a.name, id, m.State, strings.Join(a.from, ", "))
		}
		m.State = a.transition
		if a.name == "stop" || a.name == "restart" {
			m.StopDeadline, m.ForceOnTimeout = s.now().Add(timeout), forceOnTimeout
			m.Restarting = a.name == "restart"
		}
		m.StatusMessage = ""
		return records.Put(tx, kindMachines, id, m)
	}
}

func (s *Service) actionHandler(a machineAction) api.HandlerFunc {
	return func(rq *api.Request) (api.Reply, error) {
		act, err := rq.DecodeAction(a.name)
		if err != nil && !errors.Is(err, cimi.ErrEmptyBody) {
			return api.Reply{}, err
		}
		id := rq.Vars["id"]
		path := machinePath(id)
		p := machineParams{MachineID: id, Force: act.Force != nil && *act.Force}
		timeout, forceOnTimeout, err := s.stopPolicy(a, act)
		if err != nil {
			return api.Reply{}, err
		}
		rec := job.Record{Kind: a.kind, Action: cimi.ActionURI(a.name), Name: a.name + " Machine", Target: path, Locks: []string{path}}
		if cur, err := s.loadMachine(id); err == nil && cur.State == cimi.StateStopping && a.name == "stop" {
			return s.escalateStop(rec, id, p.Force)
		}
		j, err := s.submit(rec, p, s.actionIntent(a, id, timeout, forceOnTimeout))
		if err != nil {
			return api.Reply{}, err
		}
		return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
	}
}

// stopPolicy reads the graceful-stop deadline and force policy of a stop
// or restart request.
func (s *Service) stopPolicy(a machineAction, act cimi.Action) (time.Duration, bool, error) {
	if (act.StopTimeout != nil || act.ForceOnTimeout != nil) && a.name != "stop" && a.name != "restart" {
		return 0, false, errdefs.Invalidf("stopTimeout and forceOnTimeout apply to stop and restart only")
	}
	timeout := s.cfg.DefaultStopTimeout
	if act.StopTimeout != nil {
		if *act.StopTimeout <= 0 || time.Duration(*act.StopTimeout)*time.Second > maxStopTimeout {
			return 0, false, errdefs.Invalidf("stopTimeout must be between 1 and %d seconds", int(maxStopTimeout.Seconds()))
		}
		timeout = time.Duration(*act.StopTimeout) * time.Second
	}
	return timeout, act.ForceOnTimeout != nil && *act.ForceOnTimeout, nil
}

// escalateStop handles a stop sent while a graceful stop runs: with force,
// the running stop's deadline becomes now and its policy allows power-off;
// that change is made at once and recorded as a finished Job.
func (s *Service) escalateStop(rec job.Record, id string, force bool) (api.Reply, error) {
	rec.Kind, rec.Locks = "edit", nil
	rec.StatusMessage = "the running graceful stop powers the Machine off now"
	j, err := s.jobs.Done(rec, func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		if m.State != cimi.StateStopping {
			return errdefs.Conflictf("Machine %s is %s now; send the stop again", id, m.State)
		}
		if m.Restarting {
			return errdefs.Conflictf("Machine %s is stopping for a restart, which would start it again; stop the restart Job first, then stop the Machine", id)
		}
		if !force {
			return errdefs.Conflictf("Machine %s is already stopping; send force=true to power it off now", id)
		}
		m.StopDeadline, m.ForceOnTimeout = s.now(), true
		return records.Put(tx, kindMachines, id, m)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: machinePath(id)}, nil
}

func (s *Service) deleteMachine(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := machinePath(id)
	j, err := s.submit(job.Record{Kind: "machine.delete", Action: cimi.RelDelete, Name: "delete Machine", Target: path, Locks: []string{path}},
		machineParams{MachineID: id},
		func(tx *store.Tx) error {
			m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
			if err != nil {
				return err
			}
			if m.State == cimi.StateDeleting {
				return errdefs.Conflictf("Machine %s is already being deleted", id)
			}
			m.State = cimi.StateDeleting
			return records.Put(tx, kindMachines, id, m)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}
