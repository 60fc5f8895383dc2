package network

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"cimid/agent/errdefs"
)

// Forward modes.
const (
	forwardNAT      = "nat"
	forwardIsolated = "isolated"
)

// Bounds of a subnet: room for a gateway, static and dynamic addresses.
const (
	minPrefixLen = 8
	maxPrefixLen = 29
)

// Where free subnets are looked for: /24s from 10.231.0.0 upwards.
var (
	freeSubnetStart = netip.MustParsePrefix("10.231.0.0/24")
	freeSubnetEnd   = netip.MustParseAddr("10.254.255.0")
)

// addressing is a subnet with its gateway and DHCP range.
type addressing struct {
	Subnet      netip.Prefix
	Gateway     netip.Addr
	First, Last netip.Addr // DHCP range
}

// parseSubnet reads an IPv4 CIDR whose address is the network address.
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, errdefs.Invalidf("subnet %q is not an IPv4 CIDR such as 10.231.7.0/24", s)
	}
	if p.Bits() < minPrefixLen || p.Bits() > maxPrefixLen {
		return netip.Prefix{}, errdefs.Invalidf("subnet %s: the prefix length must be between /%d and /%d", s, minPrefixLen, maxPrefixLen)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errdefs.Invalidf("subnet %s has host bits set: did you mean %s?", s, p.Masked())
	}
	a := p.Addr()
	if a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() || p.Overlaps(netip.MustParsePrefix("0.0.0.0/8")) || p.Overlaps(netip.MustParsePrefix("240.0.0.0/4")) {
		return netip.Prefix{}, errdefs.Invalidf("subnet %s is in a reserved range (loopback, link-local, multicast or class E)", s)
	}
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= ^uint32(0) >> p.Bits()
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func addrOffset(a netip.Addr, off uint32) netip.Addr {
	b := a.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += off
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// planAddressing checks a subnet and a DHCP range ("first-last", a default
// when empty): the gateway is the subnet's first address; the default
// range is the upper half of the subnet, leaving the lower half for static
// addresses.
func planAddressing(subnet, dhcpRange string) (addressing, error) {
	p, err := parseSubnet(subnet)
	if err != nil {
		return addressing{}, err
	}
	a := addressing{Subnet: p, Gateway: p.Addr().Next()}
	broadcast := lastAddr(p)
	if strings.TrimSpace(dhcpRange) == "" {
		size := uint32(1) << (32 - p.Bits())
		a.First, a.Last = addrOffset(p.Addr(), size/2), broadcast.Prev()
		return a, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(dhcpRange), "-")
	a.First, err = netip.ParseAddr(strings.TrimSpace(first))
	if !ok || err != nil || !a.First.Is4() {
		return addressing{}, errdefs.Invalidf("dhcpRange %q is not first-last, e.g. 10.231.7.100-10.231.7.200", dhcpRange)
	}
	if a.Last, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil || !a.Last.Is4() {
		return addressing{}, errdefs.Invalidf("dhcpRange %q is not first-last, e.g. 10.231.7.100-10.231.7.200", dhcpRange)
	}
	for _, x := range []netip.Addr{a.First, a.Last} {
		if !p.Contains(x) || x == p.Addr() || x == broadcast {
			return addressing{}, errdefs.Invalidf("dhcpRange %s: %s is outside the usable addresses of subnet %s (%s-%s)", dhcpRange, x, p, p.Addr().Next(), broadcast.Prev())
		}
		if x == a.Gateway {
			return addressing{}, errdefs.Invalidf("dhcpRange %s includes the gateway %s", dhcpRange, a.Gateway)
		}
	}
	if a.Last.Less(a.First) {
		return addressing{}, errdefs.Invalidf("dhcpRange %s: the first address comes after the last", dhcpRange)
	}
	return a, nil
}

func (a addressing) rangeString() string { return a.First.String() + "-" + a.Last.String() }

// inRange tells whether ip is handed out dynamically.
func (a addressing) inRange(ip netip.Addr) bool {
	return !ip.Less(a.First) && !a.Last.Less(ip)
}

// staticOK checks that ip can be reserved on the subnet: inside it, not
// its network, broadcast or gateway address, and outside the DHCP range.
func (a addressing) staticOK(ip netip.Addr) error {
	switch {
	case !a.Subnet.Contains(ip):
		return errdefs.Invalidf("ip %s is outside the network's subnet %s", ip, a.Subnet)
	case ip == a.Subnet.Addr() || ip == lastAddr(a.Subnet):
		return errdefs.Invalidf("ip %s is the network or broadcast address of %s", ip, a.Subnet)
	case ip == a.Gateway:
		return errdefs.Invalidf("ip %s is the network's gateway", ip)
	case a.inRange(ip):
		return errdefs.Invalidf("ip %s is inside the network's DHCP range %s; static addresses must be outside it", ip, a.rangeString())
	}
	return nil
}

// mask renders a prefix length as a dotted netmask.
func mask(bits int) string {
	m := net.CIDRMask(bits, 32)
	return net.IP(m).String()
}

// takenSubnet is a subnet in use on the host, with who uses it.
type takenSubnet struct {
	Prefix netip.Prefix
	Owner  string
}

// overlapping returns the first of taken that overlaps p.
func overlapping(p netip.Prefix, taken []takenSubnet) (takenSubnet, bool) {
	for _, t := range taken {
		if t.Prefix.Overlaps(p) {
			return t, true
		}
	}
	return takenSubnet{}, false
}

// chooseSubnet returns the first /24 from 10.231.0.0 upwards that overlaps
// nothing taken.
func chooseSubnet(taken []takenSubnet) (netip.Prefix, error) {
	for p := freeSubnetStart; !freeSubnetEnd.Less(p.Addr()); p = netip.PrefixFrom(addrOffset(p.Addr(), 256), 24) {
		if _, busy := overlapping(p, taken); !busy {
			return p, nil
		}
	}
	return netip.Prefix{}, errdefs.Conflictf("no free /24 subnet is left between %s and %s/24", freeSubnetStart.Addr(), freeSubnetEnd)
}

// hostInterfaceSubnets lists the IPv4 subnets configured on the host's
// interfaces.
func hostInterfaceSubnets() ([]takenSubnet, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list host interfaces: %w", err)
	}
	var out []takenSubnet
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() {
				continue
			}
			ones, _ := ipn.Mask.Size()
			addr, _ := netip.AddrFromSlice(ipn.IP.To4())
			out = append(out, takenSubnet{Prefix: netip.PrefixFrom(addr, ones).Masked(), Owner: "host interface " + ifc.Name})
		}
	}
	return out, nil
}

// normalMAC parses a MAC address and renders it in lower case with colons.
func normalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", errdefs.Invalidf("macAddress %q is not a MAC address such as 52:54:00:12:34:56", s)
	}
	if hw[0]&1 == 1 {
		return "", errdefs.Invalidf("macAddress %s is a multicast address; a NIC needs a unicast one (first byte even)", s)
	}
	if hw.String() == "00:00:00:00:00:00" {
		return "", errdefs.Invalidf("macAddress %s is all zeros", s)
	}
	return hw.String(), nil
}
