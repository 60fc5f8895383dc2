package main

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// probeScript is user data for the test guest: a shell script that runs
// once the guest has its leases, runs the commands given, and prints
// "TESTGUEST: PROBE <name> <address> reached|unreachable" for each
// "probe <name> <address>" among them. A probe is two pings within four
// seconds; one answer is enough.
func probeScript(commands ...string) string {
	script := `#!/bin/sh
probe() {
  if ping -c 2 -w 4 "$2" >/dev/null 2>&1; then r=reached; else r=unreachable; fi
  echo "TESTGUEST: PROBE $1 $2 $r"
}
` + strings.Join(commands, "\n") + "\necho \"TESTGUEST: PROBES-DONE\"\n"
	return base64.StdEncoding.EncodeToString([]byte(script))
}

// TestMachineIsolationWithTraffic sends traffic between guests through
// the API's networks. Machine A runs on a NAT network and gets a DHCP
// lease that the API shows as its Address. Machine B runs on an isolated
// network with a script, given as userData, that routes A's subnet
// through B's own gateway (the host) and pings A and that gateway: the
// gateway answers, which proves the probe works and the packets reach
// the host, and A does not, because the host does not forward for an
// isolated network. Machine C, on A's network, pings A with the same
// probe and reaches it.
func TestMachineIsolationWithTraffic(t *testing.T) {
	start := time.Now()
	e := mnStart(t)
	d := e.d
	nat := d.create("networks", map[string]any{"resourceURI": mnNS + "/NetworkCreate", "name": "mainland",
		"networkTemplate": map[string]any{"networkConfig": map[string]any{"forwardMode": "nat"}}})
	natDoc := d.get(nat).JSON(t)
	if natDoc["forwardMode"] != "nat" || natDoc["state"] != "STARTED" {
		t.Fatalf("NAT network: %v", natDoc)
	}
	natSubnet := netip.MustParsePrefix(natDoc["subnet"].(string))
	island, islandSubnet := d.isolatedNetwork("island")
	islandGateway, _ := d.get(island).JSON(t)["gateway"].(string)
	if !islandSubnet.Contains(netip.MustParseAddr(islandGateway)) {
		t.Fatalf("isolated network's gateway %q is not in %s", islandGateway, islandSubnet)
	}
	on := func(network string, userData string) map[string]any {
		attrs := map[string]any{"networkInterfaces": []any{map[string]any{"network": map[string]any{"href": network}}}}
		if userData != "" {
			attrs["userData"] = userData
		}
		return attrs
	}

	// A: a lease on the NAT network, shown by the API.
	a := e.machine("a", on(nat, ""))
	leaseA := d.guestLease(a, "eth0")
	if !natSubnet.Contains(leaseA.Addr()) {
		t.Fatalf("A leased %s, outside %s", leaseA, natSubnet)
	}
	ifacesA := d.interfaces(a)
	if len(ifacesA) != 1 {
		t.Fatalf("A has %d interfaces", len(ifacesA))
	}
	addrA := d.waitInterfaceAddress(ifacesA[0], leaseA.Addr().String(), 15*time.Second)
	if addrA["allocation"] != "dynamic" || href(addrA, "network") != nat {
		t.Fatalf("A's Address: %v", addrA)
	}
	ipA := leaseA.Addr().String()
	t.Logf("A has %s after %v", ipA, time.Since(start).Round(100*time.Millisecond))

	// B on the isolated network, C on A's; both boot at once.
	b := e.machine("b", on(island, probeScript(
		fmt.Sprintf("ip route add %s via %s", natSubnet, islandGateway),
		fmt.Sprintf(`echo "TESTGUEST: ROUTE $(ip route get %s | head -n 1)"`, ipA),
		"probe gateway "+islandGateway,
		"probe peer "+ipA,
	)))
	c := e.machine("c", on(nat, probeScript("probe peer "+ipA)))

	route := d.consoleLine(b, "TESTGUEST: ROUTE", 2*time.Minute)
	if !strings.Contains(route, "via "+islandGateway) {
		t.Fatalf("B's route to A: %q, want it via its gateway %s", route, islandGateway)
	}
	if got := d.consoleLine(b, "TESTGUEST: PROBE gateway", time.Minute); got != islandGateway+" reached" {
		t.Fatalf("B pinging its own gateway: %q, want %q (the probe does not work)", got, islandGateway+" reached")
	}
	if got := d.consoleLine(b, "TESTGUEST: PROBE peer", time.Minute); got != ipA+" unreachable" {
		t.Fatalf("B on an isolated network pinging A on another: %q, want %q", got, ipA+" unreachable")
	}
	if got := d.consoleLine(c, "TESTGUEST: PROBE peer", 2*time.Minute); got != ipA+" reached" {
		t.Fatalf("C pinging A on the same network: %q, want %q", got, ipA+" reached")
	}
	for _, m := range []string{b, c} {
		if got := d.consoleLine(m, testguest.MarkerScriptExit, time.Minute); got != "1 0" {
			t.Errorf("the probe script of %s: %s %q", lastSegment(m), testguest.MarkerScriptExit, got)
		}
	}
	t.Logf("B reached its gateway and not A; C reached A; %v in all", time.Since(start).Round(100*time.Millisecond))
}
