package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// removeNetworks stops and undefines every libvirt network named with prefix.
func removeInstanceNetworks(prefix string) {
	out, err := virsh("net-list", "--all", "--name")
	if err != nil {
		return
	}
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, prefix) {
			virsh("net-destroy", n)
			virsh("net-undefine", n)
		}
	}
}

// removeTestDomains powers off and undefines the domains named with prefix
// that an earlier run left.
func removeTestDomains(prefix string) {
	out, err := virsh("list", "--all", "--name")
	if err != nil {
		return
	}
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, prefix) {
			virsh("destroy", n)
			virsh("undefine", n)
		}
	}
}

// testDomainPrefix names the domains these tests define with virsh.
const testDomainPrefix = "cimid-nettest-"

// libvirtSubnets reads the IPv4 subnets of every libvirt network but skip.
func netLibvirtSubnets(t *testing.T, skip string) map[string]netip.Prefix {
	t.Helper()
	out, err := virsh("net-list", "--all", "--name")
	if err != nil {
		t.Fatalf("virsh net-list: %v: %s", err, out)
	}
	re := regexp.MustCompile(`<ip address='([0-9.]+)' netmask='([0-9.]+)'`)
	subnets := map[string]netip.Prefix{}
	for _, n := range strings.Fields(out) {
		if n == skip {
			continue
		}
		x, err := virsh("net-dumpxml", n)
		if err != nil {
			continue // removed meanwhile
		}
		for _, m := range re.FindAllStringSubmatch(x, -1) {
			addr := netip.MustParseAddr(m[1])
			mask := netip.MustParseAddr(m[2]).As4()
			bits := 0
			for _, b := range mask {
				for ; b != 0; b <<= 1 {
					bits++
				}
			}
			subnets[n] = netip.PrefixFrom(addr, bits).Masked()
		}
	}
	return subnets
}

func netCreateBody(config map[string]any) map[string]any {
	return map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/NetworkCreate", "name": "nettest",
		"networkTemplate": map[string]any{"networkConfig": config}}
}

func (d *daemon) netRefuse(path string, body map[string]any, status int, msg string) {
	d.t.Helper()
	r := d.postJSON(path, body)
	if r.Status != status || !strings.Contains(string(r.Body), msg) {
		d.t.Fatalf("POST %s %v: %d %s, want %d with %q", path, body, r.Status, r.Body, status, msg)
	}
}

func (d *daemon) netCount(collection string) int {
	d.t.Helper()
	return int(d.get(collection).JSON(d.t)["count"].(float64))
}

func TestNetworksOnLibvirt(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	inst := d.instance()
	defName := "cimid-" + inst + "-default"

	// The default network runs, is persistent and autostarted, carries
	// our mark, and shares its subnet with no other libvirt network.
	def := d.get("networks/default").JSON(t)
	if def["state"] != "STARTED" {
		t.Fatalf("default network: %v", def)
	}
	info, err := virsh("net-info", defName)
	if err != nil {
		t.Fatalf("virsh net-info %s: %v: %s", defName, err, info)
	}
	for _, want := range []string{`Active:\s+yes`, `Persistent:\s+yes`, `Autostart:\s+yes`} {
		if !regexp.MustCompile(want).MatchString(info) {
			t.Errorf("net-info %s lacks %s:\n%s", defName, want, info)
		}
	}
	xml, _ := virsh("net-dumpxml", defName)
	if !strings.Contains(xml, inst) || !strings.Contains(xml, "<ip address='"+def["gateway"].(string)+"'") {
		t.Errorf("%s lacks our mark or its gateway:\n%s", defName, xml)
	}
	if hasForward := strings.Contains(xml, "<forward mode='nat'"); hasForward != (def["forwardMode"] == "nat") {
		t.Errorf("forwardMode %v but the libvirt definition says otherwise:\n%s", def["forwardMode"], xml)
	}
	defSubnet := netip.MustParsePrefix(def["subnet"].(string))
	for name, p := range netLibvirtSubnets(t, defName) {
		if p.Overlaps(defSubnet) {
			t.Errorf("default subnet %s overlaps %s of %s", defSubnet, p, name)
		}
	}
	cep := d.get("cloudEntryPoint").JSON(t)
	for _, key := range []string{"networks", "networkConfigs", "networkTemplates", "networkPorts", "addresses", "addressTemplates", "credentials", "credentialTemplates"} {
		if cep[key] == nil {
			t.Errorf("the entry point lacks %s", key)
		}
	}

	// An isolated network on a subnet chosen free, from a stored template.
	cfg := d.create("networkConfigs", map[string]any{"name": "isolated", "forwardMode": "isolated"})
	tmpl := d.create("networkTemplates", map[string]any{"name": "isolated", "networkConfig": map[string]any{"href": cfg}})
	loc := d.create("networks", map[string]any{"name": "lab", "networkTemplate": map[string]any{"href": tmpl}})
	n := d.get(loc).JSON(t)
	name := "cimid-" + inst + "-" + lastSegment(loc)
	if n["state"] != "STARTED" || n["forwardMode"] != "isolated" || n["bridge"] == "" {
		t.Fatalf("isolated network: %v", n)
	}
	xml, err = virsh("net-dumpxml", name)
	if err != nil || strings.Contains(xml, "<forward") {
		t.Fatalf("isolated network in libvirt (%v):\n%s", err, xml)
	}
	sub := netip.MustParsePrefix(n["subnet"].(string))
	for other, p := range netLibvirtSubnets(t, name) {
		if p.Overlaps(sub) {
			t.Errorf("chosen subnet %s overlaps %s of %s", sub, p, other)
		}
	}

	// Bad input: 4xx with a message, nothing created.
	before := d.netCount("networks")
	d.netRefuse("networks", netCreateBody(map[string]any{"subnet": defSubnet.String()}), http.StatusConflict, "overlaps")
	first := sub.Addr().Next().Next()
	d.netRefuse("networks", netCreateBody(map[string]any{"subnet": "10.239.250.0/24", "dhcpRange": "10.239.251.10-10.239.251.20"}), http.StatusBadRequest, "outside the usable addresses")
	d.netRefuse("networks", netCreateBody(map[string]any{"subnet": "10.239.250.0/33"}), http.StatusBadRequest, "not an IPv4 CIDR")
	d.netRefuse("networks", netCreateBody(map[string]any{"forwardMode": "route"}), http.StatusBadRequest, "nat or isolated")
	d.netRefuse("networks", netCreateBody(map[string]any{"subnet": sub.String(), "dhcpRange": first.String() + "-" + first.Next().String()}), http.StatusConflict, "overlaps")
	r := d.do(http.MethodPost, "networks", "application/xml", []byte(`<NetworkCreate xmlns="http://schemas.dmtf.org/cimi/1"><networkTemplate><networkConfig><subnet>10.239.250.0/24</subnet><dhcpRange>10.239.250.1-10.239.250.9</dhcpRange></networkConfig></networkTemplate></NetworkCreate>`))
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "gateway") {
		t.Fatalf("XML create with the gateway in the DHCP range: %d %s", r.Status, r.Body)
	}
	if got := d.netCount("networks"); got != before {
		t.Fatalf("%d networks after refused creates, want %d", got, before)
	}
	if out, _ := virsh("net-list", "--all", "--name"); strings.Count(out, "cimid-"+inst+"-") != 2 {
		t.Fatalf("libvirt networks of this instance after refused creates:\n%s", out)
	}

	// A restart adopts both networks as they are.
	d.stop()
	d = startDaemon(t, d.stateDir)
	if got := d.get(loc).JSON(t); got["state"] != "STARTED" || got["subnet"] != n["subnet"] {
		t.Fatalf("after a restart: %v", got)
	}
	if got := d.get("networks/default").JSON(t); got["subnet"] != def["subnet"] {
		t.Fatalf("default network after a restart: %v", got)
	}

	// Delete: the libvirt network goes, then the resource.
	r = d.do(http.MethodDelete, loc, "", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if j := d.waitJob(r.Header.Get("CIMI-Job-URI"), time.Minute); j["state"] != "SUCCESS" {
		t.Fatalf("delete job: %v", j)
	}
	if out, err := virsh("net-info", name); err == nil {
		t.Fatalf("libvirt network %s still exists:\n%s", name, out)
	}
	if r := d.get(loc); r.Status != http.StatusNotFound {
		t.Fatalf("deleted network: %d %s", r.Status, r.Body)
	}
	if r := d.do(http.MethodDelete, "networks/default", "", nil); r.Status != http.StatusConflict {
		t.Fatalf("delete of the default network: %d %s", r.Status, r.Body)
	}
}

func netTestKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blob []byte
	for _, f := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(f)))
		blob = append(blob, f...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " nettest@cimid"
}

func TestCredentialsAPI(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	key := netTestKey(t)
	loc := d.create("credentials", map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/CredentialCreate", "name": "alice",
		"credentialTemplate": map[string]any{"userName": "alice", "key": key, "password": "a long password"}})
	r := d.get(loc)
	c := r.JSON(t)
	if c["userName"] != "alice" || c["key"] != key || c["hasPassword"] != true {
		t.Fatalf("credential: %v", c)
	}
	if strings.Contains(string(r.Body), "long password") || strings.Contains(string(r.Body), "$6$") {
		t.Fatalf("the password shows: %s", r.Body)
	}
	if x := d.get(loc, "Accept", "application/xml"); !strings.Contains(string(x.Body), "<userName>alice</userName>") {
		t.Fatalf("XML credential: %s", x.Body)
	}
	before := d.netCount("credentials")
	d.netRefuse("credentials", map[string]any{"credentialTemplate": map[string]any{"userName": "alice", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"}}, http.StatusBadRequest, "key")
	d.netRefuse("credentials", map[string]any{"credentialTemplate": map[string]any{"userName": "alice", "key": strings.Replace(key, "ssh-ed25519", "ssh-rsa", 1)}}, http.StatusBadRequest, "the line says ssh-rsa")
	r = d.do(http.MethodPost, "credentials", "application/xml", []byte(`<CredentialCreate xmlns="http://schemas.dmtf.org/cimi/1"><credentialTemplate><userName>bob</userName><key>not a key</key></credentialTemplate></CredentialCreate>`))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("XML credential with a malformed key: %d %s", r.Status, r.Body)
	}
	if got := d.netCount("credentials"); got != before {
		t.Fatalf("%d credentials after refused creates, want %d", got, before)
	}
}

// TestLeasesBecomeAddresses boots the test guest with virsh on a network
// the agent created: the DHCP lease of one NIC shows as a dynamic Address,
// and the other NIC gets the static Address reserved for its MAC.
func TestLeasesBecomeAddresses(t *testing.T) {
	g := testguest.Build(t)
	removeTestDomains(testDomainPrefix)
	d := startDaemon(t, newStateDir(t))
	inst := d.instance()
	loc := d.create("networks", netCreateBody(map[string]any{"forwardMode": "isolated"}))
	n := d.get(loc).JSON(t)
	sub := netip.MustParsePrefix(n["subnet"].(string))
	staticIP := sub.Addr().Next().Next().Next().Next().Next().Next().Next() // .7
	macA, macB := "52:54:00:7e:57:0a", "52:54:00:7e:57:0b"
	static := d.create("addresses", map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/AddressCreate",
		"addressTemplate": map[string]any{"ip": staticIP.String(), "macAddress": macB, "hostname": "second", "network": map[string]any{"href": loc}}})
	d.netRefuse("addresses", map[string]any{"addressTemplate": map[string]any{"ip": staticIP.String(), "network": map[string]any{"href": loc}}}, http.StatusConflict, "already reserved")
	d.netRefuse("addresses", map[string]any{"addressTemplate": map[string]any{"ip": sub.Addr().Next().String(), "network": map[string]any{"href": loc}}}, http.StatusBadRequest, "gateway")

	dir := testguest.TempDir(t)
	console := filepath.Join(dir, "console.log")
	name := testDomainPrefix + inst
	xml := fmt.Sprintf(`<domain type='%s'>
  <name>%s</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <interface type='network'><source network='%s'/><mac address='%s'/><model type='virtio'/></interface>
    <interface type='network'><source network='%s'/><mac address='%s'/><model type='virtio'/></interface>
    <serial type='pty'><log file='%s' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
`, testguest.DomainType(), name, g.Kernel, g.Initrd, "cimid-"+inst+"-"+lastSegment(loc), macA, "cimid-"+inst+"-"+lastSegment(loc), macB, console)
	xmlPath := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(xmlPath, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := virsh("create", xmlPath); err != nil {
		t.Fatalf("virsh create: %v: %s", err, out)
	}
	t.Cleanup(func() { virsh("destroy", name) })

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ips := map[string]string{}
	for _, ifc := range []string{"eth0", "eth1"} {
		line, err := testguest.WaitConsole(ctx, console, "TESTGUEST: NET "+ifc+" ")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(line[strings.Index(line, "TESTGUEST: NET "):])
		if len(f) != 4 || f[3] == "none" {
			t.Fatalf("no lease on %s: %q", ifc, line)
		}
		ips[ifc] = strings.Split(f[3], "/")[0]
	}
	// The guest's NICs come up in MAC order here, but the test does not rely on it.
	var dynIP string
	for _, ip := range ips {
		if ip != staticIP.String() {
			dynIP = ip
		}
	}
	if dynIP == "" || (ips["eth0"] != staticIP.String() && ips["eth1"] != staticIP.String()) {
		t.Fatalf("guest addresses %v: want %s on one NIC and a dynamic one on the other", ips, staticIP)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		var found map[string]any
		for _, a := range netMembers(d.get("addresses").JSON(t), "addresses") {
			if a["ip"] == dynIP {
				found = a
			}
		}
		if found != nil {
			if found["allocation"] != "dynamic" || found["macAddress"] != macA || found["network"].(map[string]any)["href"] != loc || found["mask"] == "" {
				t.Fatalf("dynamic address: %v", found)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Address for the lease %s after 30 s: %s", dynIP, d.get("addresses").Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := d.get(static).JSON(t); s["allocation"] != "static" || s["ip"] != staticIP.String() || s["macAddress"] != macB {
		t.Fatalf("static address: %v", s)
	}
}

func netMembers(coll map[string]any, key string) []map[string]any {
	items, _ := coll[key].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
