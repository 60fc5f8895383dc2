package cimi_test

import (
	"errors"
	"strings"
	"testing"

	"cimid/agent/cimi"
)

// The XML bodies here decode without complaint in encoding/xml; Decode
// refuses them (see checkXMLShape). The request types and namespace come
// from fuzz_test.go.

// TestXMLValueHoldingElements: an element where a value belongs may hold
// text (CDATA included) but no elements, at any depth of the document.
func TestXMLValueHoldingElements(t *testing.T) {
	refused := []struct {
		target, body, words string
	}{
		{"MachineConfigurationCreate", `<MachineConfiguration><name><first>a</first></name><cpu>1</cpu><memory>1</memory></MachineConfiguration>`, "<name> must hold a value, not the element <first>"},
		{"MachineConfigurationCreate", `<MachineConfiguration><cpu>1<x/></cpu><memory>1</memory></MachineConfiguration>`, "<cpu>"},
		{"MachineConfigurationCreate", `<MachineConfiguration><cpu>1</cpu><memory>1</memory><disk><capacity><n>1</n></capacity></disk></MachineConfiguration>`, "<capacity>"},
		{"MachineCreate", `<MachineCreate><property key="k"><v/></property><machineTemplate href="machineTemplates/1"/></MachineCreate>`, "<property>"},
		{"MachineCreate", `<MachineCreate><machineTemplate><machineConfig><cpu><a/></cpu></machineConfig></machineTemplate></MachineCreate>`, "<cpu>"},
		{"Action", `<Action><action><stop/></action></Action>`, "<action>"},
		{"Action", `<Action><force><true/></force></Action>`, "<force>"},
		{"AddressTemplateCreate", `<AddressTemplate><dns>10.0.0.1</dns><dns><ip>10.0.0.2</ip></dns></AddressTemplate>`, "<dns>"},
	}
	for _, c := range refused {
		tg := targets[c.target]
		err := cimi.DecodeRequest([]byte(c.body), cimi.XML, tg.newV(), tg.types...)
		var syntax *cimi.SyntaxError
		if !errors.As(err, &syntax) || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: got %v, want a *cimi.SyntaxError mentioning %q", c.body, err, c.words)
		}
	}
	var a cimi.Action
	body := `<Action><action><![CDATA[stop]]></action><!-- note --><force>true<?pi x?></force></Action>`
	if err := cimi.DecodeRequest([]byte(body), cimi.XML, &a, "Action"); err != nil || a.Action != "stop" || a.Force == nil || !*a.Force {
		t.Errorf("%s: %v, %+v", body, err, a)
	}
}

// TestXMLUnknownElementInReference: a reference holds an href and nothing
// else, in XML as in JSON.
func TestXMLUnknownElementInReference(t *testing.T) {
	var mv cimi.MachineVolumeCreate
	body := `<MachineVolume><volume href="volumes/1"><shared>true</shared></volume></MachineVolume>`
	if err := cimi.DecodeRequest([]byte(body), cimi.XML, &mv, "MachineVolume"); err == nil || !strings.Contains(err.Error(), `"shared"`) {
		t.Errorf("%s: %v", body, err)
	}
	js := `{"resourceURI":"` + ns + `/MachineVolume","volume":{"href":"volumes/1","shared":true}}`
	if err := cimi.DecodeRequest([]byte(js), cimi.JSON, &mv, "MachineVolume"); err == nil || !strings.Contains(err.Error(), `"shared"`) {
		t.Errorf("%s: %v", js, err)
	}
}

// TestDataAfterTheDocument: one document per body, in either format.
func TestDataAfterTheDocument(t *testing.T) {
	tg := targets["MachineConfigurationCreate"]
	for _, s := range []seed{
		js(`{"cpu":1,"memory":1}}`), js(`{"cpu":1,"memory":1}]`), js(`{"cpu":1,"memory":1} {}`), js(`{"cpu":1,"memory":1}x`),
		js("{\"cpu\":1,\"memory\":1}\u00a0"),
		xm(`<MachineConfiguration><cpu>1</cpu></MachineConfiguration><MachineConfiguration/>`),
		xm(`<MachineConfiguration><cpu>1</cpu></MachineConfiguration>text`),
		xm(`text<MachineConfiguration><cpu>1</cpu></MachineConfiguration>`),
		xm(`<?xml version="1.0"?>text<MachineConfiguration><cpu>1</cpu></MachineConfiguration>`),
		xm(`<MachineConfiguration><cpu>1</cpu><disk>big</disk></MachineConfiguration>`),
	} {
		f := cimi.JSON
		if s.xml {
			f = cimi.XML
		}
		var syntax *cimi.SyntaxError
		if err := cimi.DecodeRequest([]byte(s.body), f, tg.newV(), tg.types...); !errors.As(err, &syntax) {
			t.Errorf("%s: %v, want a *cimi.SyntaxError", s.body, err)
		}
	}
	for _, s := range []seed{
		js(" {\"cpu\":1,\"memory\":1} \r\n\t"),
		xm("<?xml version=\"1.0\"?>\n<MachineConfiguration><cpu>1</cpu></MachineConfiguration>\n<!-- end -->\n<?pi x?>\n"),
		xm("\uFEFF<MachineConfiguration><cpu>1</cpu></MachineConfiguration>"),
	} {
		f := cimi.JSON
		if s.xml {
			f = cimi.XML
		}
		if err := cimi.DecodeRequest([]byte(s.body), f, tg.newV(), tg.types...); err != nil {
			t.Errorf("%q: %v", s.body, err)
		}
	}
}
