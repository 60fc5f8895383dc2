package network

import (
	"cimid/agent/records"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/store"
)

func machinePath(id string) string { return "machines/" + id }

func interfacesPath(machineID string) string { return machinePath(machineID) + "/networkInterfaces" }

func (s *Service) interfaceRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/machines/{id}/networkInterfaces", Handler: s.listInterfaces},
		{Method: http.MethodPost, Path: "/machines/{id}/networkInterfaces", Handler: s.addInterface},
		{Method: http.MethodGet, Path: "/machines/{id}/networkInterfaces/{nic}", Handler: s.getInterface},
		{Method: http.MethodDelete, Path: "/machines/{id}/networkInterfaces/{nic}", Handler: s.removeInterface},
		{Method: http.MethodGet, Path: "/machines/{id}/networkInterfaces/{nic}/addresses", Handler: s.listInterfaceAddresses},
	}
}

func (s *Service) portRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/networkPorts", Handler: s.listPorts},
		{Method: http.MethodGet, Path: "/networkPorts/{id}", Handler: s.getPort},
	}
}

// AddressInfo is one address of a Machine interface.
type AddressInfo struct {
	ID         string
	IP         string
	Prefix     int
	Allocation string // dynamic or static
}

// InterfaceInfo is one interface of a Machine, as compute may show it.
type InterfaceInfo struct {
	ID        string
	Name      string // nic0, nic1, ...
	NetworkID string
	Network   string // libvirt network name
	MAC       string
	Model     string
	State     string // ATTACHING, ACTIVE, DETACHING
	MTU       int
	Addresses []AddressInfo
}

// MachineInterfaces lists the interfaces of a Machine with the addresses
// they have: DHCP leases as last read, and static reservations.
func (s *Service) MachineInterfaces(machineID string) ([]InterfaceInfo, error) {
	var out []InterfaceInfo
	err := s.db.View(func(tx *store.Tx) error {
		ports, err := records.List[portRecord](tx, kindPorts)
		if err != nil {
			return err
		}
		addrs, err := records.List[addressRecord](tx, kindAddresses)
		if err != nil {
			return err
		}
		var mine []portRecord
		for _, p := range ports {
			if p.MachineID == machineID {
				mine = append(mine, p)
			}
		}
		sortPorts(mine)
		for _, p := range mine {
			n, err := records.Get[networkRecord](tx, kindNetworks, p.NetworkID, "Network")
			if err != nil && !errdefs.Is(err, errdefs.NotFound) {
				return err
			}
			info := InterfaceInfo{ID: p.ID, Name: p.Name, NetworkID: p.NetworkID, Network: n.LibvirtName, MAC: p.MAC, Model: p.Model, State: p.State, MTU: n.MTU}
			for _, a := range interfaceAddresses(p, addrs) {
				info.Addresses = append(info.Addresses, AddressInfo{ID: a.ID, IP: a.IP, Prefix: a.Prefix, Allocation: a.Allocation})
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// interfaceAddresses picks the addresses of one interface: its static
// reservations, then the leases of its MAC on its network.
func interfaceAddresses(p portRecord, addrs []addressRecord) []addressRecord {
	var out []addressRecord
	for _, a := range addrs {
		if contains(p.AddressIDs, a.ID) {
			out = append(out, a)
		}
	}
	for _, a := range addrs {
		if a.Allocation == cimi.AllocationDynamic && a.NetworkID == p.NetworkID && a.MAC == p.MAC {
			out = append(out, a)
		}
	}
	return out
}

func (s *Service) interfaceDoc(urls api.URLs, p portRecord, mtu int) *cimi.MachineNetworkInterface {
	path := interfacesPath(p.MachineID) + "/" + p.ID
	d := &cimi.MachineNetworkInterface{
		Common:      commonDoc(urls, "MachineNetworkInterface", path, p.meta),
		Addresses:   cimi.NewRef(urls.Abs(path + "/addresses")),
		Network:     cimi.NewRef(urls.Abs(networkPath(p.NetworkID))),
		NetworkPort: cimi.NewRef(urls.Abs(kindPorts + "/" + p.ID)),
		State:       p.State,
		MACAddress:  p.MAC,
		MTU:         mtu,
		Model:       p.Model,
	}
	if d.MTU == 0 {
		d.MTU = 1500
	}
	if p.State == cimi.InterfaceActive {
		d.Operations = []cimi.Operation{{Rel: cimi.RelDelete, Href: d.ID}}
	}
	return d
}

// machineRecord reads what this package knows of a Machine.
func machineRecord(tx *store.Tx, id string) (machineNetRecord, error) {
	m, err := records.Get[machineNetRecord](tx, kindMachineNets, id, "Machine")
	if errdefs.Is(err, errdefs.NotFound) {
		return m, errdefs.NotFoundf("Machine %s does not exist", id)
	}
	return m, err
}

func (s *Service) listInterfaces(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	var members []any
	err := s.db.View(func(tx *store.Tx) error {
		if _, err := machineRecord(tx, id); err != nil {
			return err
		}
		ports, err := records.List[portRecord](tx, kindPorts)
		if err != nil {
			return err
		}
		var mine []portRecord
		for _, p := range ports {
			if p.MachineID == id {
				mine = append(mine, p)
			}
		}
		sortPorts(mine)
		for _, p := range mine {
			n, _ := records.Get[networkRecord](tx, kindNetworks, p.NetworkID, "Network")
			members = append(members, s.interfaceDoc(rq.URLs, p, n.MTU))
		}
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: collection(rq.URLs, "MachineNetworkInterface", interfacesPath(id), "machineNetworkInterfaces", members, true)}, nil
}

// machinePort reads one interface of a Machine.
func machinePort(tx *store.Tx, machineID, portID string) (portRecord, error) {
	if _, err := machineRecord(tx, machineID); err != nil {
		return portRecord{}, err
	}
	p, err := records.Get[portRecord](tx, kindPorts, portID, "interface")
	if err != nil || p.MachineID != machineID {
		return portRecord{}, errdefs.NotFoundf("Machine %s has no interface %s", machineID, portID)
	}
	return p, nil
}

func (s *Service) getInterface(rq *api.Request) (api.Reply, error) {
	var d *cimi.MachineNetworkInterface
	err := s.db.View(func(tx *store.Tx) error {
		p, err := machinePort(tx, rq.Vars["id"], rq.Vars["nic"])
		if err != nil {
			return err
		}
		n, _ := records.Get[networkRecord](tx, kindNetworks, p.NetworkID, "Network")
		d = s.interfaceDoc(rq.URLs, p, n.MTU)
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: d}, nil
}

func (s *Service) listInterfaceAddresses(rq *api.Request) (api.Reply, error) {
	var members []any
	path := interfacesPath(rq.Vars["id"]) + "/" + rq.Vars["nic"] + "/addresses"
	err := s.db.View(func(tx *store.Tx) error {
		p, err := machinePort(tx, rq.Vars["id"], rq.Vars["nic"])
		if err != nil {
			return err
		}
		addrs, err := records.List[addressRecord](tx, kindAddresses)
		if err != nil {
			return err
		}
		for _, a := range interfaceAddresses(p, addrs) {
			members = append(members, &cimi.MachineNetworkInterfaceAddress{
				Common:  cimi.Common{ResourceURI: cimi.TypeURI("MachineNetworkInterfaceAddress"), ID: rq.URLs.Abs(path + "/" + a.ID), Name: a.IP},
				Address: cimi.NewRef(rq.URLs.Abs(addressPath(a.ID))),
			})
		}
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: collection(rq.URLs, "MachineNetworkInterfaceAddress", path, "machineNetworkInterfaceAddresses", members, false)}, nil
}

// interfaceParams are the parameters of interface Jobs.
type interfaceParams struct {
	MachineID string `json:"machineId"`
	PortID    string `json:"portId"`
}

func (s *Service) addInterface(rq *api.Request) (api.Reply, error) {
	var body cimi.MachineNetworkInterfaceInput
	if err := rq.Decode(&body, "MachineNetworkInterface"); err != nil {
		return api.Reply{}, err
	}
	machineID := rq.Vars["id"]
	var port portRecord
	portID := job.NewID()
	params, _ := json.Marshal(interfaceParams{MachineID: machineID, PortID: portID})
	rec := job.Record{Kind: "machine.nic.add", Action: cimi.RelAdd, Name: "add a network interface",
		Target: interfacesPath(machineID), Affected: []string{interfacesPath(machineID), interfacesPath(machineID) + "/" + portID},
		Locks: []string{machinePath(machineID)}, Params: params}
	j, err := s.jobs.Submit(rec, func(tx *store.Tx) error {
		m, err := machineRecord(tx, machineID)
		if err != nil {
			return err
		}
		spec, err := s.interfaceSpec(tx, rq.URLs, body)
		if err != nil {
			return err
		}
		if port, err = s.addPort(tx, &m, spec, cimi.InterfaceAttaching, portID); err != nil {
			return err
		}
		if body.Name != "" || body.Description != "" || len(body.Properties) > 0 {
			port.Name, port.Description, port.Properties = body.Name, body.Description, body.Properties
			if port.Name == "" {
				port.Name = fmt.Sprintf("nic%d", port.Index)
			}
			if err := records.Put(tx, kindPorts, port.ID, port); err != nil {
				return err
			}
		}
		return records.Put(tx, kindMachineNets, machineID, m)
	})
	if err != nil {
		return api.Reply{}, err
	}
	path := interfacesPath(machineID) + "/" + port.ID
	var mtu int
	if n, err := load[networkRecord](s.db, kindNetworks, port.NetworkID, "Network"); err == nil {
		mtu = n.MTU
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.interfaceDoc(rq.URLs, port, mtu), Location: path, JobID: j.ID}, nil
}

// domainLive tells whether a change to a domain applies to the running
// guest too.
func (s *Service) domainLive(ctx context.Context, domain string) (bool, error) {
	st, err := s.drv.DomainStatus(ctx, domain)
	if err != nil {
		return false, err
	}
	return st.State == hypervisor.StateRunning || st.State == hypervisor.StatePaused, nil
}

// hasNIC tells whether the domain's definition has an interface with mac.
func (s *Service) hasNIC(ctx context.Context, domain, mac string) (bool, error) {
	nics, err := s.drv.DomainNICs(ctx, domain)
	if err != nil {
		return false, err
	}
	for _, n := range nics {
		if m, err := normalMAC(n.MAC); err == nil && m == mac {
			return true, nil
		}
	}
	return false, nil
}

func (s *Service) runAddInterface(ctx context.Context, x *job.Exec) error {
	var p interfaceParams
	if err := x.Params(&p); err != nil {
		return err
	}
	var m machineNetRecord
	var port portRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if m, err = machineRecord(tx, p.MachineID); err != nil {
			return err
		}
		port, err = records.Get[portRecord](tx, kindPorts, p.PortID, "interface")
		return err
	})
	if err != nil {
		return err
	}
	x.OnUndo("remove the interface", func(ctx context.Context) error { return s.unplug(ctx, m, port) })
	if err := s.waitStarted(ctx, port.NetworkID); err != nil {
		return err
	}
	if err := s.reserveStatic(ctx, port); err != nil {
		return err
	}
	n, err := load[networkRecord](s.db, kindNetworks, port.NetworkID, "Network")
	if err != nil {
		return err
	}
	live, err := s.domainLive(ctx, m.Domain)
	if err != nil {
		return err
	}
	present, err := s.hasNIC(ctx, m.Domain, port.MAC)
	if err != nil {
		return err
	}
	if !present {
		if err := s.drv.AttachNIC(ctx, m.Domain, hypervisor.NIC{Network: n.LibvirtName, MAC: port.MAC, Model: port.Model}, live); err != nil {
			return err
		}
	}
	if err := s.setPortState(port.ID, cimi.InterfaceActive); err != nil {
		return err
	}
	x.Commit()
	s.Refresh()
	if live {
		x.SetMessage("interface " + port.MAC + " added to the running Machine")
	} else {
		x.SetMessage("interface " + port.MAC + " added; the Machine sees it at its next start")
	}
	return nil
}

// unplug removes an interface from the domain (live when it runs) and
// forgets it.
func (s *Service) unplug(ctx context.Context, m machineNetRecord, port portRecord) error {
	live, err := s.domainLive(ctx, m.Domain)
	if err != nil && !isNotFound(err) {
		return err
	}
	if err == nil {
		present, err := s.hasNIC(ctx, m.Domain, port.MAC)
		if err != nil {
			return err
		}
		if present {
			if err := s.drv.DetachNIC(ctx, m.Domain, port.MAC, live); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	return s.releasePort(ctx, port)
}

func (s *Service) cleanupInterface(ctx context.Context, rec job.Record) error {
	var p interfaceParams
	if err := json.Unmarshal(rec.Params, &p); err != nil {
		return err
	}
	var m machineNetRecord
	var port portRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if m, err = machineRecord(tx, p.MachineID); err != nil {
			return err
		}
		port, err = records.Get[portRecord](tx, kindPorts, p.PortID, "interface")
		return err
	})
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.unplug(ctx, m, port)
}

func (s *Service) setPortState(id, state string) error {
	return s.db.Update(func(tx *store.Tx) error {
		p, err := records.Get[portRecord](tx, kindPorts, id, "interface")
		if err != nil {
			return err
		}
		p.State, p.Updated = state, s.now()
		return records.Put(tx, kindPorts, id, p)
	})
}

func (s *Service) removeInterface(rq *api.Request) (api.Reply, error) {
	machineID, portID := rq.Vars["id"], rq.Vars["nic"]
	path := interfacesPath(machineID) + "/" + portID
	params, _ := json.Marshal(interfaceParams{MachineID: machineID, PortID: portID})
	j, err := s.jobs.Submit(job.Record{Kind: "machine.nic.remove", Action: cimi.RelDelete, Name: "remove a network interface",
		Target: path, Locks: []string{machinePath(machineID)}, Params: params},
		func(tx *store.Tx) error {
			p, err := machinePort(tx, machineID, portID)
			if err != nil {
				return err
			}
			if p.State != cimi.InterfaceActive {
				return errdefs.Conflictf("interface %s of Machine %s is %s", portID, machineID, p.State)
			}
			p.State = cimi.InterfaceDetaching
			return records.Put(tx, kindPorts, p.ID, p)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

func (s *Service) runRemoveInterface(ctx context.Context, x *job.Exec) error {
	var p interfaceParams
	if err := x.Params(&p); err != nil {
		return err
	}
	var m machineNetRecord
	var port portRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if m, err = machineRecord(tx, p.MachineID); err != nil {
			return err
		}
		port, err = records.Get[portRecord](tx, kindPorts, p.PortID, "interface")
		return err
	})
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // a resumed remove that had finished
	}
	if err != nil {
		return err
	}
	if err := s.unplug(ctx, m, port); err != nil {
		if serr := s.setPortState(port.ID, cimi.InterfaceActive); serr != nil {
			s.log.Error("restore interface state", "err", serr)
		}
		return err
	}
	x.SetMessage("interface " + port.MAC + " removed")
	return nil
}

// portState is the NetworkPort state of an interface.
func portState(state string) string {
	switch state {
	case cimi.InterfaceAttaching:
		return "CREATING"
	case cimi.InterfaceDetaching:
		return "DELETING"
	case cimi.InterfaceActive:
		return "STARTED"
	}
	return state
}

func (s *Service) portDoc(urls api.URLs, p portRecord) *cimi.NetworkPort {
	return &cimi.NetworkPort{
		Common:     commonDoc(urls, "NetworkPort", kindPorts+"/"+p.ID, p.meta),
		State:      portState(p.State),
		Network:    cimi.NewRef(urls.Abs(networkPath(p.NetworkID))),
		PortType:   "ACCESS",
		MACAddress: p.MAC,
		Machine:    cimi.NewRef(urls.Abs(machinePath(p.MachineID))),
	}
}

func (s *Service) listPortsWhere(rq *api.Request, path string, keep func(portRecord) bool) (api.Reply, error) {
	ports, err := loadAll[portRecord](s.db, kindPorts)
	if err != nil {
		return api.Reply{}, err
	}
	var members []any
	for _, p := range ports {
		if keep(p) {
			members = append(members, s.portDoc(rq.URLs, p))
		}
	}
	return api.Reply{Body: collection(rq.URLs, "NetworkPort", path, "networkPorts", members, false)}, nil
}

func (s *Service) listPorts(rq *api.Request) (api.Reply, error) {
	return s.listPortsWhere(rq, kindPorts, func(portRecord) bool { return true })
}

func (s *Service) listNetworkPorts(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	if _, err := load[networkRecord](s.db, kindNetworks, id, "Network"); err != nil {
		return api.Reply{}, err
	}
	return s.listPortsWhere(rq, networkPath(id)+"/networkPorts", func(p portRecord) bool { return p.NetworkID == id })
}

func (s *Service) getPort(rq *api.Request) (api.Reply, error) {
	p, err := load[portRecord](s.db, kindPorts, rq.Vars["id"], "NetworkPort")
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: s.portDoc(rq.URLs, p)}, nil
}
