package fake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"cimid/hypervisor"
)

// network is one fake virtual network. Unlike libvirt, a changed spec of a
// running network applies at once.
type network struct {
	spec      hypervisor.NetworkSpec
	bridge    string
	active    bool
	autostart bool
	leases    []hypervisor.Lease
}

// NetworkInfo is what a test can inspect of a fake network.
type NetworkInfo struct {
	Spec      hypervisor.NetworkSpec // DHCPHosts include those added later
	Bridge    string
	Active    bool
	Autostart bool
}

// Network returns what the fake knows about network name.
func (d *Driver) Network(name string) (NetworkInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nw, ok := d.networks[name]
	if !ok {
		return NetworkInfo{}, false
	}
	spec := nw.spec
	spec.DHCPHosts = slices.Clone(spec.DHCPHosts)
	return NetworkInfo{Spec: spec, Bridge: nw.bridge, Active: nw.active, Autostart: nw.autostart}, true
}

// SetLeases sets what DHCPLeases reports for network name from now on.
func (d *Driver) SetLeases(name string, leases []hypervisor.Lease) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nw, ok := d.networks[name]
	if !ok {
		return notFound("no network " + name)
	}
	nw.leases = slices.Clone(leases)
	return nil
}

// StopNetwork simulates a network stopped behind the agent's back.
func (d *Driver) StopNetwork(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nw, ok := d.networks[name]
	if !ok {
		return notFound("no network " + name)
	}
	nw.active = false
	return nil
}

// DefineNetwork defines, autostarts and starts the network. Without a
// bridge name one called virbr-fake<N> is chosen, and kept on
// redefinition.
func (d *Driver) DefineNetwork(ctx context.Context, spec hypervisor.NetworkSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "DefineNetwork"); err != nil {
		return err
	}
	if err := validateNetwork(spec); err != nil {
		return fmt.Errorf("define network %s: %w", spec.Name, err)
	}
	nw, ok := d.networks[spec.Name]
	if !ok {
		nw = &network{}
		d.networks[spec.Name] = nw
	}
	bridge := spec.Bridge
	if bridge == "" {
		bridge = nw.bridge
	}
	if bridge == "" {
		d.bridgeSeq++
		bridge = fmt.Sprintf("virbr-fake%d", d.bridgeSeq)
	}
	spec.DHCPHosts = slices.Clone(spec.DHCPHosts)
	nw.spec, nw.bridge, nw.active, nw.autostart = spec, bridge, true, true
	return nil
}

func validateNetwork(spec hypervisor.NetworkSpec) error {
	var errs []error
	if spec.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if spec.Forward != "nat" && spec.Forward != "isolated" {
		errs = append(errs, fmt.Errorf("forward mode %q is neither nat nor isolated", spec.Forward))
	}
	subnet, err := netip.ParsePrefix(spec.Subnet)
	if err != nil || !subnet.Addr().Is4() || subnet != subnet.Masked() || subnet.Bits() > 30 {
		errs = append(errs, fmt.Errorf("subnet %q is not an IPv4 network of at least 4 addresses", spec.Subnet))
	}
	if (spec.DHCPStart == "") != (spec.DHCPEnd == "") {
		errs = append(errs, errors.New("a DHCP range needs both a start and an end"))
	}
	for _, a := range []string{spec.DHCPStart, spec.DHCPEnd} {
		if ip, err := netip.ParseAddr(a); a != "" && (err != nil || !subnet.Contains(ip)) {
			errs = append(errs, fmt.Errorf("DHCP address %q is not in %s", a, spec.Subnet))
		}
	}
	for _, h := range spec.DHCPHosts {
		errs = append(errs, validateHost(h))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid network spec: %w", err)
	}
	return nil
}

func validateHost(h hypervisor.DHCPHost) error {
	if _, err := net.ParseMAC(h.MAC); err != nil {
		return fmt.Errorf("DHCP host: invalid MAC address %q", h.MAC)
	}
	if ip, err := netip.ParseAddr(h.IP); err != nil || !ip.Is4() {
		return fmt.Errorf("DHCP host %s: invalid IPv4 address %q", h.MAC, h.IP)
	}
	return nil
}

// UndefineNetwork stops and removes the network; a missing one is not an
// error.
func (d *Driver) UndefineNetwork(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "UndefineNetwork"); err != nil {
		return err
	}
	delete(d.networks, name)
	return nil
}

// ListNetworks lists the networks sorted by name.
func (d *Driver) ListNetworks(ctx context.Context) ([]hypervisor.NetworkStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "ListNetworks"); err != nil {
		return nil, err
	}
	list := make([]hypervisor.NetworkStatus, 0, len(d.networks))
	for _, nw := range d.networks {
		st := hypervisor.NetworkStatus{
			Name:    nw.spec.Name,
			Bridge:  nw.bridge,
			Active:  nw.active,
			Forward: nw.spec.Forward,
			Subnets: []string{nw.spec.Subnet},
		}
		if nw.spec.Metadata != (hypervisor.NetworkMetadata{}) {
			md := nw.spec.Metadata
			st.Metadata = &md
		}
		list = append(list, st)
	}
	slices.SortFunc(list, func(a, b hypervisor.NetworkStatus) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// withNetwork runs fn on network name after the usual checks.
func (d *Driver) withNetwork(ctx context.Context, method, what, name string, fn func(*network) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, method); err != nil {
		return err
	}
	nw, ok := d.networks[name]
	var err error
	if !ok {
		err = notFound("no network " + name)
	} else {
		err = fn(nw)
	}
	if err != nil {
		return fmt.Errorf("%s network %s: %w", what, name, err)
	}
	return nil
}

// DHCPLeases returns what SetLeases last set.
func (d *Driver) DHCPLeases(ctx context.Context, name string) ([]hypervisor.Lease, error) {
	var leases []hypervisor.Lease
	err := d.withNetwork(ctx, "DHCPLeases", "DHCP leases of", name, func(nw *network) error {
		leases = slices.Clone(nw.leases)
		return nil
	})
	return leases, err
}

// AddDHCPHost adds a reservation; an identical one is left as it is, one
// for the same MAC with another address or name is an error.
func (d *Driver) AddDHCPHost(ctx context.Context, name string, host hypervisor.DHCPHost) error {
	return d.withNetwork(ctx, "AddDHCPHost", "add DHCP host "+host.MAC+" to", name, func(nw *network) error {
		if err := validateHost(host); err != nil {
			return err
		}
		if i := hostIndex(nw.spec.DHCPHosts, host.MAC); i >= 0 {
			old := nw.spec.DHCPHosts[i]
			if old.IP != host.IP || old.Name != host.Name {
				return fmt.Errorf("MAC %s already has address %s (name %q)", host.MAC, old.IP, old.Name)
			}
			return nil
		}
		nw.spec.DHCPHosts = append(nw.spec.DHCPHosts, host)
		return nil
	})
}

// RemoveDHCPHost removes the reservation for host.MAC; a missing one is not
// an error.
func (d *Driver) RemoveDHCPHost(ctx context.Context, name string, host hypervisor.DHCPHost) error {
	return d.withNetwork(ctx, "RemoveDHCPHost", "remove DHCP host "+host.MAC+" from", name, func(nw *network) error {
		if _, err := net.ParseMAC(host.MAC); err != nil {
			return fmt.Errorf("invalid MAC address %q", host.MAC)
		}
		if i := hostIndex(nw.spec.DHCPHosts, host.MAC); i >= 0 {
			nw.spec.DHCPHosts = slices.Delete(nw.spec.DHCPHosts, i, i+1)
		}
		return nil
	})
}

func hostIndex(hosts []hypervisor.DHCPHost, mac string) int {
	want, err := net.ParseMAC(mac)
	if err != nil {
		return -1
	}
	return slices.IndexFunc(hosts, func(h hypervisor.DHCPHost) bool {
		hw, err := net.ParseMAC(h.MAC)
		return err == nil && slices.Equal(hw, want)
	})
}
