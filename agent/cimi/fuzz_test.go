package cimi_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"cimid/agent/cimi"
)

// The fuzz targets here feed arbitrary bytes to cimi.DecodeRequest, the way
// the API decodes every create and action body, one target per request
// type. The first fuzzed byte picks the format (odd: XML, even: JSON). A
// body may be refused, but only with a *cimi.SyntaxError or
// cimi.ErrEmptyBody, which the API turns into a 400; any other error or a
// panic would surface as a 500 or a dropped connection.
//
// The seed corpus (valid bodies of each type in both formats, and the
// tricky cases below) runs in every plain `go test`; crashers found by
// `go test -fuzz` are kept in testdata/fuzz.

const ns = cimi.Namespace

// seed is one body with its format.
type seed struct {
	xml  bool
	body string
}

func js(body string) seed { return seed{false, body} }
func xm(body string) seed { return seed{true, body} }

// target is one request body type as the API decodes it.
type target struct {
	types []string   // the document types its handler accepts
	newV  func() any // a pointer to a fresh value to decode into
	valid []seed     // bodies the API accepts
}

// targets are keyed by the Go type name.
var targets = map[string]target{
	"Action": {[]string{"Action"}, func() any { return new(cimi.Action) }, []seed{
		js(`{"resourceURI":"` + ns + `/Action","action":"` + ns + `/action/stop","force":true,"stopTimeout":30,"forceOnTimeout":false}`),
		js(`{"action":"restore","image":{"href":"machineImages/1"},"properties":{"k":"v"}}`),
		js(`{"action":" start ","source":"s","format":"ova","destination":"file:///tmp/x.ova"}`),
		xm(`<Action xmlns="` + ns + `"><action>` + ns + `/action/stop</action><force>true</force><stopTimeout>30</stopTimeout></Action>`),
		xm(`<Action><action>restore</action><image href="machineImages/1"/><property key="k">v</property></Action>`),
	}},
	"MachineCreate": {[]string{"MachineCreate"}, func() any { return new(cimi.MachineCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineCreate","name":"web","properties":{"env":"prod"},"machineTemplate":{"machineConfig":{"href":"machineConfigs/small"},"machineImage":{"href":"machineImages/1"},"initialState":"STOPPED","userData":"I2Nsb3VkLWNvbmZpZw=="}}`),
		js(`{"machineTemplate":{"href":"machineTemplates/t","initialState":"STARTED","networkInterfaces":[{"network":{"href":"networks/default"},"model":"virtio"}],"credential":{"href":"credentials/1"}}}`),
		xm(`<MachineCreate><machineTemplate href="machineTemplates/t"><networkInterface><network href="networks/default"/><address href="addresses/1"/></networkInterface><credential><userName>u</userName><key>ssh-ed25519 AAAA</key></credential></machineTemplate></MachineCreate>`),
		js(`{"machineTemplate":{"machineConfig":{"cpu":1,"memory":163840,"disks":[{"capacity":65536,"format":"ext4"}]},"machineImage":{"href":"machineImages/1"}}}`),
		xm(`<MachineCreate xmlns="` + ns + `"><name>web</name><property key="env">prod</property><machineTemplate><machineConfig href="machineConfigs/small"/><machineImage href="machineImages/1"/><initialState>STOPPED</initialState></machineTemplate></MachineCreate>`),
		xm(`<MachineCreate><machineTemplate><machineConfig><cpu>1</cpu><memory>163840</memory><disk><capacity>65536</capacity></disk></machineConfig><machineImage href="machineImages/1"/></machineTemplate></MachineCreate>`),
	}},
	"MachineTemplateCreate": {[]string{"MachineTemplateCreate", "MachineTemplate"}, func() any { return new(cimi.MachineTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineTemplateCreate","name":"tpl","machineTemplate":{"machineConfig":{"href":"machineConfigs/small"},"machineImage":{"href":"machineImages/1"},"initialState":"STARTED"}}`),
		js(`{"resourceURI":"` + ns + `/MachineTemplate","name":"bare","machineConfig":{"cpu":2,"memory":1048576},"machineImage":{"href":"machineImages/1"},"userData":""}`),
		xm(`<MachineTemplateCreate xmlns="` + ns + `"><name>tpl</name><machineTemplate><machineConfig href="machineConfigs/small"/><machineImage href="machineImages/1"/></machineTemplate></MachineTemplateCreate>`),
		xm(`<MachineTemplate xmlns="` + ns + `"><name>bare</name><machineConfig><cpu>2</cpu><memory>1048576</memory></machineConfig><machineImage href="machineImages/1"/><initialState>STOPPED</initialState></MachineTemplate>`),
	}},
	"MachineConfigurationCreate": {[]string{"MachineConfigurationCreate", "MachineConfiguration"}, func() any { return new(cimi.MachineConfigurationCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineConfigurationCreate","name":"tiny","cpu":1,"memory":163840,"cpuArch":"x86_64","disks":[{"capacity":65536,"format":"ext4","initialLocation":"vdb"}]}`),
		js(`{"name":"bare","cpu":2,"memory":2097152,"properties":{"a":"b"}}`),
		xm(`<MachineConfigurationCreate xmlns="` + ns + `"><name>tiny</name><cpu>1</cpu><memory>163840</memory><disk><capacity>65536</capacity></disk></MachineConfigurationCreate>`),
		xm(`<MachineConfiguration xmlns="` + ns + `"><name>bare</name><cpu>2</cpu><memory>2097152</memory><cpuArch>x86_64</cpuArch></MachineConfiguration>`),
	}},
	"MachineImageCreate": {[]string{"MachineImageCreate", "MachineImage"}, func() any { return new(cimi.MachineImageCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineImageCreate","name":"debian","type":"IMAGE","imageLocation":"file:///var/lib/images/debian.qcow2"}`),
		js(`{"name":"snap","imageLocation":"machines/1","relatedImage":{"href":"machineImages/0"}}`),
		xm(`<MachineImageCreate xmlns="` + ns + `"><name>debian</name><imageLocation>http://images/debian.qcow2</imageLocation></MachineImageCreate>`),
		xm(`<MachineImage xmlns="` + ns + `"><name>snap</name><type>SNAPSHOT</type><imageLocation>machines/1</imageLocation><relatedImage href="machineImages/0"/></MachineImage>`),
	}},
	"MeterCreate": {[]string{"MeterCreate", "Meter"}, func() any { return new(cimi.MeterCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MeterCreate","name":"cpu","meterTemplate":{"targetResource":{"href":"machines/1"},"meterConfig":{"href":"meterConfigs/machine-cpu"}}}`),
		js(`{"meterTemplate":{"href":"meterTemplates/machine-cpu"}}`),
		xm(`<MeterCreate xmlns="` + ns + `"><name>cpu</name><meterTemplate><targetResource href="machines/1"/><meterConfig href="meterConfigs/machine-cpu"/></meterTemplate></MeterCreate>`),
	}},
	"VolumeConfigurationCreate": {[]string{"VolumeConfigurationCreate", "VolumeConfiguration"}, func() any { return new(cimi.VolumeConfigurationCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/VolumeConfigurationCreate","name":"raw64","capacity":65536,"diskFormat":"raw","format":"ext4","type":"urn:x-cimid:1/volumeType/block"}`),
		xm(`<VolumeConfiguration xmlns="` + ns + `"><name>raw64</name><capacity>65536</capacity><diskFormat>qcow2</diskFormat></VolumeConfiguration>`),
	}},
	"VolumeTemplateCreate": {[]string{"VolumeTemplateCreate", "VolumeTemplate"}, func() any { return new(cimi.VolumeTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/VolumeTemplateCreate","name":"t","volumeTemplate":{"volumeConfig":{"href":"volumeConfigs/small"},"volumeImage":{"href":"volumeImages/1"}}}`),
		js(`{"volumeConfig":{"capacity":65536,"diskFormat":"raw"}}`),
		xm(`<VolumeTemplate xmlns="` + ns + `"><volumeConfig><capacity>65536</capacity></volumeConfig><volumeImage href="volumeImages/1"/></VolumeTemplate>`),
	}},
	"VolumeCreate": {[]string{"VolumeCreate"}, func() any { return new(cimi.VolumeCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/VolumeCreate","name":"data","volumeTemplate":{"volumeConfig":{"capacity":65536,"format":"ext4"}}}`),
		js(`{"volumeTemplate":{"href":"volumeTemplates/t","volumeConfig":{"capacity":131072}}}`),
		xm(`<VolumeCreate xmlns="` + ns + `"><name>data</name><volumeTemplate><volumeConfig href="volumeConfigs/small"/></volumeTemplate></VolumeCreate>`),
	}},
	"VolumeImageCreate": {[]string{"VolumeImageCreate", "VolumeImage"}, func() any { return new(cimi.VolumeImageCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/VolumeImageCreate","name":"img","imageLocation":"volumes/1","bootable":false}`),
		xm(`<VolumeImage xmlns="` + ns + `"><name>img</name><imageLocation>file:///x.qcow2</imageLocation><bootable>true</bootable></VolumeImage>`),
	}},
	"MachineVolumeCreate": {[]string{"MachineVolume", "MachineVolumeCreate"}, func() any { return new(cimi.MachineVolumeCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineVolume","initialLocation":"vdb","volume":{"href":"volumes/1"}}`),
		xm(`<MachineVolume xmlns="` + ns + `"><initialLocation>/dev/vdb</initialLocation><volume href="volumes/1"/></MachineVolume>`),
	}},
	"NetworkConfigurationCreate": {[]string{"NetworkConfigurationCreate", "NetworkConfiguration"}, func() any { return new(cimi.NetworkConfigurationCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/NetworkConfigurationCreate","name":"lab","forwardMode":"nat","subnet":"10.9.0.0/24","dhcpRange":"10.9.0.10-10.9.0.99","mtu":1500}`),
		xm(`<NetworkConfiguration xmlns="` + ns + `"><name>lab</name><networkType>PRIVATE</networkType><forwardMode>isolated</forwardMode></NetworkConfiguration>`),
	}},
	"NetworkTemplateCreate": {[]string{"NetworkTemplateCreate", "NetworkTemplate"}, func() any { return new(cimi.NetworkTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/NetworkTemplateCreate","networkTemplate":{"networkConfig":{"href":"networkConfigs/1"}}}`),
		js(`{"name":"bare","networkConfig":{"forwardMode":"isolated","mtu":9000}}`),
		xm(`<NetworkTemplate xmlns="` + ns + `"><networkConfig href="networkConfigs/1"/></NetworkTemplate>`),
	}},
	"NetworkCreate": {[]string{"NetworkCreate"}, func() any { return new(cimi.NetworkCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/NetworkCreate","name":"lab","networkTemplate":{"networkConfig":{"forwardMode":"isolated","subnet":"10.9.0.0/24"}}}`),
		xm(`<NetworkCreate xmlns="` + ns + `"><name>lab</name><networkTemplate href="networkTemplates/1"/></NetworkCreate>`),
	}},
	"AddressTemplateCreate": {[]string{"AddressTemplateCreate", "AddressTemplate"}, func() any { return new(cimi.AddressTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/AddressTemplateCreate","ip":"10.9.0.5","network":{"href":"networks/default"},"dns":["10.9.0.1"],"allocation":"static"}`),
		xm(`<AddressTemplate xmlns="` + ns + `"><ip>10.9.0.5</ip><dns>10.9.0.1</dns><dns>1.1.1.1</dns><network href="networks/default"/></AddressTemplate>`),
	}},
	"AddressCreate": {[]string{"AddressCreate"}, func() any { return new(cimi.AddressCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/AddressCreate","addressTemplate":{"ip":"10.9.0.5","network":{"href":"networks/default"},"macAddress":"52:54:00:00:00:01"}}`),
		xm(`<AddressCreate xmlns="` + ns + `"><addressTemplate href="addressTemplates/1"/></AddressCreate>`),
	}},
	"CredentialTemplateCreate": {[]string{"CredentialTemplateCreate", "CredentialTemplate"}, func() any { return new(cimi.CredentialTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/CredentialTemplateCreate","credentialTemplate":{"userName":"alice","password":"secret"}}`),
		js(`{"userName":"alice","key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@b"}`),
		xm(`<CredentialTemplate xmlns="` + ns + `"><userName>alice</userName><password>secret</password></CredentialTemplate>`),
	}},
	"CredentialCreate": {[]string{"CredentialCreate"}, func() any { return new(cimi.CredentialCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/CredentialCreate","name":"alice","credentialTemplate":{"userName":"alice","password":"secret"}}`),
		xm(`<CredentialCreate xmlns="` + ns + `"><credentialTemplate href="credentialTemplates/1"/></CredentialCreate>`),
	}},
	"MachineNetworkInterfaceInput": {[]string{"MachineNetworkInterface"}, func() any { return new(cimi.MachineNetworkInterfaceInput) }, []seed{
		js(`{"resourceURI":"` + ns + `/MachineNetworkInterface","network":{"href":"networks/default"},"model":"virtio","macAddress":"52:54:00:00:00:01","addresses":[{"href":"addresses/1"}]}`),
		xm(`<MachineNetworkInterface xmlns="` + ns + `"><network href="networks/default"/><address href="addresses/1"/><model>e1000</model></MachineNetworkInterface>`),
	}},
	"SystemTemplateCreate": {[]string{"SystemTemplateCreate", "SystemTemplate"}, func() any { return new(cimi.SystemTemplateCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/SystemTemplateCreate","name":"app","importImage":"file:///var/lib/ovf/app.ova"}`),
		js(`{"componentDescriptors":[{"name":"web","type":"` + ns + `/Machine","quantity":2,"machineTemplate":{"href":"machineTemplates/1"}}]}`),
		xm(`<SystemTemplate xmlns="` + ns + `"><name>app</name><importImage>https://h/app.ova</importImage></SystemTemplate>`),
		xm(`<SystemTemplateCreate><componentDescriptor><name>web</name><quantity>2</quantity><machineTemplate href="machineTemplates/1"/></componentDescriptor></SystemTemplateCreate>`),
	}},
	"SystemCreate": {[]string{"SystemCreate"}, func() any { return new(cimi.SystemCreate) }, []seed{
		js(`{"resourceURI":"` + ns + `/SystemCreate","name":"app","systemTemplate":{"href":"systemTemplates/1"}}`),
		js(`{"systemTemplate":{"importImage":"file:///var/lib/ovf/app.ova"}}`),
		xm(`<SystemCreate xmlns="` + ns + `"><name>app</name><systemTemplate href="systemTemplates/1"/></SystemCreate>`),
	}},
}

// fuzzRequest runs the target for one request type.
func fuzzRequest(f *testing.F, name string) {
	tg, ok := targets[name]
	if !ok {
		f.Fatalf("no fuzz target for %s", name)
	}
	for _, s := range append(slices.Clone(tg.valid), trickySeeds(tg.types[0], tg.valid)...) {
		pick := byte(0)
		if s.xml {
			pick = 1
		}
		f.Add(pick, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, pick byte, body []byte) {
		format := cimi.JSON
		if pick&1 == 1 {
			format = cimi.XML
		}
		err := cimi.DecodeRequest(body, format, tg.newV(), tg.types...)
		if err == nil {
			return
		}
		var syntax *cimi.SyntaxError
		if !errors.As(err, &syntax) && !errors.Is(err, cimi.ErrEmptyBody) {
			t.Fatalf("%s body %q: error %v is a %T, not a *cimi.SyntaxError or cimi.ErrEmptyBody", format, body, err, err)
		}
		if err.Error() == "" {
			t.Fatalf("%s body %q: error without a message", format, body)
		}
	})
}

// trickySeeds derives the hard cases from a type's root element name and
// its valid bodies.
func trickySeeds(root string, valid []seed) []seed {
	var jsonBody, xmlBody string
	for _, s := range valid {
		if s.xml && xmlBody == "" {
			xmlBody = s.body
		}
		if !s.xml && jsonBody == "" {
			jsonBody = s.body
		}
	}
	open, closing := "<"+root+` xmlns="`+ns+`">`, "</"+root+">"
	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	return []seed{
		// empty and blank bodies
		js(""), xm(""), js(" \r\n\t "), xm("\n"),
		// byte order marks, UTF-8 and UTF-16
		js("\uFEFF" + jsonBody), xm("\uFEFF" + xmlBody), xm("\xFF\xFE<\x00A\x00/\x00>\x00"),
		// truncated and trailing data
		js(jsonBody[:len(jsonBody)/2]), xm(xmlBody[:len(xmlBody)/2]),
		js(jsonBody + jsonBody), js(jsonBody + " x"), xm(xmlBody + "<" + root + "/>"), xm(xmlBody + "trailing"),
		// other JSON values at the top
		js("null"), js("[]"), js(`"text"`), js("42"), js("true"), js("[" + jsonBody + "]"),
		// huge and odd numbers
		js(`{"name":1e999}`), js(`{"cpu":1e999}`), js(`{"cpu":99999999999999999999999}`), js(`{"memory":-0}`),
		js(`{"cpu":1.5}`), js(`{"capacity":0x10}`), js(`{"mtu":NaN}`), js(`{"cpu":-9223372036854775809}`),
		xm(open + "<cpu>99999999999999999999999</cpu>" + closing), xm(open + "<capacity>1e999</capacity>" + closing),
		xm(open + "<memory>-0x1</memory>" + closing), xm(open + "<force>maybe</force>" + closing),
		// wrong types
		js(`{"name":{"a":1}}`), js(`{"name":["a"]}`), js(`{"properties":"k=v"}`), js(`{"properties":{"k":1}}`),
		js(`{"properties":[{"key":"k"}]}`), js(`{"resourceURI":42}`), js(`{"resourceURI":"` + ns + `/Machine"}`),
		js(`{"resourceURI":"http://schemas.dmtf.org/cimi/2/` + root + `"}`), js(`{"resourceURI":" ` + ns + "/" + root + ` "}`),
		xm(open + "<name><x>1</x></name>" + closing), xm(open + "<property>no key</property>" + closing),
		xm(open + `<property key="k"><v/></property>` + closing),
		// unknown attributes and elements, duplicates
		js(`{"colour":"red"}`), js(`{"name":"a","name":"b"}`), js(`{"NAME":"a"}`),
		xm(open + "<colour>red</colour>" + closing), xm(open + "<name>a</name><name>b</name>" + closing),
		// namespaces
		xm("<" + root + ">" + "</" + root + ">"), xm(`<c:` + root + ` xmlns:c="` + ns + `"><c:name>n</c:name></c:` + root + `>`),
		xm(`<` + root + ` xmlns="urn:other"><name>n</name></` + root + `>`), xm(`<Machine xmlns="` + ns + `"/>`),
		xm(`<` + root + ` xmlns="` + ns + `" xmlns:x="urn:x"><x:name>n</x:name></` + root + `>`),
		// CDATA, comments, processing instructions, character references
		xm(open + "<name><![CDATA[<not>&an element]]></name>" + closing), xm(open + "<name><![CDATA[" + closing),
		xm(`<?xml version="1.0" encoding="UTF-8"?><!-- c -->` + open + "<name>a&#x26;b&#0;</name>" + closing),
		xm(`<?xml version="1.0" encoding="ISO-8859-1"?>` + open + "</" + root + ">"),
		xm(`<?xml version="1.0" encoding="UTF-16"?>` + open + "</" + root + ">"),
		// entity expansion attempts
		xm(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">` +
			`<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>` + open + "<name>&c;</name>" + closing),
		xm(`<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>` + open + "<name>&x;</name>" + closing),
		xm(open + "<name>&undefined;</name>" + closing), xm(open + "<name>&lt;&gt;&amp;&quot;&apos;</name>" + closing),
		// deep nesting, beyond the decoders' depth limits
		js(`{"colour":` + deep(10001, "[", "]") + `}`), js(`{"machineTemplate":` + deep(10001, `{"a":`, "}") + `}`),
		js(deep(10001, "[", "]")),
		xm(open + deep(10001, "<a>", "</a>") + closing), xm(deep(10001, "<"+root+">", "</"+root+">")),
		// binary garbage and invalid UTF-8
		js("\x00\x01\x02\xff\xfe"), xm("<\xff\xfe/>"), js(`{"name":"\xff\xfe"}`), xm(open + "<name>\xff</name>" + closing),
		js(`{"name":"\ud800"}`), xm(open + "<name>\x01</name>" + closing),
	}
}

func FuzzDecodeAction(f *testing.F)                     { fuzzRequest(f, "Action") }
func FuzzDecodeMachineCreate(f *testing.F)              { fuzzRequest(f, "MachineCreate") }
func FuzzDecodeMachineTemplateCreate(f *testing.F)      { fuzzRequest(f, "MachineTemplateCreate") }
func FuzzDecodeMachineConfigurationCreate(f *testing.F) { fuzzRequest(f, "MachineConfigurationCreate") }
func FuzzDecodeMachineImageCreate(f *testing.F)         { fuzzRequest(f, "MachineImageCreate") }
func FuzzDecodeMeterCreate(f *testing.F)                { fuzzRequest(f, "MeterCreate") }
func FuzzDecodeVolumeConfigurationCreate(f *testing.F)  { fuzzRequest(f, "VolumeConfigurationCreate") }
func FuzzDecodeVolumeTemplateCreate(f *testing.F)       { fuzzRequest(f, "VolumeTemplateCreate") }
func FuzzDecodeVolumeCreate(f *testing.F)               { fuzzRequest(f, "VolumeCreate") }
func FuzzDecodeVolumeImageCreate(f *testing.F)          { fuzzRequest(f, "VolumeImageCreate") }
func FuzzDecodeMachineVolumeCreate(f *testing.F)        { fuzzRequest(f, "MachineVolumeCreate") }
func FuzzDecodeNetworkConfigurationCreate(f *testing.F) { fuzzRequest(f, "NetworkConfigurationCreate") }
func FuzzDecodeNetworkTemplateCreate(f *testing.F)      { fuzzRequest(f, "NetworkTemplateCreate") }
func FuzzDecodeNetworkCreate(f *testing.F)              { fuzzRequest(f, "NetworkCreate") }
func FuzzDecodeAddressTemplateCreate(f *testing.F)      { fuzzRequest(f, "AddressTemplateCreate") }
func FuzzDecodeAddressCreate(f *testing.F)              { fuzzRequest(f, "AddressCreate") }
func FuzzDecodeCredentialTemplateCreate(f *testing.F)   { fuzzRequest(f, "CredentialTemplateCreate") }
func FuzzDecodeCredentialCreate(f *testing.F)           { fuzzRequest(f, "CredentialCreate") }
func FuzzDecodeMachineNetworkInterface(f *testing.F)    { fuzzRequest(f, "MachineNetworkInterfaceInput") }
func FuzzDecodeSystemTemplateCreate(f *testing.F)       { fuzzRequest(f, "SystemTemplateCreate") }
func FuzzDecodeSystemCreate(f *testing.F)               { fuzzRequest(f, "SystemCreate") }

// TestFuzzValidSeedsDecode makes sure the fuzzers start from bodies the
// API accepts: every valid seed decodes without error.
func TestFuzzValidSeedsDecode(t *testing.T) {
	for name, tg := range targets {
		for i, s := range tg.valid {
			f := cimi.JSON
			if s.xml {
				f = cimi.XML
			}
			if err := cimi.DecodeRequest([]byte(s.body), f, tg.newV(), tg.types...); err != nil {
				t.Errorf("%s seed %d (%s): %v\n%s", name, i, f, err, s.body)
			}
		}
	}
}
