package main

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestQueryParameters(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	for i := 1; i <= 5; i++ {
		tier := "a"
		if i%2 == 0 {
			tier = "b"
		}
		d.create("machineConfigs", map[string]any{"name": fmt.Sprintf("q%d", i), "cpu": i, "memory": 65536 * i,
			"properties": map[string]string{"tier": tier}})
	}
	list := func(params string) map[string]any {
		t.Helper()
		r := d.get("machineConfigs?" + params)
		if r.Status != 200 {
			t.Fatalf("GET machineConfigs?%s: %d %s", params, r.Status, r.Body)
		}
		return r.JSON(t)
	}
	names := func(c map[string]any) []string {
		var out []string
		members, _ := c["machineConfigurations"].([]any)
		for _, m := range members {
			out = append(out, fmt.Sprint(m.(map[string]any)["name"]))
		}
		return out
	}
	esc := url.QueryEscape
	cases := []struct {
		params string
		count  int
		names  string
	}{
		{"$filter=" + esc("property['tier']='a'") + "&$orderby=name", 3, "q1,q3,q5"},
		{"$filter=" + esc("(cpu=1 or cpu=2) and properties['tier']='b'"), 1, "q2"},
		{"$filter=" + esc("name>='q4' and name<'r'") + "&$orderby=" + esc("cpu desc"), 2, "q5,q4"},
		{"$filter=" + esc("memory < 131072 and name != 'small'"), 1, "q1"},
		{"$filter=" + esc("name='q1' or name='q2' or name='q3'") + "&$orderby=name:desc&$first=2&$last=3", 3, "q2,q1"},
		{"$filter=" + esc("name='nothing'"), 0, ""},
	}
	for _, c := range cases {
		got := list(c.params)
		if int(got["count"].(float64)) != c.count || strings.Join(names(got), ",") != c.names {
			t.Errorf("?%s: count %v names %v; want %d %s", c.params, got["count"], names(got), c.count, c.names)
		}
	}
	// $select keeps the selected attributes, the id and the type
	sel := list("$filter=" + esc("name='q3'") + "&$select=name,cpu")
	m := sel["machineConfigurations"].([]any)[0].(map[string]any)
	if m["name"] != "q3" || m["cpu"].(float64) != 3 || m["description"] != nil || m["operations"] != nil || m["id"] == nil {
		t.Errorf("$select=name,cpu: %v", m)
	}
	if sel["operations"] != nil {
		t.Errorf("$select without operations kept the collection's operations: %v", sel["operations"])
	}
	if with := list("$select=operations"); with["operations"] == nil {
		t.Errorf("$select=operations dropped the collection's operations")
	}
	// XML obeys the same query
	x := d.get("machineConfigs?$format=xml&$filter=" + esc("cpu=2") + "&$select=name")
	if !strings.Contains(string(x.Body), "<name>q2</name>") || strings.Contains(string(x.Body), "<cpu>") || !strings.Contains(string(x.Body), "<count>2</count>") {
		t.Errorf("XML query:\n%s", x.Body)
	}
	// malformed queries name the position
	for _, bad := range []string{"$filter=" + esc("cpu>"), "$filter=" + esc("(cpu=1"), "$filter=" + esc("name='x"), "$first=0", "$orderby=" + esc("name sideways")} {
		r := d.get("machineConfigs?" + bad)
		if r.Status != 400 || !strings.Contains(r.JSON(t)["statusMessage"].(string), "$") {
			t.Errorf("?%s: %d %s", bad, r.Status, r.Body)
		}
		if strings.HasPrefix(bad, "$filter") && !strings.Contains(string(r.Body), "position") {
			t.Errorf("?%s does not name the position: %s", bad, r.Body)
		}
	}
	// unknown non-$ parameters are ignored
	if r := d.get("machineConfigs?color=blue"); r.Status != 200 {
		t.Errorf("unknown parameter: %d", r.Status)
	}
	// $expand inlines referenced documents
	jobs := d.get("jobs?$expand=targetResource&$last=1").JSON(t)
	target := jobs["jobs"].([]any)[0].(map[string]any)["targetResource"].(map[string]any)
	if target["href"] == nil || target["count"] == nil {
		t.Errorf("$expand=targetResource: %v", target)
	}
}

// TestConformanceWalk follows every link from the entry point and checks
// both serializations of every collection and member.
func TestConformanceWalk(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	d.create("machineConfigs", map[string]any{"name": "walk", "cpu": 1, "memory": 65536})
	cep := d.get("cloudEntryPoint").JSON(t)
	base := cep["baseURI"].(string)
	for key, v := range cep {
		ref, ok := v.(map[string]any)
		if !ok {
			continue
		}
		href := ref["href"].(string)
		if !strings.HasPrefix(href, base) {
			t.Errorf("%s href %s is not under %s", key, href, base)
			continue
		}
		coll := d.get(href)
		if coll.Status != 200 || coll.Header.Get("ETag") == "" {
			t.Errorf("GET %s: %d (ETag %q)", href, coll.Status, coll.Header.Get("ETag"))
			continue
		}
		c := coll.JSON(t)
		typ, _ := c["resourceURI"].(string)
		if !strings.HasPrefix(typ, "http://schemas.dmtf.org/cimi/1/") || !strings.HasSuffix(typ, "Collection") || c["id"] != href {
			t.Errorf("%s: resourceURI %q id %v", key, typ, c["id"])
		}
		checkCollectionXML(t, d, href, typ, int(c["count"].(float64)))
		for k, mv := range c {
			members, ok := mv.([]any)
			if !ok || k == "operations" {
				continue
			}
			for _, member := range members {
				checkMember(t, d, base, member.(map[string]any))
			}
		}
	}
}

func checkCollectionXML(t *testing.T, d *daemon, href, typ string, count int) {
	t.Helper()
	x := d.get(href, "Accept", "application/xml")
	var doc struct {
		XMLName     xml.Name
		ResourceURI string `xml:"resourceURI,attr"`
		ID          string `xml:"id"`
		Count       int    `xml:"count"`
	}
	if err := xml.Unmarshal(x.Body, &doc); err != nil {
		t.Errorf("XML %s: %v", href, err)
		return
	}
	if doc.XMLName.Local != "Collection" || doc.XMLName.Space != "http://schemas.dmtf.org/cimi/1" || doc.ResourceURI != typ || doc.ID != href || doc.Count != count {
		t.Errorf("XML %s: %+v (JSON type %s count %d)", href, doc, typ, count)
	}
}

func checkMember(t *testing.T, d *daemon, base string, m map[string]any) {
	t.Helper()
	id, _ := m["id"].(string)
	typ, _ := m["resourceURI"].(string)
	if !strings.HasPrefix(id, base) || !strings.HasPrefix(typ, "http://schemas.dmtf.org/cimi/1/") {
		t.Errorf("member id %q resourceURI %q", id, typ)
		return
	}
	for _, op := range asList(m["operations"]) {
		o := op.(map[string]any)
		if href, _ := o["href"].(string); !strings.HasPrefix(href, base) || o["rel"] == "" {
			t.Errorf("%s: operation %v", id, o)
		}
	}
	r := d.get(id)
	if r.Status != 200 || r.Header.Get("ETag") == "" {
		t.Errorf("GET %s: %d", id, r.Status)
		return
	}
	if got := r.JSON(t)["resourceURI"]; got != typ {
		t.Errorf("%s: resourceURI %v in the collection, %v alone", id, typ, got)
	}
	x := d.get(id, "Accept", "application/xml")
	var doc struct {
		XMLName xml.Name
		ID      string `xml:"id"`
	}
	if err := xml.Unmarshal(x.Body, &doc); err != nil || doc.ID != id || doc.XMLName.Local != typ[strings.LastIndex(typ, "/")+1:] {
		t.Errorf("XML %s: %+v %v\n%s", id, doc, err, x.Body)
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
