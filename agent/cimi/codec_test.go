package cimi

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNegotiate(t *testing.T) {
	cases := []struct {
		format, accept string
		want           Format
		err            bool
	}{
		{"", "", JSON, false},
		{"", "application/xml", XML, false},
		{"", "application/json", JSON, false},
		{"", "*/*", JSON, false},
		{"", "text/html, application/xml;q=0.9", XML, false},
		{"", "application/json;q=0.5, application/xml", XML, false},
		{"", "*/*, application/xml", XML, false},
		{"XML", "application/json", XML, false},
		{"json", "application/xml", JSON, false},
		{"", "text/html", JSON, true},
		{"yaml", "", JSON, true},
	}
	for _, c := range cases {
		got, err := Negotiate(c.format, c.accept)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("Negotiate(%q, %q) = %v, %v; want %v, err=%v", c.format, c.accept, got, err, c.want, c.err)
		}
	}
}

func TestEncodeJobBothFormats(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := &Job{
		Common: Common{ResourceURI: TypeURI("Job"), ID: "http://h/cimi/jobs/1", Created: &now,
			Properties: Properties{"b": "2", "a": "1"}},
		State:             JobRunning,
		TargetResource:    NewRef("http://h/cimi/machines/m"),
		AffectedResources: []Ref{{Href: "http://h/cimi/machines/m"}},
		Action:            ActionURI("stop"),
		Progress:          40,
		Operations:        []Operation{{Rel: ActionURI("stop"), Href: "http://h/cimi/jobs/1/stop"}},
	}
	var js bytes.Buffer
	if err := Encode(&js, JSON, j); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"resourceURI":"http://schemas.dmtf.org/cimi/1/Job"`, `"progress":40`, `"affectedResources":[`, `"properties":{`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
	var x bytes.Buffer
	if err := Encode(&x, XML, j); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<Job xmlns="http://schemas.dmtf.org/cimi/1">`, `<property key="a">1</property>`,
		`<affectedResource href="http://h/cimi/machines/m"></affectedResource>`, `<operation rel="http://schemas.dmtf.org/cimi/1/action/stop"`, `<progress>40</progress>`} {
		if !strings.Contains(x.String(), want) {
			t.Errorf("XML lacks %s:\n%s", want, x.String())
		}
	}
	if strings.Contains(x.String(), "resourceURI") {
		t.Errorf("XML single resource carries resourceURI:\n%s", x.String())
	}
	if strings.Index(x.String(), `key="a"`) > strings.Index(x.String(), `key="b"`) {
		t.Error("XML properties are not in key order")
	}
}

func TestEncodeCollectionXML(t *testing.T) {
	c := &Collection{ResourceURI: TypeURI("JobCollection"), ID: "http://h/cimi/jobs", Count: 1, MemberKey: "jobs",
		Members:    []any{&Job{Common: Common{ResourceURI: TypeURI("Job"), ID: "http://h/cimi/jobs/1"}}},
		Operations: nil}
	var x bytes.Buffer
	if err := Encode(&x, XML, c); err != nil {
		t.Fatal(err)
	}
	want := `<Collection xmlns="http://schemas.dmtf.org/cimi/1" resourceURI="http://schemas.dmtf.org/cimi/1/JobCollection">`
	if !strings.Contains(x.String(), want) || !strings.Contains(x.String(), "<Job>") || !strings.Contains(x.String(), "<count>1</count>") {
		t.Fatalf("collection XML:\n%s", x.String())
	}
	var js bytes.Buffer
	if err := Encode(&js, JSON, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"jobs":[{`) && !strings.Contains(js.String(), `"jobs": [`) {
		t.Fatalf("collection JSON:\n%s", js.String())
	}
}

func TestDecodeRequestAcceptsBothFormatsAndNoNamespace(t *testing.T) {
	bodies := map[Format][]string{
		JSON: {`{"resourceURI":" http://schemas.dmtf.org/cimi/1/Action ","action":"http://schemas.dmtf.org/cimi/1/action/stop","force":true}`,
			`{"action":"http://schemas.dmtf.org/cimi/1/action/stop","force":true}`},
		XML: {`<Action xmlns="http://schemas.dmtf.org/cimi/1"><action>http://schemas.dmtf.org/cimi/1/action/stop</action><force>true</force></Action>`,
			`<Action><action>http://schemas.dmtf.org/cimi/1/action/stop</action><force>true</force></Action>`},
	}
	for f, list := range bodies {
		for _, b := range list {
			var a Action
			if err := DecodeRequest([]byte(b), f, &a, "Action"); err != nil {
				t.Fatalf("%v %s: %v", f, b, err)
			}
			if a.Force == nil || !*a.Force || !strings.HasSuffix(a.Action, "/stop") {
				t.Fatalf("decoded %+v", a)
			}
		}
	}
}

func TestDecodeRejectsUnknownAndMalformed(t *testing.T) {
	cases := []struct {
		f    Format
		body string
		want string
	}{
		{JSON, `{"action":"x","bogus":1}`, `unknown attribute "bogus"`},
		{XML, `<Action><action>x</action><bogus>1</bogus></Action>`, `unknown attribute "bogus"`},
		{JSON, `{"action":`, "malformed JSON"},
		{XML, `<Action><action>x</Action>`, "malformed XML"},
		{JSON, `{"action":"x","force":"yes"}`, "force must be a boolean"},
		{XML, `<Action><action>x</action><force> yes </force></Action>`, `force must be a boolean (true or false), not "yes"`},
		{XML, `<Machine><action>x</action></Machine>`, "root element <Machine>"},
		{JSON, `{"resourceURI":"http://schemas.dmtf.org/cimi/1/Machine","action":"x"}`, "not accepted here"},
		{JSON, ``, "empty"},
	}
	for _, c := range cases {
		var a Action
		err := DecodeRequest([]byte(c.body), c.f, &a, "Action")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.body, err, c.want)
		}
	}
}

func TestPropertiesXMLRoundTrip(t *testing.T) {
	body := `<MachineImageCreate><name>n</name><property key="k1">v1</property><property key="k2">v2</property><imageLocation>file:///x</imageLocation></MachineImageCreate>`
	var m MachineImageCreate
	if err := DecodeRequest([]byte(body), XML, &m, "MachineImageCreate", "MachineImage"); err != nil {
		t.Fatal(err)
	}
	if m.Properties["k1"] != "v1" || m.Properties["k2"] != "v2" || m.ImageLocation != "file:///x" {
		t.Fatalf("decoded %+v", m)
	}
}
