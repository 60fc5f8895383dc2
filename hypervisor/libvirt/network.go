package libvirt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// DefineNetwork defines spec as a persistent network, marks it autostarted
// and starts it when it is inactive. Redefining an existing network keeps
// its UUID and, when spec.Bridge is empty, the bridge it has. An active
// network keeps running on the definition it was started with: a changed
// spec takes effect at its next start.
func (d *Driver) DefineNetwork(ctx context.Context, spec hypervisor.NetworkSpec) error {
	p, err := planNetwork(spec)
	if err == nil {
		err = d.call(ctx, func(c *libvirt.Connect) error { return defineNetwork(c, p) })
	}
	if err != nil {
		return fmt.Errorf("define network %s: %w", spec.Name, err)
	}
	return nil
}

func defineNetwork(c *libvirt.Connect, p plannedNetwork) error {
	old, err := networkDefinition(c, p.spec.Name)
	if err != nil {
		return err
	}
	var uuid, bridge string
	if old != nil {
		uuid = old.UUID
		if old.Bridge != nil {
			bridge = old.Bridge.Name
		}
	}
	doc, err := networkXML(p, uuid, cmp.Or(p.spec.Bridge, bridge))
	if err != nil {
		return err
	}
	var nw *libvirt.Network
	err = withFallback(
		func() (err error) {
			nw, err = c.NetworkDefineXMLFlags(doc, libvirt.NETWORK_DEFINE_VALIDATE)
			return err
		},
		func() (err error) { nw, err = c.NetworkDefineXML(doc); return err })
	if err != nil {
		return fmt.Errorf("define: %w", classify(err))
	}
	defer nw.Free()
	if on, err := nw.GetAutostart(); err != nil {
		return classify(err)
	} else if !on {
		if err := nw.SetAutostart(true); err != nil {
			return fmt.Errorf("set autostart: %w", classify(err))
		}
	}
	active, err := nw.IsActive()
	if err != nil || active {
		return classify(err)
	}
	if err := nw.Create(); err != nil {
		return fmt.Errorf("start: %w", classify(err))
	}
	return nil
}

// networkDefinition returns the persistent definition of network name, or
// nil when there is no such network.
func networkDefinition(c *libvirt.Connect, name string) (*libvirtxml.Network, error) {
	nw, err := c.LookupNetworkByName(name)
	if hasCode(err, libvirt.ERR_NO_NETWORK) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	defer nw.Free()
	def, err := readNetwork(nw, libvirt.NETWORK_XML_INACTIVE)
	if hasCode(err, libvirt.ERR_NO_NETWORK) {
		return nil, nil
	}
	return def, err
}

// readNetwork parses the network XML of nw selected by flags. Drivers that
// keep a single definition (the test driver) refuse NETWORK_XML_INACTIVE;
// the one they have is then read.
func readNetwork(nw *libvirt.Network, flags libvirt.NetworkXMLFlags) (*libvirtxml.Network, error) {
	var doc string
	err := withFallback(
		func() (err error) { doc, err = nw.GetXMLDesc(flags); return err },
		func() (err error) { doc, err = nw.GetXMLDesc(0); return err })
	if err != nil {
		return nil, classify(err)
	}
	var def libvirtxml.Network
	if err := def.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("parse network XML: %w", err)
	}
	return &def, nil
}

// UndefineNetwork stops network name when it is active and removes its
// definition. A missing network is not an error.
func (d *Driver) UndefineNetwork(ctx context.Context, name string) error {
	err := d.withNetwork(ctx, name, func(nw *libvirt.Network) error {
		active, err := nw.IsActive()
		if err != nil {
			return err
		}
		if active {
			if err := nw.Destroy(); err != nil && !hasCode(err, libvirt.ERR_OPERATION_INVALID) {
				return fmt.Errorf("stop: %w", classify(err))
			}
		}
		// A transient network is gone once stopped.
		if err := nw.Undefine(); err != nil && !hasCode(err, libvirt.ERR_NO_NETWORK) {
			return classify(err)
		}
		return nil
	})
	if hasCode(err, libvirt.ERR_NO_NETWORK) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("undefine network %s: %w", name, err)
	}
	return nil
}

// ListNetworks lists every network on the host, sorted by name, as it runs
// (active networks) or as it is defined (inactive ones).
func (d *Driver) ListNetworks(ctx context.Context) ([]hypervisor.NetworkStatus, error) {
	var list []hypervisor.NetworkStatus
	err := d.call(ctx, func(c *libvirt.Connect) error {
		nets, err := c.ListAllNetworks(0)
		if err != nil {
			return err
		}
		defer freeNetworks(nets)
		list = make([]hypervisor.NetworkStatus, 0, len(nets))
		for i := range nets {
			st, err := describeNetwork(&nets[i])
			if hasCode(err, libvirt.ERR_NO_NETWORK) {
				continue // removed meanwhile
			}
			if err != nil {
				return err
			}
			list = append(list, st)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	slices.SortFunc(list, func(a, b hypervisor.NetworkStatus) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

func describeNetwork(nw *libvirt.Network) (hypervisor.NetworkStatus, error) {
	active, err := nw.IsActive()
	if err != nil {
		return hypervisor.NetworkStatus{}, classify(err)
	}
	def, err := readNetwork(nw, 0)
	if err != nil {
		return hypervisor.NetworkStatus{}, err
	}
	st, err := networkStatus(def)
	if err != nil {
		return hypervisor.NetworkStatus{}, fmt.Errorf("network %s: %w", def.Name, err)
	}
	st.Active = active
	return st, nil
}

func freeNetworks(nets []libvirt.Network) {
	for i := range nets {
		_ = nets[i].Free()
	}
}

// DHCPLeases lists the leases the DHCP server of network has handed out
// and that have not expired.
func (d *Driver) DHCPLeases(ctx context.Context, network string) ([]hypervisor.Lease, error) {
	var leases []hypervisor.Lease
	err := d.withNetwork(ctx, network, func(nw *libvirt.Network) error {
		list, err := nw.GetDHCPLeases()
		if err != nil {
			return err
		}
		leases = make([]hypervisor.Lease, 0, len(list))
		for _, l := range list {
			leases = append(leases, hypervisor.Lease{
				MAC:      l.Mac,
				IP:       l.IPaddr,
				Prefix:   int(l.Prefix),
				Hostname: l.Hostname,
				Expiry:   l.ExpiryTime,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("DHCP leases of network %s: %w", network, err)
	}
	return leases, nil
}

// networkScope is one of the definitions of a network an update applies to.
type networkScope struct {
	update   libvirt.NetworkUpdateFlags
	xmlFlags libvirt.NetworkXMLFlags
}

var (
	networkConfig = networkScope{update: libvirt.NETWORK_UPDATE_AFFECT_CONFIG, xmlFlags: libvirt.NETWORK_XML_INACTIVE}
	networkLive   = networkScope{update: libvirt.NETWORK_UPDATE_AFFECT_LIVE}
)

// networkScopes returns the persistent definition of nw and, while it is
// active, the running one.
func networkScopes(nw *libvirt.Network) ([]networkScope, error) {
	persistent, err := nw.IsPersistent()
	if err != nil {
		return nil, classify(err)
	}
	active, err := nw.IsActive()
	if err != nil {
		return nil, classify(err)
	}
	var scopes []networkScope
	if persistent {
		scopes = append(scopes, networkConfig)
	}
	if active {
		scopes = append(scopes, networkLive)
	}
	return scopes, nil
}

// findDHCPHost returns the host entry for mac in def, or nil.
func findDHCPHost(def *libvirtxml.Network, mac net.HardwareAddr) *libvirtxml.NetworkDHCPHost {
	for _, ip := range def.IPs {
		if ip.DHCP == nil {
			continue
		}
		for i := range ip.DHCP.Hosts {
			if hw, err := net.ParseMAC(ip.DHCP.Hosts[i].MAC); err == nil && slices.Equal(hw, mac) {
				return &ip.DHCP.Hosts[i]
			}
		}
	}
	return nil
}

// AddDHCPHost reserves host.IP for host.MAC in network, in its persistent
// definition and, while it runs, in its DHCP server. An identical entry is
// left as it is; an entry for the same MAC with another address or name is
// an error.
func (d *Driver) AddDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	if err := d.addDHCPHost(ctx, network, host); err != nil {
		return fmt.Errorf("add DHCP host %s (%s) to network %s: %w", host.MAC, host.IP, network, err)
	}
	return nil
}

func (d *Driver) addDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	mac, err := net.ParseMAC(host.MAC)
	if err != nil {
		return fmt.Errorf("invalid MAC address %q", host.MAC)
	}
	if net.ParseIP(host.IP).To4() == nil {
		return fmt.Errorf("invalid IPv4 address %q", host.IP)
	}
	entry := dhcpHostXML(host)
	doc, err := entry.Marshal()
	if err != nil {
		return fmt.Errorf("render DHCP host XML: %w", err)
	}
	return d.withNetwork(ctx, network, func(nw *libvirt.Network) error {
		scopes, err := networkScopes(nw)
		if err != nil {
			return err
		}
		var flags libvirt.NetworkUpdateFlags
		for _, s := range scopes {
			def, err := readNetwork(nw, s.xmlFlags)
			if err != nil {
				return err
			}
			existing := findDHCPHost(def, mac)
			if existing == nil {
				flags |= s.update
				continue
			}
			if existing.IP != host.IP || existing.Name != host.Name {
				return fmt.Errorf("MAC %s already has address %s (name %q)", mac, existing.IP, existing.Name)
			}
		}
		if flags == 0 {
			return nil
		}
		return nw.Update(libvirt.NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.NETWORK_SECTION_IP_DHCP_HOST, -1, doc, flags)
	})
}

// RemoveDHCPHost removes the entry for host.MAC from network, in its
// persistent definition and, while it runs, in its DHCP server; the other
// fields of host are not compared. An entry that is already gone is not an
// error; a missing network is one wrapping hypervisor.ErrNotFound.
func (d *Driver) RemoveDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	if err := d.removeDHCPHost(ctx, network, host); err != nil {
		return fmt.Errorf("remove DHCP host %s from network %s: %w", host.MAC, network, err)
	}
	return nil
}

func (d *Driver) removeDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	mac, err := net.ParseMAC(host.MAC)
	if err != nil {
		return fmt.Errorf("invalid MAC address %q", host.MAC)
	}
	doc, err := (&libvirtxml.NetworkDHCPHost{MAC: mac.String()}).Marshal()
	if err != nil {
		return fmt.Errorf("render DHCP host XML: %w", err)
	}
	return d.withNetwork(ctx, network, func(nw *libvirt.Network) error {
		scopes, err := networkScopes(nw)
		if err != nil {
			return err
		}
		var flags libvirt.NetworkUpdateFlags
		for _, s := range scopes {
			def, err := readNetwork(nw, s.xmlFlags)
			if err != nil {
				return err
			}
			if findDHCPHost(def, mac) != nil {
				flags |= s.update
			}
		}
		if flags == 0 {
			return nil
		}
		return nw.Update(libvirt.NETWORK_UPDATE_COMMAND_DELETE, libvirt.NETWORK_SECTION_IP_DHCP_HOST, -1, doc, flags)
	})
}

// withNetwork looks network name up and runs fn on it.
func (d *Driver) withNetwork(ctx context.Context, name string, fn func(*libvirt.Network) error) error {
	if name == "" {
		return errors.New("no network name")
	}
	return d.call(ctx, func(c *libvirt.Connect) error {
		nw, err := c.LookupNetworkByName(name)
		if err != nil {
			return lookupFailed(err)
		}
		defer nw.Free()
		return fn(nw)
	})
}
