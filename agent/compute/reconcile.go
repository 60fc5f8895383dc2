package compute

import (
	"cimid/agent/records"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/events"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}

// observedState maps what libvirt shows to a Machine state. ok is false
// when the observation says nothing certain (unknown is not dead).
func observedState(st hypervisor.DomainStatus, current string) (state, message string, ok bool) {
	switch st.State {
	case hypervisor.StateRunning:
		return cimi.StateStarted, "", true
	case hypervisor.StatePaused:
		return cimi.StatePaused, "", true
	case hypervisor.StateShuttingDown:
		return cimi.StateStopping, "", true
	case hypervisor.StatePMSuspended:
		return cimi.StateSuspended, "", true
	case hypervisor.StateCrashed:
		return cimi.StateError, "the guest crashed", true
	case hypervisor.StateShutoff:
		if st.HasManagedSave {
			return cimi.StateSuspended, "", true
		}
		if current == cimi.StateError {
			return cimi.StateError, "", true // an error stays until the next start
		}
		return cimi.StateStopped, "", true
	}
	return "", "", false
}

// setState writes a Machine's state (and message, when not empty) as the
// outcome of one of our Jobs.
func (s *Service) setState(id, state, message string) error {
	return s.setStateFrom(id, state, message, originAPI)
}

// Where a state change came from, for the event history.
const (
	originAPI     = "api"
	originOutside = "outside"
)

// setStateFrom writes a Machine's state and records the change in its
// EventLog.
func (s *Service) setStateFrom(id, state, message, origin string) error {
	var before machineRecord
	changed := false
	err := s.db.Update(func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, id, "Machine")
		if err != nil {
			return err
		}
		before, changed = m, false
		if m.State == state && (message == "" || m.StatusMessage == message) {
			return nil
		}
		changed = m.State != state
		m.State = state
		if message != "" {
			m.StatusMessage = message
		}
		return records.Put(tx, kindMachines, id, m)
	})
	if err == nil && changed {
		s.stateEvent(before, state, message, origin)
	}
	return err
}

// stateEvent records in its EventLog that Machine m, as it was, moved to
// state.
func (s *Service) stateEvent(m machineRecord, state, message, origin string) {
	if s.cfg.Events == nil {
		return
	}
	s.cfg.Events.Record(stateEventOf(m, state, message, origin))
}

// stageStateEvent writes, in tx, the event of Machine m moving to state,
// to be stored with the change itself; the function it returns hands the
// event to live subscribers once tx has committed.
func (s *Service) stageStateEvent(tx *store.Tx, m machineRecord, state, message, origin string) (func(), error) {
	if s.cfg.Events == nil {
		return func() {}, nil
	}
	return s.cfg.Events.Stage(tx, stateEventOf(m, state, message, origin))
}

// stateEventOf is the event that Machine m, as it was, moved to state.
func stateEventOf(m machineRecord, state, message, origin string) events.Event {
	severity, detail := events.SeverityLow, message
	if origin == originOutside {
		severity = events.SeverityMedium
		if detail == "" {
			detail = "changed outside the API (observed through libvirt)"
		}
	}
	if state == cimi.StateError {
		severity = events.SeverityHigh
	}
	return events.Event{Resource: machinePath(m.ID), ResName: m.Name, ResType: "Machine",
		Type: events.TypeState, State: state, Previous: m.State, Detail: detail, Severity: severity,
		Outcome: "Status", Origin: origin}
}

func (s *Service) markError(id, message string) {
	if err := s.setStateFrom(id, cimi.StateError, message, originOutside); err != nil && !errdefs.Is(err, errdefs.NotFound) {
		s.log.Error("mark Machine ERROR", "machine", id, "err", err)
	}
}

// settle sets a Machine's state from what libvirt shows now. Jobs call it
// when their work is done.
func (s *Service) settle(ctx context.Context, id string) error {
	m, err := s.loadMachine(id)
	if err != nil {
		return err
	}
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	if err != nil {
		return err
	}
	state, msg, ok := observedState(st, "")
	if !ok {
		return nil
	}
	return s.setState(id, state, msg)
}

// endObserved ends a Job as SUCCESS in one transaction with its last
// changes: apply's (none when nil), and the Machine's state as st shows
// it (after an action, or leaving CAPTURING), with the event of that
// change.
func (s *Service) endObserved(x *job.Exec, machineID string, st hypervisor.DomainStatus, apply func(tx *store.Tx, m *machineRecord) error) error {
	state, msg, observed := observedState(st, "")
	publish := func() {}
	err := x.Succeed(func(tx *store.Tx) error {
		m, err := records.Get[machineRecord](tx, kindMachines, machineID, "Machine")
		if err != nil {
			return err
		}
		before := m
		if apply != nil {
			if err := apply(tx, &m); err != nil {
				return err
			}
		}
		if observed {
			m.State = state
			if msg != "" {
				m.StatusMessage = msg
			}
			if before.State != state {
				if publish, err = s.stageStateEvent(tx, before, state, msg, originAPI); err != nil {
					return err
				}
			}
		}
		return records.Put(tx, kindMachines, machineID, m)
	})
	if err != nil {
		return err
	}
	publish()
	return nil
}

// resyncMachine follows an outside change of one Machine, unless a Job of
// ours is acting on it (the Job settles the state when it ends).
func (s *Service) resyncMachine(ctx context.Context, id string) {
	if s.jobs.Pending(machinePath(id)) {
		return
	}
	m, err := s.loadMachine(id)
	if err != nil {
		return
	}
	st, err := s.drv.DomainStatus(ctx, m.Domain)
	s.applyObservation(m, st, err)
}

// applyObservation updates a Machine from one observation of its domain.
func (s *Service) applyObservation(m machineRecord, st hypervisor.DomainStatus, err error) {
	switch m.State {
	case cimi.StateCreating, cimi.StateDeleting:
		return // a Job owns these; its recovery rule decides
	}
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		if m.State != cimi.StateError {
			s.log.Warn("the domain of a Machine is gone", "machine", m.ID, "domain", m.Domain)
			s.markError(m.ID, "its domain "+m.Domain+" no longer exists in libvirt (removed outside the API)")
		}
		return
	case err != nil:
		return // unavailable or unknown: keep what we know
	}
	state, msg, ok := observedState(st, m.State)
	if !ok || (state == m.State && msg == "") {
		return
	}
	if state != m.State {
		s.log.Info("Machine changed outside the API", "machine", m.ID, "from", m.State, "to", state)
	}
	if err := s.setStateFrom(m.ID, state, msg, originOutside); err != nil && !errdefs.Is(err, errdefs.NotFound) {
		s.log.Error("record observed state", "machine", m.ID, "err", err)
	}
}

// resyncAll compares every Machine with the domain list in one pass.
func (s *Service) resyncAll(ctx context.Context) {
	doms, err := s.drv.ListDomains(ctx)
	if err != nil {
		s.log.Warn("resync: list domains", "err", err)
		return
	}
	byName := make(map[string]hypervisor.DomainStatus, len(doms))
	for _, d := range doms {
		byName[d.Name] = d
	}
	var machines []machineRecord
	err = s.db.View(func(tx *store.Tx) (err error) {
		machines, err = records.List[machineRecord](tx, kindMachines)
		return err
	})
	if err != nil {
		s.log.Error("resync: list machines", "err", err)
		return
	}
	for _, m := range machines {
		if s.jobs.Pending(machinePath(m.ID)) {
			continue
		}
		st, found := byName[m.Domain]
		if !found {
			s.applyObservation(m, st, hypervisor.ErrNotFound)
			continue
		}
		s.applyObservation(m, st, nil)
	}
}

// Reconcile runs once at start, after interrupted Jobs were resumed: it
// adopts our domains, reports foreign and unknown ones without touching
// them, and brings every idle Machine's state in line with libvirt.
func (s *Service) Reconcile(ctx context.Context) error {
	doms, err := s.drv.ListDomains(ctx)
	if err != nil {
		return err
	}
	var machines []machineRecord
	err = s.db.View(func(tx *store.Tx) (err error) {
		machines, err = records.List[machineRecord](tx, kindMachines)
		return err
	})
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, m := range machines {
		known[m.Domain] = true
	}
	foreign := 0
	for _, d := range doms {
		switch {
		case known[d.Name]:
		case d.Metadata != nil && d.Metadata.Instance == s.cfg.Instance:
			s.log.Warn("domain carries this instance's mark but no Machine record: left untouched", "domain", d.Name, "machine", d.Metadata.MachineID)
		case strings.HasPrefix(d.Name, "cimid-"+s.cfg.Instance+"-"):
			s.log.Warn("domain named like one of ours but unknown: left untouched", "domain", d.Name)
		default:
			foreign++
			s.log.Debug("foreign domain, not managed by this instance", "domain", d.Name)
		}
	}
	if foreign > 0 {
		s.log.Info("foreign domains on this host are left alone", "count", foreign)
	}
	s.resyncAll(ctx)
	return nil
}
