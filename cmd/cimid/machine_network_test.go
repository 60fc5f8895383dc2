package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/netip"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/cloudinit"
	"cimid/hypervisor/testguest"
)

// The tests in this file put Machines running the test guest on networks:
// the default network, networks created through the API, interfaces
// hot-plugged into a running guest, and the cloud-init seed CD-ROM.

const mnNS = "http://schemas.dmtf.org/cimi/1"

// mnEnv is a daemon with the test guest registered as an image and a
// configuration small enough for it.
type mnEnv struct {
	t      *testing.T
	d      *daemon
	config string
	image  string
}

func mnStart(t *testing.T) mnEnv {
	t.Helper()
	g := testguest.Build(t)
	d := storageDaemon(t, newStateDir(t))
	return mnEnv{t: t, d: d, config: d.tinyConfig(), image: d.registerImage(g.Disk)}
}

// template is a MachineTemplate by value with extra attributes.
func (e mnEnv) template(extra map[string]any) map[string]any {
	tmpl := map[string]any{"machineConfig": map[string]any{"href": e.config}, "machineImage": map[string]any{"href": e.image}}
	for k, v := range extra {
		tmpl[k] = v
	}
	return tmpl
}

// machine creates a Machine from a template by value with extra
// attributes and waits for its Job.
func (e mnEnv) machine(name string, extra map[string]any) string {
	e.t.Helper()
	return e.d.create("machines", map[string]any{"resourceURI": mnNS + "/MachineCreate", "name": name, "machineTemplate": e.template(extra)})
}

// isolatedNetwork creates an isolated network and returns its URI and
// subnet.
func (d *daemon) isolatedNetwork(name string) (string, netip.Prefix) {
	d.t.Helper()
	loc := d.create("networks", map[string]any{"resourceURI": mnNS + "/NetworkCreate", "name": name,
		"networkTemplate": map[string]any{"networkConfig": map[string]any{"forwardMode": "isolated"}}})
	n := d.get(loc).JSON(d.t)
	return loc, netip.MustParsePrefix(n["subnet"].(string))
}

// guestLease waits for the guest to configure a DHCP lease on ifc and
// returns it.
func (d *daemon) guestLease(machine, ifc string) netip.Prefix {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	marker := "TESTGUEST: NET " + ifc + " "
	line, err := testguest.WaitConsole(ctx, d.console(machine), marker)
	if err != nil {
		d.t.Fatalf("console of %s: %v", lastSegment(machine), err)
	}
	f := strings.Fields(line[strings.Index(line, marker)+len(marker):])
	if len(f) != 1 || f[0] == "none" {
		d.t.Fatalf("the guest got no lease on %s: %q", ifc, line)
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		d.t.Fatalf("lease line %q: %v", line, err)
	}
	return p
}

// interfaces lists a Machine's interfaces through the collection its
// document links to.
func (d *daemon) interfaces(machine string) []map[string]any {
	d.t.Helper()
	coll := href(d.get(machine).JSON(d.t), "networkInterfaces")
	if coll == "" {
		d.t.Fatalf("Machine %s has no networkInterfaces link", lastSegment(machine))
	}
	return d.members(coll, "machineNetworkInterfaces")
}

// waitInterfaceAddress polls an interface's addresses until one of them
// is ip, and returns that Address.
func (d *daemon) waitInterfaceAddress(iface map[string]any, ip string, timeout time.Duration) map[string]any {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, link := range d.members(href(iface, "addresses"), "machineNetworkInterfaceAddresses") {
			if a := d.get(href(link, "address")).JSON(d.t); a["ip"] == ip {
				return a
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("interface %v shows no address %s after %v; addresses: %s", iface["id"], ip, timeout, d.get("addresses").Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// domainDisk is one disk of a domain's definition.
type domainDisk struct {
	Device string `xml:"device,attr"`
	Driver struct {
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source struct {
		File string `xml:"file,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	} `xml:"target"`
	ReadOnly *struct{} `xml:"readonly"`
}

// domainDevices is what the tests read of a domain's definition.
type domainDevices struct {
	Disks      []domainDisk `xml:"devices>disk"`
	Interfaces []struct {
		MAC struct {
			Address string `xml:"address,attr"`
		} `xml:"mac"`
		Source struct {
			Network string `xml:"network,attr"`
			Bridge  string `xml:"bridge,attr"`
		} `xml:"source"`
		Model struct {
			Type string `xml:"type,attr"`
		} `xml:"model"`
	} `xml:"devices>interface"`
}

// dumpDomain reads a domain's definition: the live one when it runs, or
// the persistent one (inactive).
func dumpDomain(t *testing.T, domain string, inactive bool) domainDevices {
	t.Helper()
	args := []string{"dumpxml", domain}
	if inactive {
		args = append(args, "--inactive")
	}
	out, err := virsh(args...)
	if err != nil {
		t.Fatalf("virsh dumpxml %s: %v: %s", domain, err, out)
	}
	var dd domainDevices
	if err := xml.Unmarshal([]byte(out), &dd); err != nil {
		t.Fatalf("domain XML of %s: %v", domain, err)
	}
	return dd
}

// networkBridge returns the bridge of a Network resource.
func (d *daemon) networkBridge(network string) string {
	d.t.Helper()
	b, _ := d.get(network).JSON(d.t)["bridge"].(string)
	if b == "" {
		d.t.Fatalf("network %s shows no bridge", network)
	}
	return b
}

// TestMachineOnDefaultNetworkGetsAddressAndHotPlugs creates a Machine
// whose template names no interfaces: it gets one on the default network,
// the guest's DHCP lease shows as its Address within seconds, and an
// interface hot-added to and hot-removed from the running Machine shows
// up inside the guest.
func TestMachineOnDefaultNetworkGetsAddressAndHotPlugs(t *testing.T) {
	e := mnStart(t)
	d := e.d
	m := e.machine("web", nil)
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)

	ifaces := d.interfaces(m)
	if len(ifaces) != 1 {
		t.Fatalf("a Machine without networkInterfaces has %d interfaces: %v", len(ifaces), ifaces)
	}
	nic := ifaces[0]
	mac, _ := nic["macAddress"].(string)
	if !strings.HasSuffix(href(nic, "network"), "/networks/default") || nic["state"] != "ACTIVE" || nic["model"] != "virtio" ||
		!regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`).MatchString(mac) {
		t.Fatalf("interface: %v", nic)
	}
	dd := dumpDomain(t, domain, false)
	if len(dd.Interfaces) != 1 || dd.Interfaces[0].MAC.Address != mac || dd.Interfaces[0].Source.Network != "cimid-"+d.instance()+"-default" ||
		dd.Interfaces[0].Source.Bridge != d.networkBridge("networks/default") {
		t.Fatalf("interfaces of domain %s: %+v", domain, dd.Interfaces)
	}

	lease := d.guestLease(m, "eth0")
	seen := time.Now()
	def := netip.MustParsePrefix(d.get("networks/default").JSON(t)["subnet"].(string))
	if !def.Contains(lease.Addr()) || lease.Bits() != def.Bits() {
		t.Fatalf("lease %s is not in the default network's subnet %s", lease, def)
	}
	a := d.waitInterfaceAddress(nic, lease.Addr().String(), 15*time.Second)
	t.Logf("the API showed the lease %s %v after the guest configured it", lease, time.Since(seen).Round(10*time.Millisecond))
	if a["allocation"] != "dynamic" || a["macAddress"] != mac || !strings.HasSuffix(href(a, "network"), "/networks/default") ||
		lastSegment(href(a, "resource")) != lastSegment(m) || a["mask"] == "" {
		t.Fatalf("Address of the lease: %v", a)
	}
	found := false
	for _, x := range d.members("addresses", "addresses") {
		found = found || x["id"] == a["id"]
	}
	if !found {
		t.Fatalf("the Address collection lacks %v", a["id"])
	}
	if x := d.get(m, "Accept", "application/xml"); !strings.Contains(string(x.Body), "<networkInterfaces href=") {
		t.Fatalf("XML Machine lacks networkInterfaces: %s", x.Body)
	}

	// Hot-add an interface on another network to the running guest.
	lab, labSubnet := d.isolatedNetwork("lab")
	var added string
	d.consoleSince(m, func() {
		_, added = d.accepted("hot-add", d.postJSON(href(d.get(m).JSON(t), "networkInterfaces"),
			map[string]any{"resourceURI": mnNS + "/MachineNetworkInterface", "network": map[string]any{"href": lab}, "macAddress": "52:54:00:4e:54:01"}))
	}, "TESTGUEST: NIC-ADDED eth1")
	if l := d.guestLease(m, "eth1"); !labSubnet.Contains(l.Addr()) {
		t.Fatalf("the hot-added interface leased %s, outside %s", l, labSubnet)
	}
	if got := d.get(added).JSON(t); got["state"] != "ACTIVE" || got["macAddress"] != "52:54:00:4e:54:01" {
		t.Fatalf("hot-added interface: %v", got)
	}
	if n := len(d.interfaces(m)); n != 2 {
		t.Fatalf("%d interfaces after the hot-add", n)
	}
	if dd := dumpDomain(t, domain, true); len(dd.Interfaces) != 2 {
		t.Fatalf("the persistent definition lacks the hot-added interface: %+v", dd.Interfaces)
	}

	// A network in use cannot go.
	if r := d.do(http.MethodDelete, lab, "", nil); r.Status != http.StatusConflict {
		t.Fatalf("delete of a network in use: %d %s", r.Status, r.Body)
	}

	// Hot-remove it again.
	d.consoleSince(m, func() { d.accepted("hot-remove", d.do(http.MethodDelete, added, "", nil)) }, "TESTGUEST: NIC-REMOVED eth1")
	if ifaces := d.interfaces(m); len(ifaces) != 1 || ifaces[0]["macAddress"] != mac {
		t.Fatalf("interfaces after the hot-remove: %v", ifaces)
	}
	for _, defs := range []bool{false, true} {
		if dd := dumpDomain(t, domain, defs); len(dd.Interfaces) != 1 || dd.Interfaces[0].MAC.Address != mac {
			t.Fatalf("interfaces of the domain (inactive=%v) after the hot-remove: %+v", defs, dd.Interfaces)
		}
	}

	// Deleting the Machine releases its interface and its lease's Address.
	d.deleteOK(m)
	if n := d.count("networkPorts"); n != 0 {
		t.Fatalf("%d NetworkPorts left after the delete: %s", n, d.get("networkPorts").Body)
	}
	for _, x := range d.members("addresses", "addresses") {
		if x["macAddress"] == mac {
			t.Fatalf("Address of the deleted Machine left: %v", x)
		}
	}
	d.deleteOK(lab)
}

// TestMachineNetworksAreIsolated puts two Machines on two isolated
// networks created through the API. Each gets a lease on its own network;
// the second cannot reach the first network's subnet: it has no interface
// on the first bridge, gets no route (an isolated network hands out no
// router), and the host's firewall, as libvirt sets it for isolated
// networks, rejects whatever would be forwarded to or from either bridge.
// This test checks the host's side of the guests;
// TestMachineIsolationWithTraffic sends the traffic.
func TestMachineNetworksAreIsolated(t *testing.T) {
	e := mnStart(t)
	d := e.d
	netA, subA := d.isolatedNetwork("red")
	netB, subB := d.isolatedNetwork("blue")
	if subA.Overlaps(subB) {
		t.Fatalf("the subnets overlap: %s %s", subA, subB)
	}
	nicOn := func(n string) map[string]any {
		return map[string]any{"networkInterfaces": []any{map[string]any{"network": map[string]any{"href": n}}}}
	}
	mA := e.machine("red-1", nicOn(netA))
	// The second one through the CLI, naming its network by id.
	mB := strings.TrimSpace(d.cli(cimiBinary(t), false, "machine", "create", "--name", "blue-1", "--config", e.config, "--image", e.image,
		"--network", lastSegment(netB)+",mac=52:54:00:b1:00:01"))
	leaseA, leaseB := d.guestLease(mA, "eth0"), d.guestLease(mB, "eth0")
	if !subA.Contains(leaseA.Addr()) || !subB.Contains(leaseB.Addr()) || subA.Contains(leaseB.Addr()) {
		t.Fatalf("leases %s (want in %s) and %s (want in %s)", leaseA, subA, leaseB, subB)
	}
	for m, ip := range map[string]netip.Addr{mA: leaseA.Addr(), mB: leaseB.Addr()} {
		ifaces := d.interfaces(m)
		if len(ifaces) != 1 {
			t.Fatalf("Machine %s has %d interfaces", lastSegment(m), len(ifaces))
		}
		d.waitInterfaceAddress(ifaces[0], ip.String(), 15*time.Second)
	}

	bridgeA, bridgeB := d.networkBridge(netA), d.networkBridge(netB)
	inst := d.instance()
	for _, n := range []string{netA, netB} {
		x, err := virsh("net-dumpxml", "cimid-"+inst+"-"+lastSegment(n))
		if err != nil || strings.Contains(x, "<forward") {
			t.Fatalf("network %s is not isolated in libvirt (%v):\n%s", n, err, x)
		}
	}
	dd := dumpDomain(t, "cimid-"+inst+"-"+lastSegment(mB), false)
	if len(dd.Interfaces) != 1 || dd.Interfaces[0].Source.Bridge != bridgeB || dd.Interfaces[0].MAC.Address != "52:54:00:b1:00:01" {
		t.Fatalf("interfaces of the second Machine: %+v (want one on %s, none on %s)", dd.Interfaces, bridgeB, bridgeA)
	}
	out, err := exec.Command("iptables", "-w", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v\n%s", err, out)
	}
	rules := strings.Split(string(out), "\n")
	for _, br := range []string{bridgeA, bridgeB} {
		for _, want := range []string{"-A LIBVIRT_FWI -o " + br + " -j REJECT", "-A LIBVIRT_FWO -i " + br + " -j REJECT"} {
			if !slices.ContainsFunc(rules, func(r string) bool { return strings.HasPrefix(r, want) }) {
				t.Errorf("no firewall rule %q for the isolated bridge %s", want, br)
			}
		}
		for _, r := range rules {
			forwards := strings.Contains(r, "-o "+br+" ") || strings.Contains(r, "-i "+br+" ")
			within := strings.Contains(r, "-i "+br+" -o "+br+" ")
			if strings.HasPrefix(r, "-A LIBVIRT_FW") && forwards && !within && strings.HasSuffix(r, "-j ACCEPT") {
				t.Errorf("a firewall rule forwards traffic of the isolated bridge %s: %s", br, r)
			}
		}
	}
}

// TestMachineSeedISO gives Machines a credential and userData: each gets a
// cloud-init seed ISO attached as a read-only CD-ROM, whose files, read
// back from the ISO with isoinfo, parse as cloud-init expects. The seed
// goes with its Machine.
func TestMachineSeedISO(t *testing.T) {
	e := mnStart(t)
	d := e.d
	inst := d.instance()
	key := netTestKey(t)
	cred := d.create("credentials", map[string]any{"resourceURI": mnNS + "/CredentialCreate", "name": "alice",
		"credentialTemplate": map[string]any{"userName": "alice", "key": key}})
	userData := []byte("#cloud-config\nruncmd:\n  - [touch, /run/seeded]\n")

	// A stored credential and userData, on a running Machine.
	tmpl := d.create("machineTemplates", map[string]any{"resourceURI": mnNS + "/MachineTemplateCreate", "name": "seeded",
		"machineTemplate": e.template(map[string]any{"credential": map[string]any{"href": cred},
			"userData": base64.StdEncoding.EncodeToString(userData)})})
	td := d.get(tmpl).JSON(t)
	if href(td, "credential") != cred || td["userData"] != base64.StdEncoding.EncodeToString(userData) || td["networkInterfaces"] != nil {
		t.Fatalf("template: %v", td)
	}
	m := d.create("machines", map[string]any{"resourceURI": mnNS + "/MachineCreate", "name": "Seeded One", "machineTemplate": map[string]any{"href": tmpl}})
	id := lastSegment(m)
	domain := "cimid-" + inst + "-" + id
	// The guest reads the seed from the IDE CD-ROM and finds both
	// cloud-configs, the credential's key in the second.
	for marker, want := range map[string]string{
		testguest.MarkerSeed:     "meta-data network-config user-data",
		testguest.MarkerUserData: "mime text/cloud-config text/cloud-config",
		testguest.MarkerSSHKeys:  "1",
	} {
		if got := d.consoleLine(m, marker, 2*time.Minute); got != want {
			t.Fatalf("console of the seeded Machine: %s %q, want %q", marker, got, want)
		}
	}
	d.waitConsole(m, testguest.MarkerReady)
	seed := filepath.Join(d.stateDir, "seed", "machine-"+id+"-seed.iso")
	cdrom := seedCDROM(t, domain, seed)
	if cdrom.Target.Bus != "ide" || cdrom.Target.Dev != "hdc" || cdrom.Driver.Type != "raw" {
		t.Fatalf("seed CD-ROM: %+v", cdrom)
	}
	files := readSeed(t, seed)
	// A credential and userData: the user's cloud-config, then the
	// credential's, which cloud-init merges into it appending to lists.
	parts := seedParts(t, files["user-data"])
	if len(parts) != 2 || parts[0].mediaType != "text/cloud-config" || !bytes.Equal(parts[0].body, userData) {
		t.Fatalf("user-data on the seed:\n%s\nwant the template's userData as its first part:\n%s", files["user-data"], userData)
	}
	ud := loadSeedYAML(t, parts[0].body).(map[string]any)
	if run, _ := ud["runcmd"].([]any); len(run) != 1 {
		t.Fatalf("user-data as cloud-init reads it: %v", ud)
	}
	credPart := parts[1]
	if credPart.mediaType != "text/cloud-config" || credPart.header.Get("Merge-Type") != cloudinit.MergeType {
		t.Fatalf("the credential's part: %s %v", credPart.mediaType, credPart.header)
	}
	credCC := loadSeedYAML(t, credPart.body).(map[string]any)
	if users, _ := credCC["users"].([]any); len(users) != 2 || users[1].(map[string]any)["name"] != "alice" ||
		!slices.Equal(anyStrings(users[1].(map[string]any)["ssh_authorized_keys"]), []string{key}) {
		t.Fatalf("the credential's cloud-config: %v", credCC)
	}
	md := loadSeedYAML(t, files["meta-data"]).(map[string]any)
	if md["instance-id"] != id || md["local-hostname"] != "seeded-one" || !slices.Equal(anyStrings(md["public-keys"]), []string{key}) {
		t.Fatalf("meta-data: %v", md)
	}
	nc := loadSeedYAML(t, files["network-config"]).(map[string]any)
	mac := d.interfaces(m)[0]["macAddress"]
	eth, _ := nc["ethernets"].(map[string]any)["nic0"].(map[string]any)
	if nc["version"] != float64(2) || eth["dhcp4"] != true || eth["match"].(map[string]any)["macaddress"] != mac {
		t.Fatalf("network-config: %v (the Machine's MAC is %v)", nc, mac)
	}

	// The seed CD-ROM does not stand in the way of a snapshot of the
	// running Machine (memory included), nor of its restore.
	snap := d.makeImage(m, "snapshot", "with-seed")
	d.restore(m, snap)
	if st := d.state(m); st != "STARTED" {
		t.Fatalf("Machine restored from a snapshot of it running: %s", st)
	}
	seedCDROM(t, domain, seed)

	// A key given on the command line, without userData: the seed's
	// user-data is the cloud-config that installs it.
	keyFile := filepath.Join(t.TempDir(), "id_ed25519.pub")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := cimiBinary(t)
	m2 := strings.TrimSpace(d.cli(bin, false, "machine", "create", "--name", "keyed", "--config", e.config, "--image", e.image,
		"--initial-state", "STOPPED", "--ssh-key", keyFile, "--ssh-user", "bob", "--network", "none"))
	id2 := lastSegment(m2)
	if n := len(d.interfaces(m2)); n != 0 {
		t.Fatalf("a Machine created with --network none has %d interfaces", n)
	}
	seed2 := filepath.Join(d.stateDir, "seed", "machine-"+id2+"-seed.iso")
	seedCDROM(t, "cimid-"+inst+"-"+id2, seed2)
	files2 := readSeed(t, seed2)
	if !bytes.HasPrefix(files2["user-data"], []byte("#cloud-config\n")) {
		t.Fatalf("user-data does not start with #cloud-config:\n%s", files2["user-data"])
	}
	cc := loadSeedYAML(t, files2["user-data"]).(map[string]any)
	users, _ := cc["users"].([]any)
	if len(users) != 2 || users[0] != "default" {
		t.Fatalf("users in the cloud-config: %v", cc)
	}
	bob := users[1].(map[string]any)
	if bob["name"] != "bob" || !slices.Equal(anyStrings(bob["ssh_authorized_keys"]), []string{key}) {
		t.Fatalf("user entry: %v", bob)
	}
	if nc := loadSeedYAML(t, files2["network-config"]).(map[string]any); len(nc["ethernets"].(map[string]any)) != 0 {
		t.Fatalf("network-config of a Machine without interfaces: %v", nc)
	}

	// What made these seeds is advertised.
	caps := map[string]string{}
	for _, c := range d.get("resourceMetadata/Machine").JSON(t)["capabilities"].([]any) {
		c := c.(map[string]any)
		v, _ := c["value"].(string)
		caps[c["uri"].(string)] = v
	}
	if caps[mnNS+"/capability/Machine/UserData"] != "disk" || caps[mnNS+"/capability/Machine/MachineCredentialByValue"] != "true" {
		t.Fatalf("Machine capabilities: %v", caps)
	}

	// A Machine without credential or userData has no seed.
	m3 := e.machine("plain", map[string]any{"initialState": "STOPPED"})
	for _, disk := range dumpDomain(t, "cimid-"+inst+"-"+lastSegment(m3), true).Disks {
		if disk.Device == "cdrom" {
			t.Fatalf("a Machine without credential or userData has a CD-ROM: %+v", disk)
		}
	}

	// The seed goes with its Machine.
	for _, x := range []string{m, m2, m3} {
		d.deleteOK(x)
	}
	for _, f := range []string{seed, seed2} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("seed %s after its Machine was deleted: %v", f, err)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(d.stateDir, "seed")); len(left) != 0 {
		t.Fatalf("files left in the seed directory: %v", left)
	}
}

// seedPart is one part of a multipart user-data file, its body decoded.
type seedPart struct {
	mediaType string
	header    textproto.MIMEHeader
	body      []byte
}

// seedParts reads a multipart user-data file with mime/multipart.
func seedParts(t *testing.T, doc []byte) []seedPart {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("user-data is not a MIME document (%v):\n%s", err, doc)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || msg.Header.Get("Mime-Version") != "1.0" {
		t.Fatalf("user-data header: %v (%v)", msg.Header, err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var parts []seedPart
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatalf("user-data part %d: %v\n%s", len(parts)+1, err, doc)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			if body, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\n", "")); err != nil {
				t.Fatal(err)
			}
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts = append(parts, seedPart{mediaType: pt, header: p.Header, body: body})
	}
}

// consoleLine waits for a line holding marker on a Machine's console and
// returns what follows the marker, trimmed. The log is left as it is.
func (d *daemon) consoleLine(machine, marker string, timeout time.Duration) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line, err := testguest.WaitConsole(ctx, d.console(machine), marker)
	if err != nil {
		d.t.Fatalf("console of %s: %v", lastSegment(machine), err)
	}
	return strings.TrimSpace(line[strings.Index(line, marker)+len(marker):])
}

// TestMachineSeedReachesGuest boots two Machines that have a credential
// and userData and reads on their consoles that the guest mounted the
// seed, found the keys and ran the scripts. The first has a stored
// credential and a shell script; the second a credential by value and a
// multipart document of its own holding a script and a cloud-config with
// another key, which the guest finds besides the credential's.
func TestMachineSeedReachesGuest(t *testing.T) {
	e := mnStart(t)
	d := e.d
	cred := d.create("credentials", map[string]any{"resourceURI": mnNS + "/CredentialCreate", "name": "alice",
		"credentialTemplate": map[string]any{"userName": "alice", "key": netTestKey(t)}})
	hello := "#!/bin/sh\necho \"TESTGUEST: HELLO $(head -n 1 /run/seed/meta-data)\"\n"
	own := "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"own\"\n\n" +
		"--own\nContent-Type: text/x-shellscript\n\n" + hello +
		"--own\nContent-Type: text/cloud-config\n\n#cloud-config\nssh_authorized_keys:\n  - " + netTestKey(t) + "\n" +
		"--own--\n"
	noNICs := []any{}
	m1 := e.machine("scripted", map[string]any{"networkInterfaces": noNICs, "credential": map[string]any{"href": cred},
		"userData": base64.StdEncoding.EncodeToString([]byte(hello))})
	m2 := e.machine("multipart", map[string]any{"networkInterfaces": noNICs,
		"credential": map[string]any{"userName": "bob", "key": netTestKey(t)},
		"userData":   base64.StdEncoding.EncodeToString([]byte(own))})
	for _, c := range []struct {
		m        string
		userData string
		keys     string
	}{
		{m1, "mime text/x-shellscript text/cloud-config", "1"},
		{m2, "mime text/x-shellscript text/cloud-config text/cloud-config", "2"},
	} {
		for _, w := range [][2]string{
			{testguest.MarkerSeed, "meta-data network-config user-data"},
			{testguest.MarkerUserData, c.userData},
			{testguest.MarkerSSHKeys, c.keys},
			{"TESTGUEST: HELLO", `instance-id: "` + lastSegment(c.m) + `"`},
			{testguest.MarkerScriptExit, "1 0"},
		} {
			if got := d.consoleLine(c.m, w[0], 2*time.Minute); got != w[1] {
				t.Errorf("console of %s: %s %q, want %q", lastSegment(c.m), w[0], got, w[1])
			}
		}
	}
}

// seedCDROM checks that the persistent definition of domain has the seed
// as a read-only CD-ROM and returns that disk.
func seedCDROM(t *testing.T, domain, seed string) domainDisk {
	t.Helper()
	dd := dumpDomain(t, domain, true)
	for _, disk := range dd.Disks {
		if disk.Device == "cdrom" {
			if disk.Source.File != seed || disk.ReadOnly == nil {
				t.Fatalf("CD-ROM of %s: %+v, want the read-only seed %s", domain, disk, seed)
			}
			return disk
		}
	}
	t.Fatalf("domain %s has no CD-ROM: %+v", domain, dd.Disks)
	return domainDisk{}
}

// readSeed reads the files of a seed ISO with isoinfo, through their
// Joliet names as a guest does, and checks the volume label.
func readSeed(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out, err := exec.Command("isoinfo", "-d", "-i", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Volume id: cidata") {
		t.Fatalf("isoinfo -d %s: %v\n%s", path, err, out)
	}
	out, err = exec.Command("isoinfo", "-J", "-f", "-i", path).CombinedOutput()
	if got := strings.Join(strings.Fields(string(out)), ","); err != nil || got != "/meta-data,/network-config,/user-data" {
		t.Fatalf("isoinfo -f %s: %v: %s", path, err, out)
	}
	files := map[string][]byte{}
	for _, name := range []string{"meta-data", "network-config", "user-data"} {
		data, err := exec.Command("isoinfo", "-J", "-i", path, "-x", "/"+name).Output()
		if err != nil {
			t.Fatalf("isoinfo -x /%s: %v", name, err)
		}
		files[name] = data
	}
	return files
}

// loadSeedYAML parses data with PyYAML, the parser cloud-init uses.
func loadSeedYAML(t *testing.T, data []byte) any {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", "import sys, yaml, json; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("PyYAML cannot load\n%s\n%v: %s", data, err, out)
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestMachineNetworkBadInput sends Machines and MachineTemplates with bad
// interfaces, credentials and userData: each gets a 4xx with a message
// saying what was wrong, and nothing is created, in the API or in libvirt.
func TestMachineNetworkBadInput(t *testing.T) {
	e := mnStart(t)
	d := e.d
	inst := d.instance()
	lab, _ := d.isolatedNetwork("lab")
	nic := func(attrs map[string]any) map[string]any {
		return map[string]any{"networkInterfaces": []any{attrs}}
	}
	onLab := func(attrs map[string]any) map[string]any {
		attrs["network"] = map[string]any{"href": lab}
		return nic(attrs)
	}
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 64<<10+1))
	cases := []struct {
		what   string
		extra  map[string]any
		status int
		words  []string
	}{
		{"invalid MAC", onLab(map[string]any{"macAddress": "52:54:00:zz:00:01"}), http.StatusBadRequest, []string{"networkInterfaces[0]", "52:54:00:zz:00:01"}},
		{"multicast MAC", onLab(map[string]any{"macAddress": "01:00:5e:00:00:01"}), http.StatusBadRequest, []string{"networkInterfaces[0]"}},
		{"unknown network", nic(map[string]any{"network": map[string]any{"href": "networks/nosuch"}}), http.StatusBadRequest, []string{"networkInterfaces[0]", "nosuch"}},
		{"network href of another collection", nic(map[string]any{"network": map[string]any{"href": e.image}}), http.StatusBadRequest, []string{"networkInterfaces[0]", "Network"}},
		{"interface without network", nic(map[string]any{"model": "virtio"}), http.StatusBadRequest, []string{"network is required"}},
		{"unknown model", onLab(map[string]any{"model": "ne2k"}), http.StatusBadRequest, []string{"ne2k"}},
		{"same MAC twice", map[string]any{"networkInterfaces": []any{
			map[string]any{"network": map[string]any{"href": lab}, "macAddress": "52:54:00:00:00:aa"},
			map[string]any{"network": map[string]any{"href": lab}, "macAddress": "52:54:00:00:00:AA"}}}, http.StatusBadRequest, []string{"twice"}},
		{"malformed SSH key", map[string]any{"credential": map[string]any{"userName": "alice", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"}}, http.StatusBadRequest, []string{"key"}},
		{"unknown credential", map[string]any{"credential": map[string]any{"href": "credentials/nosuch"}}, http.StatusBadRequest, []string{"nosuch"}},
		{"userData not Base64", map[string]any{"userData": "#cloud-config\nruncmd: []"}, http.StatusBadRequest, []string{"userData", "base64"}},
		{"userData over the limit", map[string]any{"userData": big}, http.StatusBadRequest, []string{"userData", "limit"}},
		{"gzip'd userData that does not decompress", map[string]any{"userData": base64.StdEncoding.EncodeToString([]byte("\x1f\x8b\x08\x00"))},
			http.StatusBadRequest, []string{"userData is gzip'd but does not decompress"}},
		{"MIME userData without a boundary", map[string]any{"userData": base64.StdEncoding.EncodeToString([]byte("MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x--\n"))},
			http.StatusBadRequest, []string{"userData is a MIME multipart/mixed document without a boundary"}},
	}
	before := d.count("machines")
	for _, c := range cases {
		r := d.postJSON("machines", map[string]any{"resourceURI": mnNS + "/MachineCreate", "name": "bad", "machineTemplate": e.template(c.extra)})
		wantStatus(t, "Machine with "+c.what, r, c.status, c.words...)
		r = d.postJSON("machineTemplates", map[string]any{"resourceURI": mnNS + "/MachineTemplateCreate", "name": "bad", "machineTemplate": e.template(c.extra)})
		wantStatus(t, "MachineTemplate with "+c.what, r, c.status, c.words...)
	}

	// The same through XML, and as overrides of a stored template.
	xmlBody := `<MachineCreate xmlns="` + mnNS + `"><name>bad</name><machineTemplate><machineConfig href="` + e.config + `"/><machineImage href="` + e.image +
		`"/><networkInterface><network href="` + lab + `"/><macAddress>not-a-mac</macAddress></networkInterface></machineTemplate></MachineCreate>`
	wantStatus(t, "XML Machine with an invalid MAC", d.do(http.MethodPost, "machines", "application/xml", []byte(xmlBody)), http.StatusBadRequest, "not-a-mac")
	tmpl := d.create("machineTemplates", map[string]any{"resourceURI": mnNS + "/MachineTemplateCreate", "name": "good", "machineTemplate": e.template(nil)})
	for _, c := range cases {
		over := map[string]any{"href": tmpl}
		for k, v := range c.extra {
			over[k] = v
		}
		r := d.postJSON("machines", map[string]any{"resourceURI": mnNS + "/MachineCreate", "name": "bad", "machineTemplate": over})
		wantStatus(t, "override with "+c.what, r, c.status, c.words...)
	}

	if n := d.count("machines"); n != before {
		t.Fatalf("%d Machines after refused creates, want %d", n, before)
	}
	if n := d.count("machineTemplates"); n != 1 {
		t.Fatalf("%d MachineTemplates after refused creates, want 1", n)
	}
	if n := d.count("networkPorts"); n != 0 {
		t.Fatalf("%d NetworkPorts after refused creates", n)
	}
	if doms := faultDomainsWithPrefix(t, "cimid-"+inst+"-"); len(doms) != 0 {
		t.Fatalf("domains after refused creates: %v", doms)
	}
	if left, _ := os.ReadDir(filepath.Join(d.stateDir, "seed")); len(left) != 0 {
		t.Fatalf("seed files after refused creates: %v", left)
	}
}
