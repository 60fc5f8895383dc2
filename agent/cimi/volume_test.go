package cimi

import (
	"bytes"
	"strings"
	"testing"
)

func TestVolumeDocumentsBothFormats(t *testing.T) {
	v := &Volume{Common: Common{ResourceURI: TypeURI("Volume"), ID: "http://h/cimi/volumes/1"}, State: StateAvailable,
		Type: VolumeTypeBlock, Capacity: 1024, Bootable: new(bool), Images: NewRef("http://h/cimi/volumes/1/images"), DiskFormat: "qcow2"}
	var x bytes.Buffer
	if err := Encode(&x, XML, v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<Volume xmlns="` + Namespace + `">`, "<capacity>1024</capacity>", "<bootable>false</bootable>", `<images href="http://h/cimi/volumes/1/images">`, "<diskFormat>qcow2</diskFormat>"} {
		if !strings.Contains(x.String(), want) {
			t.Errorf("XML Volume lacks %s:\n%s", want, x.String())
		}
	}
	var js bytes.Buffer
	if err := Encode(&js, JSON, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"capacity":1024`) || !strings.Contains(js.String(), `"bootable":false`) {
		t.Errorf("JSON Volume:\n%s", js.String())
	}
}

func TestMachineVolumeRequests(t *testing.T) {
	var mv MachineVolumeCreate
	body := `<MachineVolume xmlns="` + Namespace + `"><initialLocation>/dev/vdb</initialLocation><volume href="volumes/1"/></MachineVolume>`
	if err := DecodeRequest([]byte(body), XML, &mv, "MachineVolume", "MachineVolumeCreate"); err != nil {
		t.Fatal(err)
	}
	if mv.InitialLocation != "/dev/vdb" || mv.Volume == nil || mv.Volume.Href != "volumes/1" {
		t.Fatalf("decoded %+v", mv)
	}
	bad := `<MachineVolume><volume href="volumes/1"/><shareable>true</shareable></MachineVolume>`
	if err := DecodeRequest([]byte(bad), XML, &mv, "MachineVolume"); err == nil || !strings.Contains(err.Error(), "shareable") {
		t.Fatalf("unknown element accepted: %v", err)
	}
	var vc VolumeCreate
	js := `{"resourceURI":"` + TypeURI("VolumeCreate") + `","volumeTemplate":{"volumeConfig":{"capacity":1024,"diskFormat":"raw","size":3}}}`
	if err := DecodeRequest([]byte(js), JSON, &vc, "VolumeCreate"); err == nil || !strings.Contains(err.Error(), "size") {
		t.Fatalf("unknown JSON attribute accepted: %v", err)
	}
}

func TestShareableBothFormats(t *testing.T) {
	yes := true
	v := &Volume{Common: Common{ResourceURI: TypeURI("Volume"), ID: "http://h/cimi/volumes/1"}, State: StateAvailable,
		Capacity: 1024, DiskFormat: "raw", Shareable: &yes}
	var x, js bytes.Buffer
	if err := Encode(&x, XML, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x.String(), "<shareable>true</shareable>") {
		t.Errorf("XML Volume lacks shareable:\n%s", x.String())
	}
	if err := Encode(&js, JSON, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"shareable":true`) {
		t.Errorf("JSON Volume lacks shareable:\n%s", js.String())
	}

	var fromJSON, fromXML VolumeCreate
	body := `{"resourceURI":"` + TypeURI("VolumeCreate") + `","volumeTemplate":{"volumeConfig":{"capacity":1024,"shareable":true}}}`
	if err := DecodeRequest([]byte(body), JSON, &fromJSON, "VolumeCreate"); err != nil {
		t.Fatal(err)
	}
	xmlBody := `<VolumeCreate xmlns="` + Namespace + `"><volumeTemplate><volumeConfig><capacity>1024</capacity>` +
		`<shareable>true</shareable></volumeConfig></volumeTemplate></VolumeCreate>`
	if err := DecodeRequest([]byte(xmlBody), XML, &fromXML, "VolumeCreate"); err != nil {
		t.Fatal(err)
	}
	for what, vc := range map[string]VolumeCreate{"JSON": fromJSON, "XML": fromXML} {
		cfg := vc.VolumeTemplate.VolumeConfig
		if cfg == nil || cfg.Shareable == nil || !*cfg.Shareable || cfg.Capacity != 1024 {
			t.Errorf("%s VolumeCreate decoded as %+v", what, cfg)
		}
	}
	var conf VolumeConfigurationCreate
	if err := DecodeRequest([]byte(`{"capacity":1024,"shareable":false}`), JSON, &conf, "VolumeConfigurationCreate"); err != nil {
		t.Fatal(err)
	}
	if conf.Shareable == nil || *conf.Shareable {
		t.Errorf("VolumeConfigurationCreate shareable decoded as %v", conf.Shareable)
	}
	for what, bad := range map[string]struct {
		body string
		f    Format
	}{
		"JSON string": {`{"volumeTemplate":{"volumeConfig":{"capacity":1024,"shareable":"yes"}}}`, JSON},
		"XML word":    {`<VolumeCreate><volumeTemplate><volumeConfig><shareable>yes</shareable></volumeConfig></volumeTemplate></VolumeCreate>`, XML},
	} {
		var vc VolumeCreate
		if err := DecodeRequest([]byte(bad.body), bad.f, &vc, "VolumeCreate"); err == nil {
			t.Errorf("%s shareable accepted: %+v", what, vc.VolumeTemplate.VolumeConfig)
		}
	}
}
