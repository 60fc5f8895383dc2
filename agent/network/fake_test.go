package network

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"cimid/hypervisor"
)

// fakeDriver is an in-memory Driver: networks with their DHCP hosts and
// leases, and domains with their NICs.
type fakeDriver struct {
	mu        sync.Mutex
	nets      map[string]*fakeNet
	domains   map[string]*fakeDomain
	failNAT   bool // DefineNetwork refuses forward mode nat
	calls     []string
	leaseErrs int
}

type fakeNet struct {
	spec   hypervisor.NetworkSpec
	active bool
	leases []hypervisor.Lease
	md     *hypervisor.NetworkMetadata
}

type fakeDomain struct {
	state hypervisor.State
	nics  []hypervisor.NIC
	live  []hypervisor.NIC
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{nets: map[string]*fakeNet{}, domains: map[string]*fakeDomain{}}
}

func (f *fakeDriver) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// addForeign adds a network that is not ours.
func (f *fakeDriver) addForeign(name, subnet string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nets[name] = &fakeNet{spec: hypervisor.NetworkSpec{Name: name, Forward: "nat", Subnet: subnet}, active: true}
}

func (f *fakeDriver) DefineNetwork(_ context.Context, spec hypervisor.NetworkSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("define %s %s %s", spec.Name, spec.Forward, spec.Subnet)
	if spec.Forward == "nat" && f.failNAT {
		return fmt.Errorf("define network %s: NAT is not possible here", spec.Name)
	}
	p := netip.MustParsePrefix(spec.Subnet)
	for name, n := range f.nets {
		if name != spec.Name && netip.MustParsePrefix(n.spec.Subnet).Overlaps(p) && n.active {
			return fmt.Errorf("define network %s: network is already in use by interface of %s", spec.Name, name)
		}
	}
	md := spec.Metadata
	old := f.nets[spec.Name]
	n := &fakeNet{spec: spec, active: true, md: &md}
	if old != nil {
		n.leases = old.leases
	}
	f.nets[spec.Name] = n
	return nil
}

func (f *fakeDriver) UndefineNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("undefine %s", name)
	delete(f.nets, name)
	return nil
}

func (f *fakeDriver) ListNetworks(context.Context) ([]hypervisor.NetworkStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []hypervisor.NetworkStatus
	for name, n := range f.nets {
		out = append(out, hypervisor.NetworkStatus{Name: name, Bridge: "virbr-" + name, Active: n.active,
			Forward: n.spec.Forward, Subnets: []string{n.spec.Subnet}, Metadata: n.md})
	}
	return out, nil
}

func (f *fakeDriver) DHCPLeases(_ context.Context, network string) ([]hypervisor.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nets[network]
	if !ok {
		return nil, fmt.Errorf("network %s: %w", network, hypervisor.ErrNotFound)
	}
	return append([]hypervisor.Lease(nil), n.leases...), nil
}

func (f *fakeDriver) setLeases(network string, leases ...hypervisor.Lease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nets[network].leases = leases
}

func (f *fakeDriver) AddDHCPHost(_ context.Context, network string, h hypervisor.DHCPHost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nets[network]
	if !ok {
		return fmt.Errorf("network %s: %w", network, hypervisor.ErrNotFound)
	}
	for _, x := range n.spec.DHCPHosts {
		if x.MAC == h.MAC {
			if x.IP != h.IP {
				return fmt.Errorf("MAC %s already has %s", h.MAC, x.IP)
			}
			return nil
		}
	}
	n.spec.DHCPHosts = append(n.spec.DHCPHosts, h)
	f.record("add host %s %s %s", network, h.MAC, h.IP)
	return nil
}

func (f *fakeDriver) RemoveDHCPHost(_ context.Context, network string, h hypervisor.DHCPHost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nets[network]
	if !ok {
		return fmt.Errorf("network %s: %w", network, hypervisor.ErrNotFound)
	}
	var keep []hypervisor.DHCPHost
	for _, x := range n.spec.DHCPHosts {
		if x.MAC != h.MAC {
			keep = append(keep, x)
		}
	}
	n.spec.DHCPHosts = keep
	f.record("remove host %s %s", network, h.MAC)
	return nil
}

func (f *fakeDriver) dhcpHosts(network string) []hypervisor.DHCPHost {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nets[network]; ok {
		return append([]hypervisor.DHCPHost(nil), n.spec.DHCPHosts...)
	}
	return nil
}

func (f *fakeDriver) addDomain(name string, state hypervisor.State, nics ...hypervisor.NIC) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDomain{state: state, nics: nics}
	if state == hypervisor.StateRunning {
		d.live = append([]hypervisor.NIC(nil), nics...)
	}
	f.domains[name] = d
}

func (f *fakeDriver) AttachNIC(_ context.Context, domain string, nic hypervisor.NIC, live bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.domains[domain]
	if !ok {
		return fmt.Errorf("domain %s: %w", domain, hypervisor.ErrNotFound)
	}
	d.nics = append(d.nics, nic)
	if live {
		d.live = append(d.live, nic)
	}
	f.record("attach %s %s live=%v", domain, nic.MAC, live)
	return nil
}

func (f *fakeDriver) DetachNIC(_ context.Context, domain, mac string, live bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.domains[domain]
	if !ok {
		return fmt.Errorf("domain %s: %w", domain, hypervisor.ErrNotFound)
	}
	drop := func(list []hypervisor.NIC) []hypervisor.NIC {
		var out []hypervisor.NIC
		for _, n := range list {
			if n.MAC != mac {
				out = append(out, n)
			}
		}
		return out
	}
	d.nics = drop(d.nics)
	if live {
		d.live = drop(d.live)
	}
	f.record("detach %s %s live=%v", domain, mac, live)
	return nil
}

func (f *fakeDriver) DomainNICs(_ context.Context, domain string) ([]hypervisor.NIC, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.domains[domain]
	if !ok {
		return nil, fmt.Errorf("domain %s: %w", domain, hypervisor.ErrNotFound)
	}
	return append([]hypervisor.NIC(nil), d.nics...), nil
}

func (f *fakeDriver) DomainStatus(_ context.Context, name string) (hypervisor.DomainStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.domains[name]
	if !ok {
		return hypervisor.DomainStatus{}, fmt.Errorf("domain %s: %w", name, hypervisor.ErrNotFound)
	}
	return hypervisor.DomainStatus{Name: name, State: d.state}, nil
}
