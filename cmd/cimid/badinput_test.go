package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// The test in this file feeds every create and action endpoint the daemon
// offers broken bodies, in JSON and in XML: malformed, truncated,
// oversized, deeply nested, wrong-typed, with unknown attributes, empty,
// with the wrong Content-Type, and binary garbage. The endpoints are found
// the way a client finds them: collections with an "add" operation, from
// the CloudEntryPoint and from the members' sub-collections, and the
// actions the existing members offer. Every answer must be a 4xx with a
// CIMI error body that says what was wrong; the daemon must stay up and
// nothing may be created.

const badNS = "http://schemas.dmtf.org/cimi/1"

// badEndpoint is one place that takes a request body.
type badEndpoint struct {
	name string // "machines", "Machine.volumes", "Machine/start"
	href string
	// valid is a body the endpoint accepts, or nil when none is known; the
	// wrong-typed and unknown-attribute variants are derived from it.
	valid map[string]any
	// optional marks endpoints whose body may be left out: actions
	// without parameters, capture and snapshot. An empty body is not a
	// broken one there.
	optional bool
	// control sends the valid body once at the end, in XML, to show that
	// the refusals were earned by the damage and not by the body itself.
	control bool
}

// badCase is one broken request.
type badCase struct {
	kind        string // the family, for the summary
	what        string
	contentType string
	body        []byte
	want        int // the exact status expected; 0 for any 4xx
}

// badEnv holds the resources the valid bodies refer to.
type badEnv struct {
	base, config, image, machine, volume, network, disk, ova string
	ips                                                      []string
}

// badValidBodies are the valid bodies of the create endpoints, by
// endpoint name, and of the actions whose body is not a plain Action.
func badValidBodies(e badEnv) map[string]map[string]any {
	typed := func(typ string, m map[string]any) map[string]any {
		m["resourceURI"] = badNS + "/" + typ
		return m
	}
	props := func() map[string]any { return map[string]any{"owner": "badinput"} }
	ref := func(href string) map[string]any { return map[string]any{"href": href} }
	return map[string]map[string]any{
		"machineConfigs": typed("MachineConfigurationCreate", map[string]any{"name": "bad", "description": "d", "properties": props(),
			"cpu": 1, "memory": 160 * 1024, "disks": []any{map[string]any{"capacity": 65536, "initialLocation": "vdb"}}}),
		"machineTemplates": typed("MachineTemplateCreate", map[string]any{"name": "bad", "properties": props(),
			"machineTemplate": map[string]any{"machineConfig": ref(e.config), "machineImage": ref(e.image), "initialState": "STOPPED"}}),
		"machineImages": typed("MachineImageCreate", map[string]any{"name": "bad", "type": "IMAGE", "imageLocation": "file://" + e.disk}),
		"machines": typed("MachineCreate", map[string]any{"name": "bad", "description": "d", "properties": props(),
			"machineTemplate": map[string]any{"machineConfig": ref(e.config), "machineImage": ref(e.image), "initialState": "STOPPED",
				"networkInterfaces": []any{map[string]any{"network": ref(e.network), "model": "virtio"}}}}),
		"credentialTemplates": typed("CredentialTemplateCreate", map[string]any{"name": "bad", "userName": "alice", "password": "correct-horse"}),
		"credentials": typed("CredentialCreate", map[string]any{"name": "bad",
			"credentialTemplate": map[string]any{"userName": "alice", "password": "correct-horse"}}),
		"volumeConfigs": typed("VolumeConfigurationCreate", map[string]any{"name": "bad", "capacity": 65536, "diskFormat": "qcow2"}),
		"volumeTemplates": typed("VolumeTemplateCreate", map[string]any{"name": "bad",
			"volumeTemplate": map[string]any{"volumeConfig": map[string]any{"capacity": 65536}}}),
		"volumes": typed("VolumeCreate", map[string]any{"name": "bad", "properties": props(),
			"volumeTemplate": map[string]any{"volumeConfig": map[string]any{"capacity": 65536, "diskFormat": "qcow2"}}}),
		"volumeImages":   typed("VolumeImageCreate", map[string]any{"name": "bad", "imageLocation": "file://" + e.disk, "bootable": true}),
		"networkConfigs": typed("NetworkConfigurationCreate", map[string]any{"name": "bad", "forwardMode": "isolated", "mtu": 1500}),
		"networkTemplates": typed("NetworkTemplateCreate", map[string]any{"name": "bad",
			"networkTemplate": map[string]any{"networkConfig": map[string]any{"forwardMode": "isolated"}}}),
		"networks": typed("NetworkCreate", map[string]any{"name": "bad",
			"networkTemplate": map[string]any{"networkConfig": map[string]any{"forwardMode": "isolated"}}}),
		"addressTemplates": typed("AddressTemplateCreate", map[string]any{"name": "bad", "ip": e.ips[0], "network": ref(e.network)}),
		"addresses": typed("AddressCreate", map[string]any{"name": "bad",
			"addressTemplate": map[string]any{"ip": e.ips[1], "network": ref(e.network)}}),
		"meters": typed("MeterCreate", map[string]any{"name": "bad",
			"meterTemplate": map[string]any{"targetResource": ref(e.machine), "meterConfig": ref(e.base + "meterConfigs/cpu")}}),
		"Machine.volumes": typed("MachineVolume", map[string]any{"initialLocation": "vdb", "volume": ref(e.volume)}),
		"Machine.networkInterfaces": typed("MachineNetworkInterface", map[string]any{"name": "bad", "network": ref(e.network),
			"model": "virtio", "properties": props()}),
		// Systems come from OVF packages; the valid bodies name one that
		// does not exist, so they are not sent as controls.
		"systemTemplates": typed("SystemTemplateCreate", map[string]any{"name": "bad", "properties": props(),
			"importImage": "file://" + e.ova}),
		"systems": typed("SystemCreate", map[string]any{"name": "bad",
			"systemTemplate": map[string]any{"importImage": "file://" + e.ova}}),
		"systemTemplates/import": typed("Action", map[string]any{"action": badNS + "/action/import",
			"source": "file://" + e.ova, "format": "application/ovf"}),
		"systems/import": typed("Action", map[string]any{"action": badNS + "/action/import",
			"source": "file://" + e.ova, "format": "application/ovf"}),
		"Machine/capture":  typed("MachineImageCreate", map[string]any{"name": "bad", "imageLocation": e.machine}),
		"Machine/snapshot": typed("MachineImageCreate", map[string]any{"name": "bad", "imageLocation": e.machine}),
		"Volume/snapshot":  typed("VolumeImageCreate", map[string]any{"name": "bad", "imageLocation": e.volume}),
	}
}

// badControls are the endpoints whose valid body is sent for real at the
// end: the creates, except those whose body names a package that does not
// exist, and the actions that neither boot a guest nor copy a disk.
var badControls = map[string]bool{"Job/stop": true, "Volume/snapshot": true, "systems": false, "systemTemplates": false}

// badBodyRequired are the actions that need a body; the others take an
// empty one as "no parameters".
var badBodyRequired = map[string]bool{"Machine/restore": true, "systemTemplates/import": true}

func TestBadInputAtScale(t *testing.T) {
	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	cleanupInstanceLibvirt(t, d)
	started := time.Now()

	// members whose operations offer actions
	env := badEnv{base: "http://localhost/cimi/", disk: guest.Disk, network: "http://localhost/cimi/networks/default",
		ova: filepath.Join(d.stateDir, "absent.ova")}
	env.image = d.registerImage(guest.Disk)
	env.config = d.tinyConfig()
	d.create("machineTemplates", map[string]any{"name": "tpl", "machineTemplate": map[string]any{
		"machineConfig": map[string]any{"href": env.config}, "machineImage": map[string]any{"href": env.image}, "initialState": "STOPPED"}})
	env.machine = d.createMachine(env.config, env.image, "STOPPED")
	env.volume = d.create("volumes", map[string]any{"name": "vol", "volumeTemplate": map[string]any{"volumeConfig": map[string]any{"capacity": 65536}}})
	if r := d.postJSON("test/sleep", map[string]any{"seconds": 300}); r.Status != http.StatusAccepted {
		t.Fatalf("sleep Job: %d %s", r.Status, r.Body)
	}
	subnet, err := netip.ParsePrefix(d.get(env.network).JSON(t)["subnet"].(string))
	if err != nil {
		t.Fatalf("subnet of the default network: %v", err)
	}
	ip := subnet.Addr()
	for range 20 {
		ip = ip.Next()
	}
	env.ips = []string{ip.String(), ip.Next().String()}

	endpoints, collections := d.badDiscover(t, badValidBodies(env))
	before := d.badInventory(t, collections)
	t.Logf("setup took %v; %d endpoints: %v", time.Since(started).Round(time.Millisecond), len(endpoints), badNames(endpoints))

	// the sweep
	var sent, failures int
	statuses := map[string]map[int]int{}
	samples := map[string]string{} // one statusMessage per family and format
	for _, ep := range endpoints {
		for _, xmlFormat := range []bool{false, true} {
			for _, c := range badCases(ep, xmlFormat) {
				sent++
				if msg := d.badCheck(ep, xmlFormat, c, statuses, samples); msg != "" {
					failures++
					if failures <= 40 {
						t.Error(msg)
					}
				}
			}
		}
	}
	if failures > 40 {
		t.Errorf("... and %d more refusals went wrong", failures-40)
	}
	t.Logf("%d broken requests in %v; statuses by family: %v", sent, time.Since(started).Round(time.Millisecond), statuses)
	for _, k := range slices.Sorted(maps.Keys(samples)) {
		t.Logf("for example, %s: %s", k, samples[k])
	}

	// still up, nothing created
	select {
	case <-d.exited:
		t.Fatalf("cimid exited during the sweep:\n%s", d.logText())
	default:
	}
	if r := d.get("cloudEntryPoint"); r.Status != http.StatusOK {
		t.Fatalf("cloudEntryPoint after the sweep: %d %s", r.Status, r.Body)
	}
	if after := d.badInventory(t, collections); after != before {
		t.Errorf("broken requests changed what exists:\nbefore: %s\nafter:  %s", before, after)
	}
	checkDaemonLog(t, d)
	if t.Failed() {
		return
	}

	// the valid bodies are accepted: the refusals were earned
	var jobs []string
	for _, ep := range endpoints {
		if !ep.control || ep.valid == nil {
			continue
		}
		r := d.do(http.MethodPost, ep.href, "application/xml", badXML(ep.valid), "Accept", "application/json")
		if r.Status/100 != 2 {
			t.Errorf("%s: the valid body, in XML, was refused: %d %s\n%s", ep.name, r.Status, r.Body, badXML(ep.valid))
			continue
		}
		if j := r.Header.Get("CIMI-Job-URI"); j != "" {
			jobs = append(jobs, ep.name+" "+j)
		}
	}
	// let the Jobs end before the daemon is killed
	deadline := time.Now().Add(30 * time.Second)
	for _, j := range jobs {
		name, uri, _ := strings.Cut(j, " ")
		for time.Now().Before(deadline) {
			doc := d.get(uri).JSON(t)
			if st := doc["state"]; st != "QUEUED" && st != "RUNNING" && st != "STOPPING" {
				if st != "SUCCESS" {
					t.Logf("control %s: Job %v: %v", name, st, doc["statusMessage"])
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("done in %v", time.Since(started).Round(time.Millisecond))
}

// cleanupInstanceLibvirt removes, when the test ends, the domains and
// storage pool named after the daemon's instance.
func cleanupInstanceLibvirt(t *testing.T, d *daemon) {
	t.Helper()
	prefix := "cimid-" + d.instance()
	t.Cleanup(func() {
		d.kill()
		if out, err := virsh("list", "--all", "--name"); err == nil {
			for _, n := range strings.Fields(out) {
				if strings.HasPrefix(n, prefix+"-") {
					virsh("destroy", n)
					virsh("undefine", "--managed-save", "--snapshots-metadata", n)
				}
			}
		}
		virsh("pool-destroy", prefix)
		virsh("pool-undefine", prefix)
	})
}

// checkDaemonLog fails the test on a panic, an internal error or (with
// GOFLAGS=-race, which the daemon's build inherits) a data race in the
// daemon's log.
func checkDaemonLog(t *testing.T, d *daemon) {
	t.Helper()
	for _, line := range strings.Split(d.logText(), "\n") {
		if strings.Contains(line, "panic") || strings.Contains(line, "internal error") || strings.Contains(line, "DATA RACE") {
			t.Errorf("daemon log: %s", line)
		}
	}
}

// badDiscover walks the CloudEntryPoint: each collection with an "add"
// operation is a create endpoint; each member's actions are action
// endpoints (one per member type and action), and its sub-collections with
// an "add" operation are create endpoints too. It also returns every
// collection seen, for the inventory.
func (d *daemon) badDiscover(t *testing.T, valid map[string]map[string]any) ([]badEndpoint, []string) {
	t.Helper()
	var endpoints []badEndpoint
	var collections []string
	seen := map[string]bool{}
	add := func(name, href string, action bool) {
		if seen[name] {
			return
		}
		seen[name] = true
		ep := badEndpoint{name: name, href: href, valid: valid[name], optional: action && !badBodyRequired[name]}
		ep.control = !action
		if c, ok := badControls[name]; ok {
			ep.control = c
		}
		if action && ep.valid == nil {
			// every action takes an Action unless listed otherwise
			rel := badNS + "/action/" + name[strings.Index(name, "/")+1:]
			ep.valid = map[string]any{"resourceURI": badNS + "/Action", "action": rel}
		}
		if ep.valid == nil {
			t.Errorf("create endpoint %s (%s) has no valid body in badValidBodies: only the body-independent cases run", name, href)
		}
		endpoints = append(endpoints, ep)
	}
	cep := d.get("cloudEntryPoint").JSON(t)
	for _, key := range slices.Sorted(maps.Keys(cep)) {
		ref, ok := cep[key].(map[string]any)
		if !ok || key == "resourceMetadata" {
			continue
		}
		href, _ := ref["href"].(string)
		coll := d.get(href).JSON(t)
		collections = append(collections, href)
		collOps, _ := coll["operations"].([]any)
		for _, op := range collOps {
			o := op.(map[string]any)
			switch rel := o["rel"].(string); rel {
			case "add":
				add(key, o["href"].(string), false)
			case "edit", "delete":
			default:
				add(key+"/"+rel[strings.LastIndex(rel, "/")+1:], o["href"].(string), true)
			}
		}
		for _, v := range coll {
			members, _ := v.([]any)
			for _, m := range members {
				member, _ := m.(map[string]any)
				id, _ := member["id"].(string)
				if id == "" {
					continue
				}
				typ := strings.TrimPrefix(member["resourceURI"].(string), badNS+"/")
				ops, _ := member["operations"].([]any)
				for _, op := range ops {
					o := op.(map[string]any)
					rel := o["rel"].(string)
					if rel == "edit" || rel == "delete" || rel == "add" {
						continue
					}
					add(typ+"/"+rel[strings.LastIndex(rel, "/")+1:], o["href"].(string), true)
				}
				for _, attr := range slices.Sorted(maps.Keys(member)) {
					sub, _ := member[attr].(map[string]any)
					subHref, _ := sub["href"].(string)
					if !strings.HasPrefix(subHref, id+"/") || seen[typ+"."+attr+" seen"] {
						continue
					}
					seen[typ+"."+attr+" seen"] = true
					r := d.get(subHref)
					if r.Status != http.StatusOK {
						continue
					}
					subColl := r.JSON(t)
					if !strings.HasSuffix(fmt.Sprint(subColl["resourceURI"]), "Collection") {
						continue
					}
					collections = append(collections, subHref)
					if opHref(subColl, "add") != "" {
						add(typ+"."+attr, opHref(subColl, "add"), false)
					}
				}
			}
		}
	}
	for _, want := range []string{"machines", "machineConfigs", "Machine/start", "Job/stop"} {
		if !seen[want] {
			t.Fatalf("discovery found no %s endpoint; found %v", want, badNames(endpoints))
		}
	}
	return endpoints, collections
}

func badNames(eps []badEndpoint) []string {
	var names []string
	for _, ep := range eps {
		names = append(names, ep.name)
	}
	return names
}

// badInventory is what exists: the count of every collection, the
// instance's domains and the files in its pool.
func (d *daemon) badInventory(t *testing.T, collections []string) string {
	t.Helper()
	var b strings.Builder
	for _, c := range collections {
		fmt.Fprintf(&b, "%s=%v ", strings.TrimPrefix(c, "http://localhost/cimi/"), d.get(c).JSON(t)["count"])
	}
	out, err := virsh("list", "--all", "--name")
	if err != nil {
		t.Fatalf("virsh list: %v: %s", err, out)
	}
	var domains []string
	for _, n := range strings.Fields(out) {
		if strings.HasPrefix(n, "cimid-"+d.instance()+"-") {
			domains = append(domains, n)
		}
	}
	slices.Sort(domains)
	entries, _ := os.ReadDir(filepath.Join(d.stateDir, "pool"))
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	fmt.Fprintf(&b, "domains=%v pool=%v", domains, files)
	return b.String()
}

// badCases builds the broken requests for one endpoint in one format.
func badCases(ep badEndpoint, xmlFormat bool) []badCase {
	ct, other := "application/json", "application/xml"
	render := func(body map[string]any) []byte { return badJSON(body) }
	if xmlFormat {
		ct, other = other, ct
		render = badXML
	}
	root := "Action"
	valid := ep.valid
	if valid == nil {
		valid = map[string]any{"name": "bad"}
	} else {
		root = strings.TrimPrefix(valid["resourceURI"].(string), badNS+"/")
	}
	good := render(valid)
	var cases []badCase
	addCase := func(kind, what, contentType string, body []byte, want int) {
		cases = append(cases, badCase{kind: kind, what: what, contentType: contentType, body: body, want: want})
	}

	// empty
	if !ep.optional {
		addCase("empty", "no body", ct, nil, 0)
		addCase("empty", "blank body", ct, []byte(" \r\n\t "), 0)
		addCase("empty", "no body, no Content-Type", "", nil, 0)
	}
	// malformed
	malformed := []string{`{`, `{"name":}`, `{"name" "x"}`, `{'name':'x'}`, `{"name":"x",}`, `{"name":"x"}}`, `[{"name":"x"}`, `nul`, `{"name":"\x"}`}
	if xmlFormat {
		malformed = []string{"<" + root + ">", "<" + root + "><name>x</" + root + ">", "<<" + root + "/>", "<" + root + " a=x/>",
			"<" + root + ">&bogus;</" + root + ">", "<" + root + "><name>x</name>", "</" + root + ">", "<Banana/>",
			"<" + root + "/><" + root + "/>", "<" + root + "><!--</" + root + ">"}
	}
	for _, m := range malformed {
		addCase("malformed", m, ct, []byte(m), 0)
	}
	// truncated
	for _, n := range []int{len(good) / 3, 2 * len(good) / 3, len(good) - 1} {
		addCase("truncated", fmt.Sprintf("cut at %d of %d", n, len(good)), ct, good[:n], 0)
	}
	// oversized
	huge := badCopy(valid)
	huge["description"] = strings.Repeat("x", 1<<20+4096)
	addCase("oversized", "over 1 MiB", ct, render(huge), http.StatusRequestEntityTooLarge)
	// deeply nested, under an unknown attribute and under a known one
	const depth = 10000
	if xmlFormat {
		nest := strings.Repeat("<a>", depth) + strings.Repeat("</a>", depth)
		open := "<" + root + ` xmlns="` + badNS + `">`
		addCase("nested", "10,000 levels in <colour>", ct, []byte(open+"<colour>"+nest+"</colour></"+root+">"), 0)
		addCase("nested", "10,000 levels in <name>", ct, []byte(open+"<name>"+nest+"</name></"+root+">"), 0)
	} else {
		nest := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		addCase("nested", "10,000 levels in colour", ct, []byte(`{"colour":`+nest+`}`), 0)
		nestObj := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
		addCase("nested", "10,000 levels in name", ct, []byte(`{"resourceURI":"`+badNS+"/"+root+`","name":`+nestObj+`}`), 0)
	}
	// wrong types and unknown attributes, derived from the valid body
	if ep.valid != nil {
		badPaths(valid, nil, func(path []any, v any) {
			for _, w := range badWrongValues(v, xmlFormat, path) {
				addCase("wrong type", fmt.Sprintf("%s = %s", badPathString(path), badJSON(w)), ct, render(badWith(valid, path, w)), 0)
			}
			if m, ok := v.(map[string]any); ok && badPathString(path) != "properties" {
				unknown := badCopy(m)
				unknown["colour"] = "red"
				body := unknown
				if len(path) > 0 {
					body = badWith(valid, path, unknown)
				}
				addCase("unknown attribute", "colour in "+badPathString(path), ct, render(body), 0)
			}
		})
	}
	// wrong Content-Types for a good body
	for _, wrong := range []string{"text/plain", "application/octet-stream", "multipart/form-data; boundary=x",
		"application/x-www-form-urlencoded", "text/html; charset=utf-8", "application/yaml", "json", "*/*"} {
		addCase("content type", wrong, wrong, good, http.StatusUnsupportedMediaType)
	}
	addCase("content type", "labelled "+other, other, good, 0)
	// binary garbage, with and without a Content-Type
	rng := rand.New(rand.NewPCG(uint64(len(ep.name)), uint64(len(good))))
	for _, n := range []int{16, 512, 8192} {
		garbage := make([]byte, n)
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		addCase("garbage", fmt.Sprintf("%d random bytes", n), ct, garbage, 0)
		addCase("garbage", fmt.Sprintf("%d random bytes, no Content-Type", n), "", garbage, 0)
		lead := "{"
		if xmlFormat {
			lead = "<" + root + ">"
		}
		addCase("garbage", fmt.Sprintf("%q and %d random bytes", lead, n), ct, append([]byte(lead), garbage...), 0)
	}
	return cases
}

// badPaths visits every value of a body below the root, depth first, and
// the root itself (with an empty path) last.
func badPaths(v any, path []any, visit func(path []any, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			badPaths(v[k], append(slices.Clone(path), k), visit)
		}
	case []any:
		for i, item := range v {
			badPaths(item, append(slices.Clone(path), i), visit)
		}
	}
	visit(path, v)
}

func badPathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		if i, ok := p.(int); ok {
			fmt.Fprintf(&b, "[%d]", i)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p.(string))
	}
	return b.String()
}

// badWrongValues are values of the wrong type for v. XML has no types
// beyond its structure: there a value holding elements, text where a number
// or boolean belongs, and text where a structure belongs are wrong.
func badWrongValues(v any, xmlFormat bool, path []any) []any {
	if len(path) == 0 {
		return nil
	}
	last, _ := path[len(path)-1].(string)
	if xmlFormat {
		if last == "resourceURI" || last == "href" {
			return nil // the root element and an XML attribute
		}
		switch v.(type) {
		case string:
			return []any{map[string]any{"first": "a"}}
		case int, float64:
			return []any{"twelve", map[string]any{"n": 1}}
		case bool:
			return []any{"maybe", map[string]any{"b": true}}
		case map[string]any:
			if last == "properties" {
				return nil
			}
			return []any{"text where a structure belongs"}
		}
		return nil
	}
	switch v.(type) {
	case string:
		return []any{12345, map[string]any{"x": "y"}, []any{"a"}}
	case int, float64:
		return []any{"12", map[string]any{"x": 1}, true}
	case bool:
		return []any{"true", 0}
	case map[string]any:
		return []any{"text", []any{"a"}, 7}
	case []any:
		return []any{map[string]any{"x": 1}, "text"}
	}
	return nil
}

// badCopy deep-copies a body.
func badCopy(m map[string]any) map[string]any {
	var out map[string]any
	if err := json.Unmarshal(badJSON(m), &out); err != nil {
		panic(err)
	}
	return out
}

// badWith returns a copy of body with the value at path replaced.
func badWith(body map[string]any, path []any, v any) map[string]any {
	out := badCopy(body)
	var cur any = out
	for i, p := range path {
		lastStep := i == len(path)-1
		switch c := cur.(type) {
		case map[string]any:
			if lastStep {
				c[p.(string)] = v
			}
			cur = c[p.(string)]
		case []any:
			if lastStep {
				c[p.(int)] = v
			}
			cur = c[p.(int)]
		}
	}
	return out
}

func badJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// badXMLItem names the element of one array item.
var badXMLItem = map[string]string{"disks": "disk", "addresses": "address", "networkInterfaces": "networkInterface",
	"componentDescriptors": "componentDescriptor"}

// badXML writes a body as a CIMI XML document: the root element is named by
// resourceURI, an href is an XML attribute, properties are <property
// key="">, arrays repeat their item element.
func badXML(body map[string]any) []byte {
	root := "Action"
	if uri, ok := body["resourceURI"].(string); ok {
		root = strings.TrimPrefix(uri, badNS+"/")
	}
	var b bytes.Buffer
	b.WriteString("<" + root + ` xmlns="` + badNS + `">`)
	for _, k := range slices.Sorted(maps.Keys(body)) {
		if k != "resourceURI" {
			badXMLElement(&b, k, body[k])
		}
	}
	b.WriteString("</" + root + ">")
	return b.Bytes()
}

func badXMLElement(b *bytes.Buffer, name string, v any) {
	switch v := v.(type) {
	case []any:
		item := name
		if s, ok := badXMLItem[name]; ok {
			item = s
		}
		for _, x := range v {
			badXMLElement(b, item, x)
		}
		return
	case map[string]any:
		if name == "properties" {
			for _, k := range slices.Sorted(maps.Keys(v)) {
				b.WriteString(`<property key="`)
				xml.EscapeText(b, []byte(k))
				b.WriteString(`">`)
				badXMLContent(b, v[k])
				b.WriteString("</property>")
			}
			return
		}
		b.WriteString("<" + name)
		if href, ok := v["href"].(string); ok {
			b.WriteString(` href="`)
			xml.EscapeText(b, []byte(href))
			b.WriteString(`"`)
		}
		b.WriteString(">")
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if _, isString := v[k].(string); k != "href" || !isString {
				badXMLElement(b, k, v[k])
			}
		}
		b.WriteString("</" + name + ">")
		return
	}
	b.WriteString("<" + name + ">")
	badXMLContent(b, v)
	b.WriteString("</" + name + ">")
}

func badXMLContent(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case string:
		xml.EscapeText(b, []byte(v))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'f', -1, 64))
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			badXMLElement(b, k, v[k])
		}
	default:
		fmt.Fprint(b, v)
	}
}

// badCheck sends one broken request and returns what was wrong with the
// answer, or "".
func (d *daemon) badCheck(ep badEndpoint, xmlFormat bool, c badCase, statuses map[string]map[int]int, samples map[string]string) string {
	accept := "application/json"
	if xmlFormat {
		accept = "application/xml"
	}
	what := fmt.Sprintf("%s (%s, %s %s): %s", ep.name, accept[len("application/"):], c.kind, c.what, badShort(c.body))
	req, err := http.NewRequest(http.MethodPost, ep.href, bytes.NewReader(c.body))
	if err != nil {
		return what + ": " + err.Error()
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	req.Header.Set("Accept", accept)
	resp, err := d.client.Do(req)
	if err != nil {
		return what + ": no answer: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if statuses[c.kind] == nil {
		statuses[c.kind] = map[int]int{}
	}
	statuses[c.kind][resp.StatusCode]++
	switch {
	case c.want != 0 && resp.StatusCode != c.want:
		return fmt.Sprintf("%s: status %d, want %d: %s", what, resp.StatusCode, c.want, badShort(body))
	case resp.StatusCode < 400 || resp.StatusCode > 499:
		return fmt.Sprintf("%s: status %d, want a 4xx: %s", what, resp.StatusCode, badShort(body))
	}
	var doc struct {
		XMLName       xml.Name `json:"-"`
		State         string   `json:"state" xml:"state"`
		StatusMessage string   `json:"statusMessage" xml:"statusMessage"`
	}
	if xmlFormat {
		err = xml.Unmarshal(body, &doc)
		if err == nil && doc.XMLName.Local != "Job" {
			err = fmt.Errorf("root element <%s>", doc.XMLName.Local)
		}
	} else {
		err = json.Unmarshal(body, &doc)
	}
	if err != nil || doc.State != "FAILED" || strings.TrimSpace(doc.StatusMessage) == "" {
		return fmt.Sprintf("%s: status %d with no CIMI error body (%v): %s", what, resp.StatusCode, err, badShort(body))
	}
	if key := c.kind + " (" + accept[len("application/"):] + ")"; samples[key] == "" {
		samples[key] = fmt.Sprintf("%s %s: %d %q", ep.name, c.what, resp.StatusCode, doc.StatusMessage)
	}
	return ""
}

func badShort(b []byte) string {
	s := strconv.Quote(string(b))
	if len(s) > 240 {
		s = s[:240] + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return s
}
