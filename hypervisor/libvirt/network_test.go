package libvirt

import (
	"context"
	"slices"
	"strings"
	"testing"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

func natSpec(name string) hypervisor.NetworkSpec {
	return hypervisor.NetworkSpec{
		Name:      name,
		Forward:   "nat",
		Subnet:    "10.250.200.0/24",
		DHCPStart: "10.250.200.100",
		DHCPEnd:   "10.250.200.199",
		MTU:       1400,
		DHCPHosts: []hypervisor.DHCPHost{{MAC: "52:54:00:AA:00:01", IP: "10.250.200.10", Name: "fixed"}},
		Metadata:  hypervisor.NetworkMetadata{Instance: "instance-1", NetworkID: "net-" + name},
	}
}

func TestNetworkXML(t *testing.T) {
	p, err := planNetwork(natSpec("n1"))
	must(t, "plan", err)
	doc, err := networkXML(p, "", "")
	must(t, "render", err)
	var def libvirtxml.Network
	must(t, "parse", def.Unmarshal(doc))

	if def.Forward == nil || def.Forward.Mode != "nat" {
		t.Errorf("forward %+v, want nat", def.Forward)
	}
	if def.Bridge != nil {
		t.Errorf("bridge %+v, want libvirt to choose", def.Bridge)
	}
	if def.MTU == nil || def.MTU.Size != 1400 {
		t.Errorf("MTU %+v", def.MTU)
	}
	if len(def.IPs) != 1 || def.IPs[0].Address != "10.250.200.1" || def.IPs[0].Prefix != 24 {
		t.Fatalf("ip %+v, want 10.250.200.1/24", def.IPs)
	}
	dhcp := def.IPs[0].DHCP
	if dhcp == nil || len(dhcp.Ranges) != 1 || dhcp.Ranges[0].Start != "10.250.200.100" || dhcp.Ranges[0].End != "10.250.200.199" {
		t.Errorf("DHCP %+v", dhcp)
	}
	if dhcp == nil || len(dhcp.Hosts) != 1 || dhcp.Hosts[0].MAC != "52:54:00:aa:00:01" || dhcp.Hosts[0].IP != "10.250.200.10" {
		t.Errorf("DHCP hosts %+v", dhcp)
	}
	if !strings.Contains(doc, `xmlns="http://libvirt.org/schemas/network/dnsmasq/1.0"`) || !strings.Contains(doc, `value="no-ping"`) {
		t.Errorf("no dnsmasq no-ping option in\n%s", doc)
	}
	st, err := networkStatus(&def)
	must(t, "status", err)
	if st.Metadata == nil || *st.Metadata != natSpec("n1").Metadata {
		t.Errorf("metadata %+v", st.Metadata)
	}
	if st.Forward != "nat" || !slices.Equal(st.Subnets, []string{"10.250.200.0/24"}) {
		t.Errorf("status %+v", st)
	}

	iso := natSpec("n2")
	iso.Forward, iso.DHCPStart, iso.DHCPEnd, iso.DHCPHosts, iso.MTU = "isolated", "", "", nil, 0
	iso.Metadata = hypervisor.NetworkMetadata{}
	p, err = planNetwork(iso)
	must(t, "plan isolated", err)
	doc, err = networkXML(p, "", "virbr-iso")
	must(t, "render isolated", err)
	def = libvirtxml.Network{}
	must(t, "parse isolated", def.Unmarshal(doc))
	if def.Forward != nil || def.IPs[0].DHCP != nil || def.MTU != nil || def.Bridge == nil || def.Bridge.Name != "virbr-iso" {
		t.Errorf("isolated network XML:\n%s", doc)
	}
	if st, _ := networkStatus(&def); st.Forward != "isolated" || st.Metadata != nil {
		t.Errorf("isolated status %+v", st)
	}
}

func TestPlanNetworkRejects(t *testing.T) {
	cases := map[string]func(*hypervisor.NetworkSpec){
		"no name":             func(s *hypervisor.NetworkSpec) { s.Name = "" },
		"bridge forward":      func(s *hypervisor.NetworkSpec) { s.Forward = "bridge" },
		"bad subnet":          func(s *hypervisor.NetworkSpec) { s.Subnet = "10.250.200.0" },
		"IPv6 subnet":         func(s *hypervisor.NetworkSpec) { s.Subnet = "fd00::/64" },
		"host bits set":       func(s *hypervisor.NetworkSpec) { s.Subnet = "10.250.200.7/24" },
		"subnet too small":    func(s *hypervisor.NetworkSpec) { s.Subnet = "10.250.200.0/31" },
		"range without end":   func(s *hypervisor.NetworkSpec) { s.DHCPEnd = "" },
		"range outside":       func(s *hypervisor.NetworkSpec) { s.DHCPEnd = "10.250.201.5" },
		"range on gateway":    func(s *hypervisor.NetworkSpec) { s.DHCPStart = "10.250.200.1" },
		"range on broadcast":  func(s *hypervisor.NetworkSpec) { s.DHCPEnd = "10.250.200.255" },
		"range reversed":      func(s *hypervisor.NetworkSpec) { s.DHCPStart, s.DHCPEnd = s.DHCPEnd, s.DHCPStart },
		"host with a bad MAC": func(s *hypervisor.NetworkSpec) { s.DHCPHosts[0].MAC = "nope" },
		"host outside":        func(s *hypervisor.NetworkSpec) { s.DHCPHosts[0].IP = "192.168.1.5" },
		"tiny MTU":            func(s *hypervisor.NetworkSpec) { s.MTU = 20 },
	}
	for what, change := range cases {
		spec := natSpec("n")
		spec.DHCPHosts = slices.Clone(spec.DHCPHosts)
		change(&spec)
		if _, err := planNetwork(spec); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

func TestDecodeNetworkMetadata(t *testing.T) {
	inner := `<other:x xmlns:other="urn:other"><other:network/></other:x>` +
		`<c:network xmlns:c="urn:x-cimid:network:1"><c:instance>i</c:instance><c:network-id>n</c:network-id></c:network>`
	md, err := decodeNetworkMetadata(inner)
	must(t, "decode", err)
	if md == nil || md.Instance != "i" || md.NetworkID != "n" {
		t.Fatalf("metadata %+v", md)
	}
	md, err = decodeNetworkMetadata(`<other:x xmlns:other="urn:other"/>`)
	if err != nil || md != nil {
		t.Fatalf("foreign metadata decoded as %+v, %v", md, err)
	}
}

func TestNetworks(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := natSpec(uniqueName("unit-net-"))
	t.Cleanup(func() { _ = d.UndefineNetwork(context.Background(), spec.Name) })

	must(t, "define", d.DefineNetwork(ctx, spec))
	first := testNetworkXML(t, spec.Name, libvirt.NETWORK_XML_INACTIVE)
	st := findNetwork(t, d, spec.Name)
	if !st.Active || st.Forward != "nat" || !slices.Equal(st.Subnets, []string{spec.Subnet}) ||
		st.Metadata == nil || *st.Metadata != spec.Metadata {
		t.Fatalf("listed as %+v", st)
	}
	if !testNetworkAutostart(t, spec.Name) {
		t.Error("network not autostarted")
	}

	// Defining again keeps the UUID. (The test driver shows only the
	// running definition, which a redefinition does not change.)
	spec.MTU = 1300
	must(t, "redefine", d.DefineNetwork(ctx, spec))
	if again := testNetworkXML(t, spec.Name, libvirt.NETWORK_XML_INACTIVE); again.UUID != first.UUID {
		t.Fatalf("UUID changed from %s to %s", first.UUID, again.UUID)
	}

	// DHCP hosts: live and persistent, idempotent.
	host := hypervisor.DHCPHost{MAC: "52:54:00:AA:00:02", IP: "10.250.200.11"}
	must(t, "add DHCP host", d.AddDHCPHost(ctx, spec.Name, host))
	must(t, "add DHCP host again", d.AddDHCPHost(ctx, spec.Name, host))
	if err := d.AddDHCPHost(ctx, spec.Name, hypervisor.DHCPHost{MAC: host.MAC, IP: "10.250.200.12"}); err == nil {
		t.Error("a second address for the same MAC was accepted")
	}
	for _, flags := range []libvirt.NetworkXMLFlags{0, libvirt.NETWORK_XML_INACTIVE} {
		if hosts := dhcpHosts(testNetworkXML(t, spec.Name, flags)); !slices.Contains(hosts, "52:54:00:aa:00:02=10.250.200.11") {
			t.Errorf("hosts (XML flags %d) %v lack the new one", flags, hosts)
		}
	}
	must(t, "remove DHCP host", d.RemoveDHCPHost(ctx, spec.Name, host))
	must(t, "remove DHCP host again", d.RemoveDHCPHost(ctx, spec.Name, host))
	for _, flags := range []libvirt.NetworkXMLFlags{0, libvirt.NETWORK_XML_INACTIVE} {
		if hosts := dhcpHosts(testNetworkXML(t, spec.Name, flags)); !slices.Equal(hosts, []string{"52:54:00:aa:00:01=10.250.200.10"}) {
			t.Errorf("hosts (XML flags %d) after removal: %v", flags, hosts)
		}
	}

	must(t, "undefine", d.UndefineNetwork(ctx, spec.Name))
	must(t, "undefine again", d.UndefineNetwork(ctx, spec.Name))
	list, err := d.ListNetworks(ctx)
	must(t, "list", err)
	for _, n := range list {
		if n.Name == spec.Name {
			t.Fatalf("network still listed: %+v", n)
		}
	}
	wantErrorIs(t, "add DHCP host to a missing network", d.AddDHCPHost(ctx, spec.Name, host), hypervisor.ErrNotFound)
	wantErrorIs(t, "remove DHCP host from a missing network", d.RemoveDHCPHost(ctx, spec.Name, host), hypervisor.ErrNotFound)
	_, err = d.DHCPLeases(ctx, spec.Name)
	wantErrorIs(t, "leases of a missing network", err, hypervisor.ErrNotFound)
}

func TestDefineNetworkStartsInactive(t *testing.T) {
	d := openDriver(t, testURI)
	ctx := t.Context()
	spec := natSpec(uniqueName("unit-netstop-"))
	spec.Forward, spec.Subnet, spec.DHCPStart, spec.DHCPEnd, spec.DHCPHosts = "isolated", "10.250.201.0/28", "", "", nil
	t.Cleanup(func() { _ = d.UndefineNetwork(context.Background(), spec.Name) })
	must(t, "define", d.DefineNetwork(ctx, spec))
	withTestConn(t, func(c *libvirt.Connect) error {
		nw, err := c.LookupNetworkByName(spec.Name)
		if err != nil {
			return err
		}
		defer nw.Free()
		return nw.Destroy()
	})
	if findNetwork(t, d, spec.Name).Active {
		t.Fatal("still active after destroy")
	}
	must(t, "define again", d.DefineNetwork(ctx, spec))
	if st := findNetwork(t, d, spec.Name); !st.Active || st.Forward != "isolated" {
		t.Fatalf("after defining again: %+v", st)
	}
}

func findNetwork(t *testing.T, d *Driver, name string) hypervisor.NetworkStatus {
	t.Helper()
	list, err := d.ListNetworks(t.Context())
	must(t, "list networks", err)
	for _, n := range list {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("network %s not listed in %+v", name, list)
	return hypervisor.NetworkStatus{}
}

func dhcpHosts(def *libvirtxml.Network) []string {
	var hosts []string
	for _, ip := range def.IPs {
		if ip.DHCP == nil {
			continue
		}
		for _, h := range ip.DHCP.Hosts {
			hosts = append(hosts, h.MAC+"="+h.IP)
		}
	}
	return hosts
}

// withTestConn runs fn on a connection of its own to the test driver, whose
// state all connections of the process share.
func withTestConn(t *testing.T, fn func(*libvirt.Connect) error) {
	t.Helper()
	c, err := libvirt.NewConnect(testURI)
	if err != nil {
		t.Fatalf("connect to %s: %v", testURI, err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatal(err)
	}
}

func testNetworkXML(t *testing.T, name string, flags libvirt.NetworkXMLFlags) *libvirtxml.Network {
	t.Helper()
	var def *libvirtxml.Network
	withTestConn(t, func(c *libvirt.Connect) error {
		nw, err := c.LookupNetworkByName(name)
		if err != nil {
			return err
		}
		defer nw.Free()
		def, err = readNetwork(nw, flags)
		return err
	})
	return def
}

func testNetworkAutostart(t *testing.T, name string) bool {
	t.Helper()
	var on bool
	withTestConn(t, func(c *libvirt.Connect) error {
		nw, err := c.LookupNetworkByName(name)
		if err != nil {
			return err
		}
		defer nw.Free()
		on, err = nw.GetAutostart()
		return err
	})
	return on
}
