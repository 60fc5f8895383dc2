package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"regexp"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/hypervisor"
	"cimid/store"
)

func addressPath(id string) string { return kindAddresses + "/" + id }

func (s *Service) addressRoutes() []api.Route {
	// Addresses are listed and read with their networks and interfaces;
	// the kind serves their PUT.
	k := resource.Kind[addressRecord, cimi.Address]{Backend: s.backend(), Kind: kindAddresses, Type: "Address", MemberKey: "addresses",
		Doc:  func(u api.URLs, a addressRecord) *cimi.Address { return s.addressDoc(u, a, nil, nil) },
		Meta: func(a *addressRecord) *meta { return &a.meta }}
	return []api.Route{
		{Method: http.MethodGet, Path: "/addresses", Handler: s.listAddresses},
		{Method: http.MethodPost, Path: "/addresses", Handler: s.createAddress},
		{Method: http.MethodGet, Path: "/addresses/{id}", Handler: s.getAddress},
		{Method: http.MethodPut, Path: "/addresses/{id}", Handler: k.Update},
		{Method: http.MethodDelete, Path: "/addresses/{id}", Handler: s.deleteAddress},
	}
}

// addressView is what rendering Addresses needs besides their records.
type addressView struct {
	nets  map[string]networkRecord
	ports map[string]portRecord // by network id + "/" + MAC
}

func (s *Service) loadAddressView(tx *store.Tx) (addressView, error) {
	v := addressView{nets: map[string]networkRecord{}, ports: map[string]portRecord{}}
	nets, err := records.List[networkRecord](tx, kindNetworks)
	if err != nil {
		return v, err
	}
	for _, n := range nets {
		v.nets[n.ID] = n
	}
	ports, err := records.List[portRecord](tx, kindPorts)
	if err != nil {
		return v, err
	}
	for _, p := range ports {
		v.ports[p.NetworkID+"/"+p.MAC] = p
	}
	return v, nil
}

func (s *Service) addressDoc(urls api.URLs, a addressRecord, n *networkRecord, port *portRecord) *cimi.Address {
	d := &cimi.Address{
		Common:     commonDoc(urls, "Address", addressPath(a.ID), a.meta),
		IP:         a.IP,
		Hostname:   a.Hostname,
		Allocation: a.Allocation,
		Protocol:   "IPv4",
		Mask:       mask(a.Prefix),
		Network:    cimi.NewRef(urls.Abs(networkPath(a.NetworkID))),
		MACAddress: a.MAC,
	}
	if n != nil {
		if ad, err := planAddressing(n.Subnet, n.DHCPRange); err == nil {
			d.DNS = []string{ad.Gateway.String()}
			if n.ForwardMode == forwardNAT {
				d.DefaultGateway = ad.Gateway.String()
			}
		}
	}
	if port != nil {
		d.Resource = cimi.NewRef(urls.Abs("machines/" + port.MachineID))
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if a.Allocation == cimi.AllocationStatic && (port == nil || !contains(port.AddressIDs, a.ID)) {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

func (v addressView) doc(s *Service, urls api.URLs, a addressRecord) *cimi.Address {
	var np *networkRecord
	if n, ok := v.nets[a.NetworkID]; ok {
		np = &n
	}
	var pp *portRecord
	if p, ok := v.ports[a.NetworkID+"/"+a.MAC]; ok && a.MAC != "" {
		pp = &p
	}
	return s.addressDoc(urls, a, np, pp)
}

func (s *Service) listAddresses(rq *api.Request) (api.Reply, error) {
	var members []any
	err := s.db.View(func(tx *store.Tx) error {
		v, err := s.loadAddressView(tx)
		if err != nil {
			return err
		}
		addrs, err := records.List[addressRecord](tx, kindAddresses)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			members = append(members, v.doc(s, rq.URLs, a))
		}
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: collection(rq.URLs, "Address", kindAddresses, "addresses", members, true)}, nil
}

func (s *Service) getAddress(rq *api.Request) (api.Reply, error) {
	var d *cimi.Address
	err := s.db.View(func(tx *store.Tx) error {
		a, err := records.Get[addressRecord](tx, kindAddresses, rq.Vars["id"], "Address")
		if err != nil {
			return err
		}
		v, err := s.loadAddressView(tx)
		if err != nil {
			return err
		}
		d = v.doc(s, rq.URLs, a)
		return nil
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: d}, nil
}

var hostnamePattern = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// addressParams are the parameters of address Jobs.
type addressParams struct {
	AddressID string `json:"addressId"`
}

// staticAddress validates a static address on a network given by value.
func (s *Service) staticAddress(tx *store.Tx, urls api.URLs, in *cimi.AddressTemplateInput) (addressRecord, error) {
	var a addressRecord
	if alloc := strings.ToLower(strings.TrimSpace(in.Allocation)); alloc != "" && alloc != cimi.AllocationStatic {
		return a, errdefs.Invalidf("allocation %q cannot be created: dynamic addresses come from DHCP leases; create static ones", in.Allocation)
	}
	if p := strings.TrimSpace(in.Protocol); p != "" && !strings.EqualFold(p, "IPv4") {
		return a, errdefs.Invalidf("protocol %q is not supported: IPv4 only", in.Protocol)
	}
	if in.Network == nil || in.Network.Href == "" {
		return a, errdefs.Invalidf("network is required: the Network the address is reserved on")
	}
	n, err := resource.Lookup[networkRecord](tx, urls, in.Network.Href, kindNetworks, "Network")
	if err != nil {
		return a, err
	}
	netID := n.ID
	if n.State == cimi.NetworkDeleting {
		return a, errdefs.Conflictf("Network %s is being deleted", netID)
	}
	ad, err := planAddressing(n.Subnet, n.DHCPRange)
	if err != nil {
		return a, err
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(in.IP))
	if err != nil || !ip.Is4() {
		return a, errdefs.Invalidf("ip %q is not an IPv4 address", in.IP)
	}
	if err := ad.staticOK(ip); err != nil {
		return a, err
	}
	if m := strings.TrimSpace(in.Mask); m != "" && m != mask(ad.Subnet.Bits()) {
		return a, errdefs.Invalidf("mask %s is not the mask of Network %s (%s)", m, netID, mask(ad.Subnet.Bits()))
	}
	if h := strings.TrimSpace(in.Hostname); h != "" && !hostnamePattern.MatchString(h) {
		return a, errdefs.Invalidf("hostname %q is not a host name label (letters, digits, inner '-', at most 63 characters)", h)
	}
	a = addressRecord{NetworkID: netID, IP: ip.String(), Prefix: ad.Subnet.Bits(), Hostname: strings.TrimSpace(in.Hostname), Allocation: cimi.AllocationStatic}
	if strings.TrimSpace(in.MACAddress) != "" {
		if a.MAC, err = normalMAC(in.MACAddress); err != nil {
			return a, err
		}
	}
	addrs, err := records.List[addressRecord](tx, kindAddresses)
	if err != nil {
		return a, err
	}
	for _, o := range addrs {
		if o.NetworkID != netID || o.Allocation != cimi.AllocationStatic {
			continue
		}
		if o.IP == a.IP {
			return a, errdefs.Conflictf("ip %s is already reserved on Network %s (Address %s)", a.IP, netID, o.ID)
		}
		if a.MAC != "" && o.MAC == a.MAC {
			return a, errdefs.Conflictf("MAC %s already has a static address on Network %s (Address %s)", a.MAC, netID, o.ID)
		}
	}
	return a, nil
}

// addressTemplateInput resolves an AddressCreate's template.
func (s *Service) addressTemplateInput(tx *store.Tx, urls api.URLs, in *cimi.AddressTemplateInput) (*cimi.AddressTemplateInput, error) {
	if in.Href == "" {
		return in, nil
	}
	t, err := resource.Lookup[addressTemplateRecord](tx, urls, in.Href, kindAddressTemplates, "AddressTemplate")
	if err != nil {
		return nil, err
	}
	out := &cimi.AddressTemplateInput{AddressValues: cimi.AddressValues{IP: t.IP, Hostname: t.Hostname, MACAddress: t.MAC}}
	if t.NetworkID != "" {
		out.Network = &cimi.Ref{Href: urls.Abs(networkPath(t.NetworkID))}
	}
	return out, nil
}

func (s *Service) createAddress(rq *api.Request) (api.Reply, error) {
	var body cimi.AddressCreate
	if err := rq.Decode(&body, "AddressCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.AddressTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("addressTemplate is required, by reference or by value {\"ip\": ..., \"network\": {\"href\": ...}}")
	}
	id := job.NewID()
	path := addressPath(id)
	var rec addressRecord
	var n networkRecord
	params, _ := json.Marshal(addressParams{AddressID: id})
	j, err := s.jobs.Submit(job.Record{Kind: "address.create", Action: cimi.RelAdd, Name: "create Address",
		Target: kindAddresses, Affected: []string{kindAddresses, path}, Locks: []string{path}, Params: params},
		func(tx *store.Tx) error {
			in, err := s.addressTemplateInput(tx, rq.URLs, body.AddressTemplate)
			if err != nil {
				return err
			}
			a, err := s.staticAddress(tx, rq.URLs, in)
			if err != nil {
				return err
			}
			a.meta = newMeta(id, body.Name, body.Description, body.Properties, s.now())
			rec = a
			n, _ = records.Get[networkRecord](tx, kindNetworks, a.NetworkID, "Network")
			return records.Put(tx, kindAddresses, id, a)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.addressDoc(rq.URLs, rec, &n, nil), Location: path, JobID: j.ID}, nil
}

// runCreateAddress reserves a static address for its MAC in the network's
// DHCP server. One without a MAC waits for an interface to name it.
func (s *Service) runCreateAddress(ctx context.Context, x *job.Exec) error {
	var p addressParams
	if err := x.Params(&p); err != nil {
		return err
	}
	a, err := load[addressRecord](s.db, kindAddresses, p.AddressID, "Address")
	if err != nil {
		return err
	}
	x.OnUndo("forget the Address", func(ctx context.Context) error { return s.removeAddress(ctx, a) })
	if a.MAC != "" {
		n, err := load[networkRecord](s.db, kindNetworks, a.NetworkID, "Network")
		if err != nil {
			return err
		}
		if err := s.drv.AddDHCPHost(ctx, n.LibvirtName, hypervisor.DHCPHost{MAC: a.MAC, IP: a.IP, Name: a.Hostname}); err != nil {
			return err
		}
		x.SetMessage("address " + a.IP + " reserved for " + a.MAC)
	} else {
		x.SetMessage("address " + a.IP + " reserved; it is handed out once an interface names it")
	}
	x.Commit()
	return nil
}

func (s *Service) cleanupAddress(ctx context.Context, rec job.Record) error {
	var p addressParams
	if err := json.Unmarshal(rec.Params, &p); err != nil {
		return err
	}
	a, err := load[addressRecord](s.db, kindAddresses, p.AddressID, "Address")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.removeAddress(ctx, a)
}

// removeAddress drops the reservation from the DHCP server, then the record.
func (s *Service) removeAddress(ctx context.Context, a addressRecord) error {
	if a.MAC != "" {
		n, err := load[networkRecord](s.db, kindNetworks, a.NetworkID, "Network")
		if err == nil {
			err = s.drv.RemoveDHCPHost(ctx, n.LibvirtName, hypervisor.DHCPHost{MAC: a.MAC, IP: a.IP})
			if err != nil && !isNotFound(err) {
				return err
			}
		} else if !errdefs.Is(err, errdefs.NotFound) {
			return err
		}
	}
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindAddresses, a.ID) })
}

func (s *Service) deleteAddress(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := addressPath(id)
	params, _ := json.Marshal(addressParams{AddressID: id})
	j, err := s.jobs.Submit(job.Record{Kind: "address.delete", Action: cimi.RelDelete, Name: "delete Address",
		Target: path, Locks: []string{path}, Params: params},
		func(tx *store.Tx) error {
			a, err := records.Get[addressRecord](tx, kindAddresses, id, "Address")
			if err != nil {
				return err
			}
			if a.Allocation != cimi.AllocationStatic {
				return errdefs.Conflictf("Address %s comes from a DHCP lease: it goes when the lease ends or its interface is removed", id)
			}
			ports, err := records.List[portRecord](tx, kindPorts)
			if err != nil {
				return err
			}
			for _, p := range ports {
				if contains(p.AddressIDs, id) {
					return errdefs.Conflictf("Address %s is used by an interface of Machine %s (%s): remove the interface first", id, p.MachineID, p.MAC)
				}
			}
			return nil
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

func (s *Service) runDeleteAddress(ctx context.Context, x *job.Exec) error {
	var p addressParams
	if err := x.Params(&p); err != nil {
		return err
	}
	a, err := load[addressRecord](s.db, kindAddresses, p.AddressID, "Address")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.removeAddress(ctx, a); err != nil {
		return err
	}
	x.SetMessage("address " + a.IP + " released")
	return nil
}

// dynamicID names the Address of a lease: the same lease keeps its id.
func dynamicID(networkID, mac, ip string) string {
	sum := sha256.Sum256([]byte(networkID + "|" + mac + "|" + ip))
	return "lease-" + hex.EncodeToString(sum[:10])
}

// syncLeases turns the DHCP leases of our running networks into dynamic
// Addresses, for the MACs of our interfaces, writing only what changed.
func (s *Service) syncLeases(ctx context.Context) {
	var nets []networkRecord
	var ports []portRecord
	var addrs []addressRecord
	var released []releasedRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		if nets, err = records.List[networkRecord](tx, kindNetworks); err != nil {
			return err
		}
		if ports, err = records.List[portRecord](tx, kindPorts); err != nil {
			return err
		}
		if released, err = records.List[releasedRecord](tx, kindReleased); err != nil {
			return err
		}
		addrs, err = records.List[addressRecord](tx, kindAddresses)
		return err
	})
	if err != nil {
		s.log.Error("sweep: read records", "err", err)
		return
	}
	// Leases of removed interfaces are not shown; those of MACs we do not
	// know (guests put on our networks by other means) are.
	hidden := map[string]bool{} // network id + "/" + MAC
	for _, r := range released {
		hidden[releasedKey(r.NetworkID, r.MAC)] = true
	}
	for _, p := range ports {
		if p.State == cimi.InterfaceDetaching {
			hidden[releasedKey(p.NetworkID, p.MAC)] = true
		} else {
			delete(hidden, releasedKey(p.NetworkID, p.MAC))
		}
	}
	leased := map[string]bool{} // network id + "/" + MAC, over the networks read
	static := map[string]bool{} // network id + "/" + IP
	for _, a := range addrs {
		if a.Allocation == cimi.AllocationStatic {
			static[a.NetworkID+"/"+a.IP] = true
		}
	}
	want := map[string]addressRecord{}
	read := map[string]bool{} // networks whose leases were read
	for _, n := range nets {
		if n.State != cimi.NetworkStarted {
			continue
		}
		leases, err := s.drv.DHCPLeases(ctx, n.LibvirtName)
		if err != nil {
			s.log.Debug("sweep: DHCP leases", "network", n.ID, "err", err)
			continue
		}
		read[n.ID] = true
		for _, l := range leases {
			mac, err := normalMAC(l.MAC)
			ip, perr := netip.ParseAddr(l.IP)
			if err != nil || perr != nil || !ip.Is4() {
				continue
			}
			leased[releasedKey(n.ID, mac)] = true
			if hidden[releasedKey(n.ID, mac)] || static[n.ID+"/"+ip.String()] {
				continue
			}
			id := dynamicID(n.ID, mac, ip.String())
			want[id] = addressRecord{meta: meta{ID: id}, NetworkID: n.ID, IP: ip.String(), Prefix: l.Prefix,
				Hostname: l.Hostname, MAC: mac, Allocation: cimi.AllocationDynamic, Expiry: l.Expiry}
		}
	}
	have := map[string]addressRecord{}
	for _, a := range addrs {
		if a.Allocation == cimi.AllocationDynamic {
			have[a.ID] = a
		}
	}
	var put []addressRecord
	var del []string
	now := s.now()
	for id, w := range want {
		h, ok := have[id]
		if ok && h.Hostname == w.Hostname && h.Prefix == w.Prefix && h.Expiry.Equal(w.Expiry) {
			continue
		}
		w.Name, w.Created, w.Updated = w.IP, now, now
		if ok {
			w.meta = h.meta
			w.Updated = now
		}
		put = append(put, w)
	}
	for id, h := range have {
		if _, ok := want[id]; !ok && (read[h.NetworkID] || !networkKnown(nets, h.NetworkID)) {
			del = append(del, id)
		}
	}
	var forget []string // released MACs whose lease has gone
	for _, r := range released {
		if k := releasedKey(r.NetworkID, r.MAC); (read[r.NetworkID] || !networkKnown(nets, r.NetworkID)) && !leased[k] {
			forget = append(forget, k)
		}
	}
	if len(put) == 0 && len(del) == 0 && len(forget) == 0 {
		return
	}
	err = s.db.Update(func(tx *store.Tx) error {
		for _, k := range forget {
			if err := tx.Delete(kindReleased, k); err != nil {
				return err
			}
		}
		for _, a := range put {
			if err := records.Put(tx, kindAddresses, a.ID, a); err != nil {
				return err
			}
		}
		for _, id := range del {
			if err := tx.Delete(kindAddresses, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("sweep: record addresses", "err", err)
		return
	}
	for _, a := range put {
		s.log.Debug("address from DHCP lease", "network", a.NetworkID, "mac", a.MAC, "ip", a.IP)
	}
}

func networkKnown(nets []networkRecord, id string) bool {
	for _, n := range nets {
		if n.ID == id {
			return true
		}
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s *Service) addressTemplateKind() resource.Kind[addressTemplateRecord, cimi.AddressTemplate] {
	return resource.Kind[addressTemplateRecord, cimi.AddressTemplate]{Backend: s.backend(),
		Kind: kindAddressTemplates, Type: "AddressTemplate", MemberKey: "addressTemplates",
		Doc: s.addressTemplateDoc, Meta: func(t *addressTemplateRecord) *meta { return &t.meta }}
}

func (s *Service) addressTemplateRoutes() []api.Route {
	k := s.addressTemplateKind()
	return k.Routes(s.createAddressTemplate, k.Delete)
}

func (s *Service) addressTemplateDoc(urls api.URLs, t addressTemplateRecord) *cimi.AddressTemplate {
	d := &cimi.AddressTemplate{Common: commonDoc(urls, "AddressTemplate", kindAddressTemplates+"/"+t.ID, t.meta),
		AddressValues: cimi.AddressValues{IP: t.IP, Hostname: t.Hostname, Allocation: cimi.AllocationStatic, Protocol: "IPv4", MACAddress: t.MAC}}
	if t.NetworkID != "" {
		d.Network = cimi.NewRef(urls.Abs(networkPath(t.NetworkID)))
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}, {Rel: cimi.RelDelete, Href: d.ID}}
	return d
}

func (s *Service) createAddressTemplate(rq *api.Request) (api.Reply, error) {
	var body cimi.AddressTemplateCreate
	if err := rq.Decode(&body, "AddressTemplateCreate", "AddressTemplate"); err != nil {
		return api.Reply{}, err
	}
	in := body.AddressTemplate
	if in == nil {
		in = &cimi.AddressTemplateInput{AddressValues: body.AddressValues}
	} else if body.IP != "" || body.Network != nil || body.MACAddress != "" || body.Hostname != "" {
		return api.Reply{}, errdefs.Invalidf("give the template's attributes either inside addressTemplate or at the top level, not both")
	}
	if in.Href != "" {
		return api.Reply{}, errdefs.Invalidf("an AddressTemplate is created by value; a reference to another template is not accepted")
	}
	return s.addressTemplateKind().Create(rq, func(tx *store.Tx, id string) (addressTemplateRecord, error) {
		// The address is checked as an Address made of it would be.
		a, err := s.staticAddress(tx, rq.URLs, in)
		if err != nil {
			return addressTemplateRecord{}, err
		}
		return addressTemplateRecord{meta: newMeta(id, body.Name, body.Description, body.Properties, s.now()),
			IP: a.IP, Hostname: a.Hostname, NetworkID: a.NetworkID, MAC: a.MAC}, nil
	})
}
