package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/hypervisor"
	"cimid/store"
)

// defaultNetworkID is the id of the network the agent provides.
const defaultNetworkID = "default"

func networkPath(id string) string { return kindNetworks + "/" + id }

func (s *Service) networkRoutes() []api.Route {
	k := resource.Kind[networkRecord, cimi.Network]{Backend: s.backend(), Kind: kindNetworks, Type: "Network", MemberKey: "networks",
		Doc: s.networkDoc, Meta: func(n *networkRecord) *meta { return &n.meta }}
	return []api.Route{
		{Method: http.MethodGet, Path: "/networks", Handler: k.List},
		{Method: http.MethodPost, Path: "/networks", Handler: s.createNetwork},
		{Method: http.MethodGet, Path: "/networks/{id}", Handler: k.Get},
		{Method: http.MethodPut, Path: "/networks/{id}", Handler: k.Update},
		{Method: http.MethodDelete, Path: "/networks/{id}", Handler: s.deleteNetwork},
		{Method: http.MethodGet, Path: "/networks/{id}/networkPorts", Handler: s.listNetworkPorts},
	}
}

func (s *Service) networkDoc(urls api.URLs, n networkRecord) *cimi.Network {
	path := networkPath(n.ID)
	d := &cimi.Network{
		Common:      commonDoc(urls, "Network", path, n.meta),
		State:       n.State,
		NetworkType: n.NetworkType, MTU: n.MTU, ClassOfService: n.ClassOfService,
		NetworkPorts:  cimi.NewRef(urls.Abs(path + "/networkPorts")),
		ForwardMode:   n.ForwardMode,
		Subnet:        n.Subnet,
		DHCPRange:     n.DHCPRange,
		Bridge:        n.Bridge,
		StatusMessage: n.StatusMessage,
	}
	if a, err := planAddressing(n.Subnet, n.DHCPRange); err == nil {
		d.Gateway = a.Gateway.String()
	}
	d.Operations = []cimi.Operation{{Rel: cimi.RelEdit, Href: d.ID}}
	if !n.Default && n.State != cimi.NetworkDeleting {
		d.Operations = append(d.Operations, cimi.Operation{Rel: cimi.RelDelete, Href: d.ID})
	}
	return d
}

// networkParams are the parameters of network Jobs.
type networkParams struct {
	NetworkID string `json:"networkId"`
}

func (s *Service) createNetwork(rq *api.Request) (api.Reply, error) {
	var body cimi.NetworkCreate
	if err := rq.Decode(&body, "NetworkCreate"); err != nil {
		return api.Reply{}, err
	}
	if body.NetworkTemplate == nil {
		return api.Reply{}, errdefs.Invalidf("networkTemplate is required, by reference {\"href\": ...} or by value {\"networkConfig\": ...}")
	}
	id := job.NewID()
	path := networkPath(id)
	var rec networkRecord
	params, _ := json.Marshal(networkParams{NetworkID: id})
	j, err := s.jobs.Submit(job.Record{Kind: "network.create", Action: cimi.RelAdd, Name: "create Network",
		Target: kindNetworks, Affected: []string{kindNetworks, path}, Locks: []string{path}, Params: params},
		func(tx *store.Tx) error {
			spec, err := s.templateSpec(tx, rq.URLs, body.NetworkTemplate)
			if err != nil {
				return err
			}
			rec, err = s.newNetwork(tx, id, spec, s.hostSubnets())
			if err != nil {
				return err
			}
			rec.meta = newMeta(id, body.Name, body.Description, body.Properties, s.now())
			return records.Put(tx, kindNetworks, id, rec)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, Body: s.networkDoc(rq.URLs, rec), Location: path, JobID: j.ID}, nil
}

// takenBy lists the subnets the host's others and our other networks use.
func takenBy(tx *store.Tx, except string, host []takenSubnet) ([]takenSubnet, error) {
	nets, err := records.List[networkRecord](tx, kindNetworks)
	if err != nil {
		return nil, err
	}
	taken := append([]takenSubnet(nil), host...)
	for _, n := range nets {
		if n.ID == except {
			continue
		}
		if p, err := netip.ParsePrefix(n.Subnet); err == nil {
			taken = append(taken, takenSubnet{Prefix: p, Owner: "Network " + n.ID})
		}
	}
	return taken, nil
}

// newNetwork resolves a spec into a Network record: its forward mode, a
// subnet that overlaps no other network (chosen free when not given) and
// its DHCP range.
func (s *Service) newNetwork(tx *store.Tx, id string, spec netSpec, host []takenSubnet) (networkRecord, error) {
	spec = resolveMode(spec)
	taken, err := takenBy(tx, id, host)
	if err != nil {
		return networkRecord{}, err
	}
	chosen := spec.Subnet == ""
	if chosen {
		p, err := chooseSubnet(taken)
		if err != nil {
			return networkRecord{}, err
		}
		spec.Subnet = p.String()
	}
	a, err := planAddressing(spec.Subnet, spec.DHCPRange)
	if err != nil {
		return networkRecord{}, err
	}
	if t, busy := overlapping(a.Subnet, taken); busy {
		return networkRecord{}, errdefs.Conflictf("subnet %s overlaps %s of %s", a.Subnet, t.Prefix, t.Owner)
	}
	spec.Subnet, spec.DHCPRange = a.Subnet.String(), a.rangeString()
	return networkRecord{netSpec: spec, State: cimi.NetworkCreating, LibvirtName: s.libvirtName(id), SubnetChosen: chosen}, nil
}

// maxSubnetChoices bounds how often a create moves a Network whose chosen
// subnet was taken meanwhile (by another agent on the host, say).
const maxSubnetChoices = 5

// chooseAgain moves a Network being created to another free subnet, on a
// fresh reading of the host's networks.
func (s *Service) chooseAgain(ctx context.Context, n networkRecord) (networkRecord, error) {
	nets, err := s.drv.ListNetworks(ctx)
	if err != nil {
		return n, err
	}
	s.observe(nets)
	err = s.db.Update(func(tx *store.Tx) error {
		cur, err := records.Get[networkRecord](tx, kindNetworks, n.ID, "Network")
		if err != nil {
			return err
		}
		taken, err := takenBy(tx, n.ID, s.hostSubnets())
		if err != nil {
			return err
		}
		p, err := chooseSubnet(taken)
		if err != nil {
			return err
		}
		a, err := planAddressing(p.String(), "")
		if err != nil {
			return err
		}
		cur.Subnet, cur.DHCPRange, cur.Updated = a.Subnet.String(), a.rangeString(), s.now()
		n = cur
		return records.Put(tx, kindNetworks, n.ID, cur)
	})
	return n, err
}

// hypervisorSpec is the libvirt definition of a Network, with the static
// addresses reserved on it.
func (s *Service) hypervisorSpec(tx *store.Tx, n networkRecord) (hypervisor.NetworkSpec, error) {
	a, err := planAddressing(n.Subnet, n.DHCPRange)
	if err != nil {
		return hypervisor.NetworkSpec{}, fmt.Errorf("network %s: %w", n.ID, err)
	}
	spec := hypervisor.NetworkSpec{
		Name: n.LibvirtName, Forward: n.ForwardMode, Subnet: a.Subnet.String(),
		DHCPStart: a.First.String(), DHCPEnd: a.Last.String(), MTU: n.MTU,
		Metadata: hypervisor.NetworkMetadata{Instance: s.cfg.Instance, NetworkID: n.ID},
	}
	addrs, err := records.List[addressRecord](tx, kindAddresses)
	if err != nil {
		return spec, err
	}
	for _, ad := range addrs {
		if ad.NetworkID == n.ID && ad.Allocation == cimi.AllocationStatic && ad.MAC != "" {
			spec.DHCPHosts = append(spec.DHCPHosts, hypervisor.DHCPHost{MAC: ad.MAC, IP: ad.IP, Name: ad.Hostname})
		}
	}
	return spec, nil
}

// defineNetwork defines and starts the libvirt network of n after checking,
// on a fresh list, that no other network took its subnet meanwhile.
func (s *Service) defineNetwork(ctx context.Context, n networkRecord) error {
	nets, err := s.drv.ListNetworks(ctx)
	if err != nil {
		return err
	}
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return fmt.Errorf("network %s: subnet %q: %w", n.ID, n.Subnet, err)
	}
	for _, o := range nets {
		if o.Name == n.LibvirtName {
			continue
		}
		for _, sub := range o.Subnets {
			if q, err := netip.ParsePrefix(sub); err == nil && q.Overlaps(p) {
				return errdefs.Conflictf("subnet %s overlaps %s of libvirt network %s", p, q, o.Name)
			}
		}
	}
	var spec hypervisor.NetworkSpec
	err = s.db.View(func(tx *store.Tx) (err error) {
		spec, err = s.hypervisorSpec(tx, n)
		return err
	})
	if err != nil {
		return err
	}
	return s.drv.DefineNetwork(ctx, spec)
}

func (s *Service) runCreateNetwork(ctx context.Context, x *job.Exec) error {
	var p networkParams
	if err := x.Params(&p); err != nil {
		return err
	}
	n, err := load[networkRecord](s.db, kindNetworks, p.NetworkID, "Network")
	if err != nil {
		return err
	}
	x.OnUndo("remove the Network", func(ctx context.Context) error { return s.removeNetwork(ctx, n) })
	for choice := 1; ; choice++ {
		err := s.defineNetwork(ctx, n)
		if err == nil {
			break
		}
		if !n.SubnetChosen || !errdefs.Is(err, errdefs.Conflict) || choice == maxSubnetChoices {
			return err
		}
		x.Log().Info("the chosen subnet was taken meanwhile: choosing another", "network", n.LibvirtName, "err", err)
		if n, err = s.chooseAgain(ctx, n); err != nil {
			return err
		}
	}
	x.Progress(80)
	if err := s.markStarted(ctx, n.ID); err != nil {
		return err
	}
	x.Commit()
	x.SetMessage(fmt.Sprintf("Network %s created on %s (%s)", n.LibvirtName, n.Subnet, n.ForwardMode))
	return nil
}

// markStarted records the state and bridge libvirt shows for a Network.
func (s *Service) markStarted(ctx context.Context, id string) error {
	nets, err := s.drv.ListNetworks(ctx)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *store.Tx) error {
		n, err := records.Get[networkRecord](tx, kindNetworks, id, "Network")
		if err != nil {
			return err
		}
		n.State, n.StatusMessage = cimi.NetworkStarted, ""
		for _, o := range nets {
			if o.Name == n.LibvirtName {
				n.Bridge = o.Bridge
				if !o.Active {
					n.State = cimi.NetworkStopped
				}
			}
		}
		return records.Put(tx, kindNetworks, id, n)
	})
}

func (s *Service) cleanupNetwork(ctx context.Context, rec job.Record) error {
	var p networkParams
	if err := json.Unmarshal(rec.Params, &p); err != nil {
		return err
	}
	n, err := load[networkRecord](s.db, kindNetworks, p.NetworkID, "Network")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.removeNetwork(ctx, n)
}

// removeNetwork undefines the libvirt network, then forgets the addresses
// on it and the record: the record goes last.
func (s *Service) removeNetwork(ctx context.Context, n networkRecord) error {
	if err := s.drv.UndefineNetwork(ctx, n.LibvirtName); err != nil {
		return err
	}
	return s.db.Update(func(tx *store.Tx) error {
		addrs, err := records.List[addressRecord](tx, kindAddresses)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.NetworkID == n.ID {
				if err := tx.Delete(kindAddresses, a.ID); err != nil {
					return err
				}
			}
		}
		return tx.Delete(kindNetworks, n.ID)
	})
}

func (s *Service) deleteNetwork(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := networkPath(id)
	params, _ := json.Marshal(networkParams{NetworkID: id})
	j, err := s.jobs.Submit(job.Record{Kind: "network.delete", Action: cimi.RelDelete, Name: "delete Network",
		Target: path, Locks: []string{path}, Params: params},
		func(tx *store.Tx) error {
			n, err := records.Get[networkRecord](tx, kindNetworks, id, "Network")
			if err != nil {
				return err
			}
			if n.Default {
				return errdefs.Conflictf("Network %s is the agent's default network and cannot be deleted", id)
			}
			if n.State == cimi.NetworkDeleting {
				return errdefs.Conflictf("Network %s is already being deleted", id)
			}
			if n.State == cimi.NetworkCreating {
				return errdefs.Conflictf("Network %s is still being created; delete it when its Job has ended", id)
			}
			if err := networkInUse(tx, id); err != nil {
				return err
			}
			n.State = cimi.NetworkDeleting
			return records.Put(tx, kindNetworks, id, n)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// networkInUse refuses a delete while an interface is on the network.
func networkInUse(tx *store.Tx, id string) error {
	ports, err := records.List[portRecord](tx, kindPorts)
	if err != nil {
		return err
	}
	var users []string
	for _, p := range ports {
		if p.NetworkID == id {
			users = append(users, "Machine "+p.MachineID+" ("+p.MAC+")")
		}
	}
	if len(users) > 0 {
		return errdefs.Conflictf("Network %s is in use by %s: remove those interfaces or Machines first", id, strings.Join(users, ", "))
	}
	return nil
}

func (s *Service) runDeleteNetwork(ctx context.Context, x *job.Exec) error {
	var p networkParams
	if err := x.Params(&p); err != nil {
		return err
	}
	n, err := load[networkRecord](s.db, kindNetworks, p.NetworkID, "Network")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil // a resumed delete that had finished
	}
	if err != nil {
		return err
	}
	if err := s.removeNetwork(ctx, n); err != nil {
		s.setNetworkState(n.ID, cimi.NetworkError, "delete failed: "+err.Error())
		return err
	}
	x.SetMessage("Network " + n.LibvirtName + " deleted")
	return nil
}

func (s *Service) setNetworkState(id, state, msg string) {
	err := s.db.Update(func(tx *store.Tx) error {
		n, err := records.Get[networkRecord](tx, kindNetworks, id, "Network")
		if err != nil {
			return err
		}
		if n.State == state && n.StatusMessage == msg {
			return nil
		}
		n.State, n.StatusMessage = state, msg
		return records.Put(tx, kindNetworks, id, n)
	})
	if err != nil && !errdefs.Is(err, errdefs.NotFound) {
		s.log.Error("record Network state", "network", id, "err", err)
	}
}

// adopt gives a record to every libvirt network that carries this
// instance's mark but has none, and reports foreign networks.
func (s *Service) adopt(nets []hypervisor.NetworkStatus) error {
	foreign := 0
	return s.db.Update(func(tx *store.Tx) error {
		for _, o := range nets {
			if o.Metadata == nil || o.Metadata.Instance != s.cfg.Instance {
				foreign++
				s.log.Debug("foreign network, not managed by this instance", "network", o.Name)
				continue
			}
			id := o.Metadata.NetworkID
			if _, err := tx.Get(kindNetworks, id); err == nil {
				continue
			}
			if id == "" || o.Name != s.libvirtName(id) || len(o.Subnets) == 0 {
				s.log.Warn("network carries this instance's mark but cannot be adopted: left untouched", "network", o.Name)
				continue
			}
			now := s.now()
			n := networkRecord{meta: meta{ID: id, Name: o.Name, Created: now, Updated: now},
				netSpec:     resolveMode(netSpec{ForwardMode: o.Forward, Subnet: o.Subnets[0]}),
				State:       cimi.NetworkStopped,
				LibvirtName: o.Name, Bridge: o.Bridge, Default: id == defaultNetworkID}
			if o.Active {
				n.State = cimi.NetworkStarted
			}
			if a, err := planAddressing(n.Subnet, ""); err == nil {
				n.DHCPRange = a.rangeString()
			}
			s.log.Warn("adopting a network of this instance that had no record", "network", o.Name, "subnet", n.Subnet)
			if err := records.Put(tx, kindNetworks, id, n); err != nil {
				return err
			}
		}
		if foreign > 0 {
			s.log.Info("foreign networks on this host are left alone", "count", foreign)
		}
		return nil
	})
}

// observe records what libvirt shows of our networks and remembers the
// subnets others use.
func (s *Service) observe(nets []hypervisor.NetworkStatus) {
	byName := map[string]hypervisor.NetworkStatus{}
	var host []takenSubnet
	ours := map[netip.Prefix]bool{}
	for _, o := range nets {
		byName[o.Name] = o
		mine := o.Metadata != nil && o.Metadata.Instance == s.cfg.Instance
		for _, sub := range o.Subnets {
			p, err := netip.ParsePrefix(sub)
			if err != nil {
				continue
			}
			if mine {
				ours[p.Masked()] = true
				continue
			}
			host = append(host, takenSubnet{Prefix: p.Masked(), Owner: "libvirt network " + o.Name})
		}
	}
	if ifaces, err := s.hostInterfaces(); err == nil {
		for _, t := range ifaces {
			if !ours[t.Prefix] {
				host = append(host, t)
			}
		}
	}
	s.mu.Lock()
	s.host = host
	s.mu.Unlock()

	recs, err := loadAll[networkRecord](s.db, kindNetworks)
	if err != nil {
		s.log.Error("observe networks", "err", err)
		return
	}
	for _, n := range recs {
		if n.State == cimi.NetworkCreating || n.State == cimi.NetworkDeleting || s.jobs.Pending(networkPath(n.ID)) {
			continue
		}
		o, found := byName[n.LibvirtName]
		state, msg := cimi.NetworkStarted, ""
		switch {
		case !found:
			state, msg = cimi.NetworkError, "its libvirt network "+n.LibvirtName+" no longer exists (removed outside the API)"
		case !o.Active:
			state = cimi.NetworkStopped
		}
		if state == n.State && msg == n.StatusMessage && (!found || o.Bridge == n.Bridge) {
			continue
		}
		if state != n.State {
			s.log.Info("Network changed outside the API", "network", n.ID, "from", n.State, "to", state)
		}
		err := s.db.Update(func(tx *store.Tx) error {
			cur, err := records.Get[networkRecord](tx, kindNetworks, n.ID, "Network")
			if err != nil {
				return err
			}
			cur.State, cur.StatusMessage = state, msg
			if found {
				cur.Bridge = o.Bridge
			}
			return records.Put(tx, kindNetworks, n.ID, cur)
		})
		if err != nil && !errdefs.Is(err, errdefs.NotFound) {
			s.log.Error("record observed Network state", "network", n.ID, "err", err)
		}
	}
}

// natPossible tells whether NAT networks can work here, and why not.
func natPossible() (bool, string) {
	if !haveCommand("dnsmasq") {
		return false, "dnsmasq is not installed (Debian package dnsmasq-base)"
	}
	if !haveCommand("iptables") && !haveCommand("nft") {
		return false, "neither iptables nor nft is installed, so libvirt cannot set up NAT"
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) != "1" {
		f, err := os.OpenFile("/proc/sys/net/ipv4/ip_forward", os.O_WRONLY, 0)
		if err != nil {
			return false, "IP forwarding is off and cannot be turned on (" + err.Error() + ")"
		}
		f.Close()
	}
	return true, ""
}

func haveCommand(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if fi, err := os.Stat(dir + "/" + name); err == nil && !fi.IsDir() {
			return true
		}
	}
	return false
}

// ensureDefault makes the agent's default network exist: NAT where the
// host allows it, isolated otherwise, on a /24 nothing else on the host
// uses. A failure is logged and recorded; the agent serves anyway.
func (s *Service) ensureDefault(ctx context.Context) {
	n, err := load[networkRecord](s.db, kindNetworks, defaultNetworkID, "Network")
	switch {
	case err == nil && (n.State == cimi.NetworkStarted || n.State == cimi.NetworkStopped):
		return
	case err == nil:
		s.log.Warn("the default network is "+n.State+": defining it again", "network", n.LibvirtName, "reason", n.StatusMessage)
		if derr := s.defineNetwork(ctx, n); derr != nil {
			s.log.Error("the default network cannot be defined again", "network", n.LibvirtName, "err", derr)
			s.setNetworkState(n.ID, cimi.NetworkError, "cannot be defined again: "+derr.Error())
			return
		}
		if err := s.markStarted(ctx, n.ID); err != nil {
			s.log.Error("record default network state", "err", err)
		}
		return
	case !errdefs.Is(err, errdefs.NotFound):
		s.log.Error("read the default network", "err", err)
		return
	}
	modes := []string{forwardNAT, forwardIsolated}
	if ok, why := natPossible(); !ok {
		s.log.Warn("NAT networks cannot work on this host: the default network is isolated", "reason", why)
		modes = []string{forwardIsolated}
	}
	var tried []takenSubnet
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		nets, err := s.drv.ListNetworks(ctx)
		if err != nil {
			s.log.Error("default network: list networks", "err", err)
			return
		}
		s.observe(nets)
		var rec networkRecord
		for _, mode := range modes {
			rec, err = s.writeDefault(mode, append(s.hostSubnets(), tried...))
			if err != nil {
				s.log.Error("default network", "err", err)
				return
			}
			if lastErr = s.defineNetwork(ctx, rec); lastErr == nil {
				if err := s.markStarted(ctx, rec.ID); err != nil {
					s.log.Error("record default network state", "err", err)
				}
				s.recordDefault(rec)
				return
			}
			s.log.Warn("default network: define failed", "mode", mode, "subnet", rec.Subnet, "err", lastErr)
			if err := s.drv.UndefineNetwork(ctx, rec.LibvirtName); err != nil {
				s.log.Warn("default network: undefine after a failed define", "err", err)
			}
		}
		// Another network may have taken the subnet meanwhile: try the next.
		if p, err := netip.ParsePrefix(rec.Subnet); err == nil {
			tried = append(tried, takenSubnet{Prefix: p, Owner: "a failed attempt"})
		}
	}
	s.log.Error("the default network could not be created", "err", lastErr)
	s.setNetworkState(defaultNetworkID, cimi.NetworkError, fmt.Sprintf("could not be created: %v", lastErr))
}

// writeDefault writes (or rewrites) the default network's record, with a
// free subnet, before it is defined.
func (s *Service) writeDefault(mode string, host []takenSubnet) (networkRecord, error) {
	var rec networkRecord
	err := s.db.Update(func(tx *store.Tx) error {
		n, err := s.newNetwork(tx, defaultNetworkID, netSpec{ForwardMode: mode}, host)
		if err != nil {
			return err
		}
		now := s.now()
		n.meta = meta{ID: defaultNetworkID, Name: "default", Description: "the network every Machine is on unless its template names others", Created: now, Updated: now}
		n.Default = true
		rec = n
		return records.Put(tx, kindNetworks, defaultNetworkID, n)
	})
	return rec, err
}

// recordDefault keeps a finished Job telling that the default network was
// created.
func (s *Service) recordDefault(n networkRecord) {
	path := networkPath(n.ID)
	_, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create the default Network", Target: kindNetworks,
		Affected:      []string{kindNetworks, path},
		StatusMessage: fmt.Sprintf("default network %s created on %s (%s)", n.LibvirtName, n.Subnet, n.ForwardMode)}, nil)
	if err != nil {
		s.log.Warn("record the default network's Job", "err", err)
	}
	s.log.Info("default network created", "network", n.LibvirtName, "subnet", n.Subnet, "forward", n.ForwardMode)
}

// waitStarted waits until a Network is STARTED, failing when it is in
// ERROR, being deleted or gone.
func (s *Service) waitStarted(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NetworkWait)
	defer cancel()
	for {
		n, err := load[networkRecord](s.db, kindNetworks, id, "Network")
		if err != nil {
			return err
		}
		switch n.State {
		case cimi.NetworkStarted:
			return nil
		case cimi.NetworkStopped:
			return fmt.Errorf("Network %s is stopped", id)
		case cimi.NetworkError, cimi.NetworkDeleting:
			return fmt.Errorf("Network %s is %s: %s", id, n.State, n.StatusMessage)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("Network %s is still %s after %s", id, n.State, s.cfg.NetworkWait)
			}
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
