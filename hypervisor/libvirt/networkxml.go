package libvirt

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// Network forward modes of hypervisor.NetworkSpec.
const (
	forwardNAT      = "nat"
	forwardIsolated = "isolated"
)

// noPing tells dnsmasq not to ping an address before offering it, which
// otherwise delays every lease by several seconds.
const noPing = "no-ping"

// The cimid element in a network's <metadata> marks it as ours, like the
// one of domains:
//
//	<network xmlns="urn:x-cimid:network:1">
//	  <instance>…</instance>
//	  <network-id>…</network-id>
//	</network>
const (
	networkMetadataNamespace = "urn:x-cimid:network:1"
	networkMetadataElement   = "network"
)

type networkMetadataXML struct {
	XMLName   xml.Name
	Instance  string `xml:"instance"`
	NetworkID string `xml:"network-id"`
}

// plannedNetwork is a validated NetworkSpec with its addresses parsed.
type plannedNetwork struct {
	spec    hypervisor.NetworkSpec
	subnet  netip.Prefix
	gateway netip.Addr
}

// planNetwork validates spec.
func planNetwork(spec hypervisor.NetworkSpec) (plannedNetwork, error) {
	var errs []error
	if spec.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if spec.Forward != forwardNAT && spec.Forward != forwardIsolated {
		errs = append(errs, fmt.Errorf("forward mode %q is neither %q nor %q", spec.Forward, forwardNAT, forwardIsolated))
	}
	if spec.MTU < 0 || spec.MTU > 65535 || (spec.MTU > 0 && spec.MTU < 68) {
		errs = append(errs, fmt.Errorf("MTU %d is outside 68..65535", spec.MTU))
	}
	p := plannedNetwork{spec: spec}
	subnet, err := netip.ParsePrefix(spec.Subnet)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("subnet: %w", err))
	case !subnet.Addr().Is4():
		errs = append(errs, fmt.Errorf("subnet %s is not IPv4", spec.Subnet))
	case subnet.Bits() > 30:
		errs = append(errs, fmt.Errorf("subnet %s leaves no room for guests", spec.Subnet))
	case subnet != subnet.Masked():
		errs = append(errs, fmt.Errorf("subnet %s is not a network address (%s is)", spec.Subnet, subnet.Masked()))
	default:
		p.subnet = subnet
		p.gateway = subnet.Addr().Next()
		errs = append(errs, p.checkAddresses()...)
	}
	if err := errors.Join(errs...); err != nil {
		return plannedNetwork{}, fmt.Errorf("invalid network spec: %w", err)
	}
	return p, nil
}

// checkAddresses checks the DHCP range and hosts against the subnet.
func (p plannedNetwork) checkAddresses() []error {
	var errs []error
	if (p.spec.DHCPStart == "") != (p.spec.DHCPEnd == "") {
		errs = append(errs, errors.New("a DHCP range needs both a start and an end"))
	} else if p.spec.DHCPStart != "" {
		start, err1 := p.guestAddr("DHCP start", p.spec.DHCPStart)
		end, err2 := p.guestAddr("DHCP end", p.spec.DHCPEnd)
		errs = append(errs, err1, err2)
		if err1 == nil && err2 == nil && end.Less(start) {
			errs = append(errs, fmt.Errorf("DHCP range %s-%s ends before it starts", start, end))
		}
	}
	for _, h := range p.spec.DHCPHosts {
		if _, err := net.ParseMAC(h.MAC); err != nil {
			errs = append(errs, fmt.Errorf("DHCP host: invalid MAC address %q", h.MAC))
		}
		_, err := p.guestAddr("DHCP host "+h.MAC, h.IP)
		errs = append(errs, err)
	}
	return errs
}

// guestAddr parses s as an address a guest may get in the subnet: not the
// network address, the gateway or the broadcast address.
func (p plannedNetwork) guestAddr(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %w", what, err)
	}
	if !p.subnet.Contains(a) || a == p.subnet.Addr() || a == p.gateway || a == lastAddr(p.subnet) {
		return netip.Addr{}, fmt.Errorf("%s: %s is not a guest address of %s (gateway %s)", what, a, p.subnet, p.gateway)
	}
	return a, nil
}

// lastAddr returns the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}

// networkXML renders p as a libvirt network definition. uuid may be empty;
// so may bridge, to let libvirt choose one.
func networkXML(p plannedNetwork, uuid, bridge string) (string, error) {
	md, err := encodeNetworkMetadata(p.spec.Metadata)
	if err != nil {
		return "", err
	}
	def := libvirtxml.Network{
		Name:     p.spec.Name,
		UUID:     uuid,
		Metadata: &libvirtxml.NetworkMetadata{XML: md},
		IPs: []libvirtxml.NetworkIP{{
			Address: p.gateway.String(),
			Prefix:  uint(p.subnet.Bits()),
			DHCP:    dhcpXML(p.spec),
		}},
		DnsmasqOptions: &libvirtxml.NetworkDnsmasqOptions{
			Option: []libvirtxml.NetworkDnsmasqOption{{Value: noPing}},
		},
	}
	if p.spec.Forward == forwardNAT {
		def.Forward = &libvirtxml.NetworkForward{Mode: forwardNAT}
	}
	if bridge != "" {
		def.Bridge = &libvirtxml.NetworkBridge{Name: bridge, STP: "on", Delay: "0"}
	}
	if p.spec.MTU > 0 {
		def.MTU = &libvirtxml.NetworkMTU{Size: uint(p.spec.MTU)}
	}
	doc, err := def.Marshal()
	if err != nil {
		return "", fmt.Errorf("render network XML: %w", err)
	}
	return doc, nil
}

func dhcpXML(spec hypervisor.NetworkSpec) *libvirtxml.NetworkDHCP {
	if spec.DHCPStart == "" && len(spec.DHCPHosts) == 0 {
		return nil
	}
	dhcp := &libvirtxml.NetworkDHCP{}
	if spec.DHCPStart != "" {
		dhcp.Ranges = []libvirtxml.NetworkDHCPRange{{Start: spec.DHCPStart, End: spec.DHCPEnd}}
	}
	for _, h := range spec.DHCPHosts {
		dhcp.Hosts = append(dhcp.Hosts, dhcpHostXML(h))
	}
	return dhcp
}

func dhcpHostXML(h hypervisor.DHCPHost) libvirtxml.NetworkDHCPHost {
	mac := h.MAC
	if hw, err := net.ParseMAC(h.MAC); err == nil {
		mac = hw.String()
	}
	return libvirtxml.NetworkDHCPHost{MAC: mac, IP: h.IP, Name: h.Name}
}

// encodeNetworkMetadata renders md as the cimid element with its namespace,
// or "" when md is empty.
func encodeNetworkMetadata(md hypervisor.NetworkMetadata) (string, error) {
	if md == (hypervisor.NetworkMetadata{}) {
		return "", nil
	}
	out, err := xml.Marshal(networkMetadataXML{
		XMLName:   xml.Name{Space: networkMetadataNamespace, Local: networkMetadataElement},
		Instance:  md.Instance,
		NetworkID: md.NetworkID,
	})
	if err != nil {
		return "", fmt.Errorf("encode network metadata: %w", err)
	}
	return string(out), nil
}

// decodeNetworkMetadata finds the cimid element among the children of a
// network's <metadata>; it returns nil when there is none.
func decodeNetworkMetadata(inner string) (*hypervisor.NetworkMetadata, error) {
	dec := xml.NewDecoder(strings.NewReader(inner))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode network metadata: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if start.Name.Space != networkMetadataNamespace || start.Name.Local != networkMetadataElement {
			if err := dec.Skip(); err != nil {
				return nil, fmt.Errorf("decode network metadata: %w", err)
			}
			continue
		}
		var el networkMetadataXML
		if err := dec.DecodeElement(&el, &start); err != nil {
			return nil, fmt.Errorf("decode network metadata: %w", err)
		}
		return &hypervisor.NetworkMetadata{Instance: el.Instance, NetworkID: el.NetworkID}, nil
	}
}

// networkStatus describes a parsed network definition; Active is left to
// the caller.
func networkStatus(def *libvirtxml.Network) (hypervisor.NetworkStatus, error) {
	st := hypervisor.NetworkStatus{Name: def.Name, Forward: forwardIsolated}
	if def.Bridge != nil {
		st.Bridge = def.Bridge.Name
	}
	if def.Forward != nil {
		st.Forward = def.Forward.Mode
		if st.Forward == "" {
			st.Forward = forwardNAT // libvirt's default mode
		}
	}
	for _, ip := range def.IPs {
		if subnet, ok := ipv4Subnet(ip); ok {
			st.Subnets = append(st.Subnets, subnet.String())
		}
	}
	if def.Metadata != nil {
		md, err := decodeNetworkMetadata(def.Metadata.XML)
		if err != nil {
			return st, err
		}
		st.Metadata = md
	}
	return st, nil
}

// ipv4Subnet returns the subnet of an IPv4 <ip> element, given by prefix or
// netmask (a missing one means the classful default, which libvirt
// deprecates; such an element is skipped).
func ipv4Subnet(ip libvirtxml.NetworkIP) (netip.Prefix, bool) {
	if ip.Family != "" && ip.Family != "ipv4" {
		return netip.Prefix{}, false
	}
	addr, err := netip.ParseAddr(ip.Address)
	if err != nil || !addr.Is4() {
		return netip.Prefix{}, false
	}
	bits := int(ip.Prefix)
	if ip.Netmask != "" {
		mask := net.ParseIP(ip.Netmask).To4()
		if mask == nil {
			return netip.Prefix{}, false
		}
		ones, size := net.IPMask(mask).Size()
		if size == 0 {
			return netip.Prefix{}, false
		}
		bits = ones
	} else if ip.Prefix == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, bits).Masked(), true
}
