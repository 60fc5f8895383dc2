package ovf

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestTrickyCases has one subtest for each of the 50 tricky cases of the
// OVF reference notes, named after its number and subject.
func TestTrickyCases(t *testing.T) {
	cases := []struct {
		name string
		test func(t *testing.T)
	}{
		{"01_href_path_traversal", case01},
		{"02_href_absolute_paths", case02},
		{"03_tar_member_traversal_and_links", case03},
		{"04_duplicate_tar_members", case04},
		{"05_members_out_of_order", case05},
		{"06_several_or_no_descriptors", case06},
		{"07_manifest_mismatch", case07},
		{"08_missing_manifest", case08},
		{"09_manifest_variants", case09},
		{"10_manifest_self_extra_and_omitted", case10},
		{"11_certificate_present", case11},
		{"12_capacity_units", case12},
		{"13_capacity_property", case13},
		{"14_blank_disks", case14},
		{"15_shared_disk_or_file", case15},
		{"16_dangling_references", case16},
		{"17_duplicate_instance_ids", case17},
		{"18_file_size_mismatch", case18},
		{"19_decompression_bomb", case19},
		{"20_unknown_compression", case20},
		{"21_chunked_files", case21},
		{"22_backing_files_and_extents", case22},
		{"23_format_probing", case23},
		{"24_format_lies", case24},
		{"25_huge_or_deep_xml", case25},
		{"26_doctype_and_entities", case26},
		{"27_encodings", case27},
		{"28_prefix_games", case28},
		{"29_unknown_required_content", case29},
		{"30_unknown_optional_sections", case30},
		{"31_ovf2_content", case31},
		{"32_ovirt_dialect", case32},
		{"33_ovf_0_9", case33},
		{"34_virtual_system_collections", case34},
		{"35_several_hardware_sections", case35},
		{"36_deployment_options", case36},
		{"37_product_properties", case37},
		{"38_eula", case38},
		{"39_non_ascii_hrefs", case39},
		{"40_host_resource_spellings", case40},
		{"41_subtype_lists_and_unknown_types", case41},
		{"42_vendor_os_type", case42},
		{"43_firmware_in_vendor_data", case43},
		{"44_host_specific_settings", case44},
		{"45_big_archives", case45},
		{"46_compressed_ova", case46},
		{"47_truncated_archive", case47},
		{"48_disk_space", case48},
		{"49_files_in_subfolders", case49},
		{"50_export_format", case50},
	}
	for _, c := range cases {
		t.Run(c.name, c.test)
	}
}

func withHref(href string) string {
	return doc(strings.Replace(stdRefs, `"disk1.vmdk"`, `"`+href+`"`, 1) + stdDisks + stdNets + vs(stdItems))
}

func case01(t *testing.T) {
	for _, href := range []string{"../../etc/passwd", "disk/../../x", "a/../../b.vmdk", ".."} {
		_, err := Parse([]byte(withHref(href)), Options{})
		wantError(t, err, ErrUnsafe, "leaves the package", "file1")
	}
	// The ovftool conformance file climbs out of the package too; without
	// its required unknown element it is refused for that.
	d := strings.Replace(string(corpus(t, "govmomi__child_uitem_req_true.ovf")), `<rasd:Unknown ovf:required="true"></rasd:Unknown>`, "", 1)
	_, err := Parse([]byte(d), Options{})
	wantError(t, err, ErrUnsafe, "../../../vmdk/valid_disk.vmdk", "leaves the package")
	// A directory package refuses it as well.
	files := stdPackage()
	files["vm.ovf"] = []byte(withHref("../disk1.vmdk"))
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrUnsafe, "leaves the package")
}

func case02(t *testing.T) {
	for href, frag := range map[string]string{
		"/var/lib/libvirt/images/other.qcow2": "absolute",
		`C:\disks\x.vmdk`:                     "backslash",
		"C:disk.vmdk":                         "URL or drive",
		"http://example.com/disk1.vmdk":       "URL",
		"file:///etc/shadow":                  "URL",
		"disk\x00.vmdk":                       "NUL",
	} {
		_, err := Parse([]byte(withHref(strings.ReplaceAll(href, "\x00", "&#0;"))), Options{})
		if href == "disk\x00.vmdk" {
			// XML cannot carry NUL; CleanHref refuses it directly.
			_, err = CleanHref(href)
		}
		wantError(t, err, nil, frag)
	}
}

func case03(t *testing.T) {
	files := stdPackage()
	for _, name := range []string{"../evil", "/etc/cron.d/x", `dir\evil`} {
		data := buildTar(t, file("vm.ovf", files["vm.ovf"]), file(name, []byte("x")))
		_, err := openOVA(data, Options{})
		wantError(t, err, ErrUnsafe, "archive member name")
	}
	// A link standing in for a referenced file is refused, never followed.
	for _, typ := range []byte{tar.TypeSymlink, tar.TypeLink} {
		data := buildTar(t, file("vm.ovf", files["vm.ovf"]), file("vm.mf", files["vm.mf"]),
			member{name: "disk1.vmdk", typeflag: typ, linkname: "/etc/shadow"})
		_, err := openOVA(data, Options{})
		wantError(t, err, ErrUnsafe, "disk1.vmdk", "link")
	}
	// Unreferenced devices are ignored with a warning.
	data := buildTar(t, file("vm.ovf", files["vm.ovf"]), file("vm.mf", files["vm.mf"]), file("disk1.vmdk", files["disk1.vmdk"]),
		member{name: "dev", typeflag: tar.TypeChar})
	p, err := openOVA(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, p.Warnings, `"dev" is a character device`)
}

func case04(t *testing.T) {
	files := stdPackage()
	data := buildTar(t, file("vm.ovf", files["vm.ovf"]), file("vm.mf", files["vm.mf"]),
		file("disk1.vmdk", files["disk1.vmdk"]), file("./disk1.vmdk", []byte("other")))
	_, err := openOVA(data, Options{})
	wantError(t, err, ErrUnsafe, `"disk1.vmdk" twice`)
}

func case05(t *testing.T) {
	files := stdPackage()
	_, err := openOVA(tarOf(t, files, "vm.mf", "vm.ovf", "disk1.vmdk"), Options{})
	wantError(t, err, ErrInvalid, "not the first member", "vm.mf")
	// The manifest may come last.
	p, err := openOVA(tarOf(t, files, "vm.ovf", "disk1.vmdk", "vm.mf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Files out of References order are read by offset, with a warning.
	two := map[string][]byte{
		"vm.ovf": []byte(doc(`<References><File ovf:id="file1" ovf:href="a.vmdk" ovf:size="1"/><File ovf:id="file2" ovf:href="b.vmdk" ovf:size="1"/></References>` +
			`<DiskSection><Info/><Disk ovf:diskId="d1" ovf:fileRef="file1" ovf:capacity="1"/><Disk ovf:diskId="d2" ovf:fileRef="file2" ovf:capacity="1"/></DiskSection>` +
			vs(cpuItem+memItem+`<Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>`+
				`<Item><rasd:HostResource>ovf:/disk/d2</rasd:HostResource><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>`))),
		"a.vmdk": []byte("a"), "b.vmdk": []byte("b"),
	}
	two["vm.mf"] = manifestFor(two, "vm.ovf", "a.vmdk", "b.vmdk")
	p, err = openOVA(tarOf(t, two, "vm.ovf", "vm.mf", "b.vmdk", "a.vmdk"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, p.Warnings, "not in References order")
}

func case06(t *testing.T) {
	files := stdPackage()
	data := buildTar(t, file("vm.ovf", files["vm.ovf"]), file("other.ovf", files["vm.ovf"]), file("disk1.vmdk", files["disk1.vmdk"]))
	_, err := openOVA(data, Options{})
	wantError(t, err, ErrInvalid, "2 descriptors", "vm.ovf", "other.ovf")
	_, err = openOVA(buildTar(t, file("disk1.vmdk", files["disk1.vmdk"])), Options{})
	wantError(t, err, ErrInvalid, "no .ovf descriptor")
	// macOS AppleDouble companions are not descriptors.
	data = buildTar(t, file("vm.ovf", files["vm.ovf"]), file("._vm.ovf", []byte{0, 5, 22, 7}), file("vm.mf", files["vm.mf"]), file("disk1.vmdk", files["disk1.vmdk"]))
	if _, err := openOVA(data, Options{}); err != nil {
		t.Fatal(err)
	}
}

func case07(t *testing.T) {
	files := stdPackage()
	files["disk1.vmdk"] = bytes.Repeat([]byte{0xCD}, 1024)
	p, err := openOVA(tarOf(t, files, "vm.ovf", "vm.mf", "disk1.vmdk"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", sha256Sum(stdPackage()["disk1.vmdk"]))
	got := fmt.Sprintf("%x", sha256Sum(files["disk1.vmdk"]))
	wantError(t, p.Verify(context.Background()), ErrIntegrity, "SHA256", `"disk1.vmdk"`, want, got)
	// A tampered descriptor fails at once.
	files = stdPackage()
	files["vm.ovf"] = bytes.Replace(files["vm.ovf"], []byte(">2<"), []byte(">8<"), 1)
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrIntegrity, "SHA256", `"vm.ovf"`)
	// The corpus manifests match their descriptors.
	for _, pair := range [][2]string{{"ganeti__ganeti", "ganeti"}, {"cot__input", "input"}, {"cot__ubuntu.2.0", "ubuntu.2.0"}, {"govmomi__ttylinux-pc_i486-16.1", "ttylinux-pc_i486-16.1"}} {
		m, err := ParseManifest(bytes.NewReader(corpus(t, pair[0]+".mf")))
		if err != nil {
			t.Fatal(err)
		}
		e, ok := m.Lookup(pair[1] + ".ovf")
		if !ok {
			t.Fatalf("%s.mf does not list the descriptor", pair[0])
		}
		v, err := newVerifier(bytes.NewReader(corpus(t, pair[0]+".ovf")), e.Name, &e, -1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, v); err != nil {
			t.Errorf("%s: %v", pair[0], err)
		}
	}
}

func case08(t *testing.T) {
	files := stdPackage()
	p, err := openOVA(tarOf(t, files, "vm.ovf", "disk1.vmdk"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest != nil {
		t.Error("package without manifest has one")
	}
	wantWarning(t, p.Warnings, "no manifest")
	if s := p.Summary(); s.Manifest != "" {
		t.Errorf("summary claims manifest %q", s.Manifest)
	}
}

func case09(t *testing.T) {
	m, err := ParseManifest(bytes.NewReader(corpus(t, "govmomi__ttylinux-pc_i486-16.1.mf")))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := m.Lookup("ttylinux-pc_i486-16.1-disk1.vmdk"); !ok || e.Algorithm != "SHA1" || e.Digest != "648e20a1e1625b1bb963b08c926bc18e62f15dfc" {
		t.Errorf("spaced SHA1 line: %+v", e)
	}
	files := stdPackage()
	disk := files["disk1.vmdk"]
	variants := map[string]string{
		"SHA2-256 label":  fmt.Sprintf("SHA2-256(vm.ovf)= %x\nSHA2-256(disk1.vmdk)= %x\n", sha256Sum(files["vm.ovf"]), sha256Sum(disk)),
		"CRLF upper hex":  fmt.Sprintf("sha256(vm.ovf)= %X\r\nSHA256(disk1.vmdk)= %X\r\n\r\n", sha256Sum(files["vm.ovf"]), sha256Sum(disk)),
		"spaces and SHA1": fmt.Sprintf("SHA1 ( vm.ovf ) = %x\nSHA1 (disk1.vmdk) = %x\n", sha1Of(files["vm.ovf"]), sha1Of(disk)),
		"SHA512":          fmt.Sprintf("SHA512(vm.ovf)= %x\nSHA512(disk1.vmdk)= %x\n", sha512Of(files["vm.ovf"]), sha512Of(disk)),
	}
	for name, mf := range variants {
		files["vm.mf"] = []byte(mf)
		p, err := OpenDir(mapFS(files), "vm.ovf", Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.Verify(context.Background()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	files["vm.mf"] = []byte(fmt.Sprintf("SHA256(vm.ovf)= %x\nMD5(disk1.vmdk)= 0123456789abcdef0123456789abcdef\n", sha256Sum(files["vm.ovf"])))
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrUnsupported, "MD5", "disk1.vmdk")
}

func case10(t *testing.T) {
	files := stdPackage()
	files["vm.mf"] = append(files["vm.mf"], []byte("SHA256(vm.mf)= e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nSHA256(README)= 00\nnot a manifest line\n")...)
	p, err := OpenDir(mapFS(files), "vm.ovf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, p.Warnings, `lists "README", which is not in the package`)
	wantWarning(t, p.Warnings, "line 5 is not of the form")
	if hasWarning(p.Warnings, `"vm.mf"`) {
		t.Errorf("self entry was not ignored: %q", p.Warnings)
	}
	// A disk the manifest omits is refused.
	files = stdPackage()
	files["vm.mf"] = manifestFor(files, "vm.ovf")
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrIntegrity, "does not list", "disk1.vmdk")
	// A manifest that omits the descriptor protects nothing.
	files["vm.mf"] = manifestFor(files, "disk1.vmdk")
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrIntegrity, "does not list the descriptor")
}

func case11(t *testing.T) {
	files := stdPackage()
	files["vm.cert"] = []byte("SHA256(vm.mf)= 00\n-----BEGIN CERTIFICATE-----\n")
	p, err := openOVA(tarOf(t, files, "vm.ovf", "vm.mf", "vm.cert", "disk1.vmdk"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Certificate != "vm.cert" {
		t.Errorf("Certificate = %q", p.Certificate)
	}
	wantWarning(t, p.Warnings, "signature was not checked")
}

func case12(t *testing.T) {
	for unit, want := range map[string]int64{
		"byte": 1, "byte * 2^20": 1 << 20, "byte*2^30": 1 << 30, "byte * 4 * 2^10": 4 << 10, "byte * 1000": 1000,
		"byte * 10^3": 1000, "Byte * 2^20": 1 << 20, "MegaBytes": 1 << 20, "GigaBytes": 1 << 30,
	} {
		got, err := ParseByteUnits(unit)
		if err != nil || got != want {
			t.Errorf("ParseByteUnits(%q) = %d, %v; want %d", unit, got, err, want)
		}
	}
	for _, unit := range []string{"byte * 2^30 *", "2 ^ 10", "byte * 1,000", "bit", "byte + 2^10", "byte * 3^2", "byte * 2^64", "byte * 2^-1", "hertz * 10^6"} {
		if _, err := ParseByteUnits(unit); err == nil {
			t.Errorf("ParseByteUnits(%q) accepted", unit)
		}
	}
	disk := func(capacity, units string) string {
		return doc(stdRefs + `<DiskSection><Info/><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="` + capacity + `"` + units + `/></DiskSection>` + stdNets + vs(stdItems))
	}
	e := mustParse(t, disk("3", ` ovf:capacityAllocationUnits="byte * 4 * 2^10"`), Options{})
	if c := e.Disks[0].Capacity; c != 3*4096 {
		t.Errorf("capacity = %d", c)
	}
	e = mustParse(t, disk("12345", ""), Options{})
	if c := e.Disks[0].Capacity; c != 12345 {
		t.Errorf("capacity without units = %d", c)
	}
	_, err := Parse([]byte(disk("9000000000", ` ovf:capacityAllocationUnits="byte * 2^40"`)), Options{})
	wantError(t, err, ErrInvalid, "overflows")
	_, err = Parse([]byte(disk("1", ` ovf:capacityAllocationUnits="byte * 2 ^ 10"`)), Options{})
	wantError(t, err, ErrInvalid, "capacityAllocationUnits")
	_, err = Parse([]byte(disk("-1", "")), Options{})
	wantError(t, err, ErrInvalid, "capacity")
}

const productWithSize = `<ProductSection><Info/><Property ovf:key="disk_size" ovf:type="uint32" ovf:value="4" ovf:userConfigurable="true"/></ProductSection>`

func case13(t *testing.T) {
	d := doc(stdRefs + `<DiskSection><Info/><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="${disk_size}" ovf:capacityAllocationUnits="byte * 2^30"/></DiskSection>` + stdNets + vs(stdItems, productWithSize))
	e := mustParse(t, d, Options{})
	if c := e.VirtualSystems()[0].Machine.Disks[0].CapacityBytes; c != 4<<30 {
		t.Errorf("capacity = %d, want 4 GiB", c)
	}
	e = mustParse(t, d, Options{Properties: map[string]string{"disk_size": "10"}})
	if c := e.Disks[0].Capacity; c != 10<<30 {
		t.Errorf("capacity with override = %d, want 10 GiB", c)
	}
	_, err := Parse([]byte(strings.Replace(d, "${disk_size}", "${nope}", 1)), Options{})
	wantError(t, err, ErrInvalid, `property "nope"`)
}

func case14(t *testing.T) {
	for _, ref := range []string{"", ` ovf:fileRef=""`} {
		d := doc(stdRefs + `<DiskSection><Info/><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30"/><Disk ovf:diskId="blank"` + ref + ` ovf:capacity="512" ovf:capacityAllocationUnits="byte * 2^20"/></DiskSection>` + stdNets +
			vs(stdItems+`<Item><rasd:AddressOnParent>1</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/blank</rasd:HostResource><rasd:InstanceID>6</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>`))
		e := mustParse(t, d, Options{})
		disks := e.VirtualSystems()[0].Machine.Disks
		if len(disks) != 2 || disks[1].FileID != "" || disks[1].Href != "" || disks[1].CapacityBytes != 512<<20 {
			t.Errorf("blank disk: %+v", disks)
		}
	}
	for _, name := range []string{"govmomi__nsx-unified-appliance-9.1.0.0.ovf", "govmomi__Vcf-License-Server-9.1.0.0.ovf", "cot__iosv.ovf"} {
		e, err := Parse(corpus(t, name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		blank := 0
		for _, d := range e.VirtualSystems()[0].Machine.Disks {
			if d.FileID == "" && d.CapacityBytes > 0 {
				blank++
			}
		}
		if blank == 0 {
			t.Errorf("%s: no blank disk found", name)
		}
	}
	_, err := Parse([]byte(doc(stdRefs+`<DiskSection><Info/><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1"/><Disk ovf:diskId="b"/></DiskSection>`+vs(cpuItem))), Options{})
	wantError(t, err, ErrInvalid, `"b" is blank`)
}

func case15(t *testing.T) {
	twice := strings.Replace(diskItem, "<rasd:InstanceID>4<", "<rasd:InstanceID>6<", 1)
	_, err := Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(stdItems+twice))), Options{})
	wantError(t, err, ErrInvalid, `disk "vmdisk1" is used by both`)
	d := doc(stdRefs + `<DiskSection><Info/><Disk ovf:diskId="a" ovf:fileRef="file1" ovf:capacity="1"/><Disk ovf:diskId="b" ovf:fileRef="file1" ovf:capacity="1"/></DiskSection>` + vs(cpuItem))
	_, err = Parse([]byte(d), Options{})
	wantError(t, err, ErrInvalid, `both use File "file1"`)
	d = doc(`<References><File ovf:id="f1" ovf:href="x.vmdk"/><File ovf:id="f2" ovf:href="./x.vmdk"/></References>` + vs(cpuItem))
	_, err = Parse([]byte(d), Options{})
	wantError(t, err, ErrInvalid, `"f1" and "f2" both point at`)
	// The Ganeti test file attaches one disk twice.
	_, err = Parse(corpus(t, "ganeti__virtualbox.ovf"), Options{})
	wantError(t, err, ErrInvalid, `disk "vmdisk1" is used by both`)
}

func case16(t *testing.T) {
	_, err := Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, "ovf:/disk/vmdisk1", "ovf:/disk/nope", 1)))), Options{})
	wantError(t, err, ErrInvalid, `disk "nope"`, "DiskSection does not list")
	_, err = Parse([]byte(doc(stdRefs+strings.Replace(stdDisks, `fileRef="file1"`, `fileRef="file9"`, 1)+stdNets+vs(stdItems))), Options{})
	wantError(t, err, ErrInvalid, `File "file9"`)
	_, err = Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, "<rasd:Parent>3<", "<rasd:Parent>33<", 1)))), Options{})
	wantError(t, err, ErrInvalid, `Parent "33"`)
	_, err = Parse(corpus(t, "ganeti__ganeti.ovf"), Options{})
	wantError(t, err, ErrInvalid, `Parent "3"`)
	_, err = Parse([]byte(doc(stdRefs+stdDisks+vs(cpuItem+`<Item><rasd:HostResource>ovf:/file/nope</rasd:HostResource><rasd:InstanceID>7</rasd:InstanceID><rasd:ResourceType>15</rasd:ResourceType></Item>`))), Options{})
	wantError(t, err, ErrInvalid, `file "nope"`)
}

func case17(t *testing.T) {
	dup := strings.Replace(nicItem, "<rasd:InstanceID>5<", "<rasd:InstanceID>1<", 1)
	_, err := Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(stdItems+dup))), Options{})
	wantError(t, err, ErrInvalid, `InstanceID "1"`)
	// The same InstanceID in disjoint configurations is legal.
	d := doc(stdRefs + stdDisks + stdNets + `<DeploymentOptionSection><Info/><Configuration ovf:id="s"><Label>s</Label></Configuration><Configuration ovf:id="l"><Label>l</Label></Configuration></DeploymentOptionSection>` +
		vs(strings.Replace(cpuItem, "<Item>", `<Item ovf:configuration="s">`, 1)+strings.Replace(strings.Replace(cpuItem, "<Item>", `<Item ovf:configuration="l">`, 1), ">2<", ">8<", 1)+memItem+scsiItem+diskItem+nicItem))
	for cfg, cpus := range map[string]int{"": 2, "s": 2, "l": 8} {
		e := mustParse(t, d, Options{Configuration: cfg})
		if got := e.VirtualSystems()[0].Machine.CPUs; got != cpus {
			t.Errorf("configuration %q: %d CPUs, want %d", cfg, got, cpus)
		}
	}
	// COT's pattern: an ungated item overridden by a gated one.
	e, err := Parse(corpus(t, "cot__input.ovf"), Options{Configuration: "1CPU-1GB-1NIC"})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.VirtualSystems()[0].Machine; m.CPUs != 1 || m.MemoryBytes != 1<<30 || len(m.NICs) != 1 {
		t.Errorf("1CPU-1GB-1NIC: %d CPUs, %d bytes, %d NICs", m.CPUs, m.MemoryBytes, len(m.NICs))
	}
}

func case18(t *testing.T) {
	for _, size := range []int{1023, 1025} {
		files := stdPackage()
		files["disk1.vmdk"] = bytes.Repeat([]byte{0xAB}, size)
		_, err := openOVA(tarOf(t, files, "vm.ovf", "vm.mf", "disk1.vmdk"), Options{})
		wantError(t, err, ErrIntegrity, "disk1.vmdk", fmt.Sprint(size), "1024")
		_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
		wantError(t, err, ErrIntegrity, "disk1.vmdk", "1024")
	}
	// Without ovf:size the stored size is taken and still checked while reading.
	files := stdPackage()
	files["vm.ovf"] = bytes.Replace(files["vm.ovf"], []byte(` ovf:size="1024"`), nil, 1)
	files["vm.mf"] = manifestFor(files, "vm.ovf", "disk1.vmdk")
	p, err := OpenDir(mapFS(files), "vm.ovf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func case19(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(make([]byte, 10<<20))
	zw.Close()
	r, err := Decompress(bytes.NewReader(gz.Bytes()), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, r)
	wantError(t, err, ErrUnsafe, "larger than 1048576 bytes")
	r, _ = Decompress(bytes.NewReader(gz.Bytes()), 10<<20)
	if n, err := io.Copy(io.Discard, r); err != nil || n != 10<<20 {
		t.Errorf("exact limit: %d, %v", n, err)
	}
	r, _ = Decompress(strings.NewReader("plain"), 100)
	if b, _ := io.ReadAll(r); string(b) != "plain" {
		t.Errorf("plain content: %q", b)
	}
	if info, _ := DetectImage(bytes.NewReader(gz.Bytes()), int64(gz.Len())); info.Format != "gzip" {
		t.Errorf("gzip not sniffed: %+v", info)
	}
	e, err := Parse(corpus(t, "govmomi__xp-compress-multinic.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, "declares no compression")
}

func case20(t *testing.T) {
	for _, c := range []string{"bzip2", "xz", "zstd"} {
		d := strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:size="1024" ovf:compression="`+c+`"`, 1)
		_, err := Parse([]byte(d), Options{})
		wantError(t, err, ErrUnsupported, c)
	}
	e := mustParse(t, strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:size="1024" ovf:compression="identity"`, 1), Options{})
	if e.Files[0].Compression != "" {
		t.Errorf("identity compression = %q", e.Files[0].Compression)
	}
}

func case21(t *testing.T) {
	content := []byte(strings.Repeat("0123456789", 25)) // 250 bytes in chunks of 100
	files := map[string][]byte{
		"vm.ovf":               []byte(strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:size="250" ovf:chunkSize="100"`, 1)),
		"disk1.vmdk.000000000": content[:100],
		"disk1.vmdk.000000001": content[100:200],
		"disk1.vmdk.000000002": content[200:],
	}
	files["vm.mf"] = manifestFor(files, "vm.ovf", "disk1.vmdk.000000000", "disk1.vmdk.000000001", "disk1.vmdk.000000002")
	ova := tarOf(t, files, "vm.ovf", "vm.mf", "disk1.vmdk.000000000", "disk1.vmdk.000000001", "disk1.vmdk.000000002")
	p, err := openOVA(ova, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := p.Open(p.Envelope.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("reassembled %q, %v", got, err)
	}
	secs, err := p.Sections(p.Envelope.Files[0])
	if err != nil || len(secs) != 3 || secs[2].Size != 50 {
		t.Errorf("sections %+v, %v", secs, err)
	}
	// A gap, an extra piece, or a wrong piece size is refused.
	_, err = openOVA(tarOf(t, files, "vm.ovf", "vm.mf", "disk1.vmdk.000000000", "disk1.vmdk.000000002"), Options{})
	wantError(t, err, ErrIntegrity, "disk1.vmdk.000000001")
	files["disk1.vmdk.000000003"] = []byte("x")
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrIntegrity, "more chunks")
	delete(files, "disk1.vmdk.000000003")
	files["disk1.vmdk.000000001"] = content[100:199]
	_, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	wantError(t, err, ErrIntegrity, "holds 99 bytes, expected 100")
	// A chunk tampered with fails its own manifest line.
	files["disk1.vmdk.000000001"] = bytes.Repeat([]byte("x"), 100)
	p, err = OpenDir(mapFS(files), "vm.ovf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, p.Verify(context.Background()), ErrIntegrity, "disk1.vmdk.000000001")
	// A chunk larger than the file: one piece.
	e, err := Parse(corpus(t, "govmomi__nostalgia-chunkdisk.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if names := e.Files[0].ChunkNames(); len(names) != 1 || names[0] != "Nostalgia-disk1.vmdk.000000000" {
		t.Errorf("chunk names %q", names)
	}
	_, err = Parse([]byte(strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:chunkSize="100"`, 1)), Options{})
	wantError(t, err, ErrInvalid, "chunked but has no ovf:size")
	_, err = Parse([]byte(strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:size="1000000000" ovf:chunkSize="1"`, 1)), Options{})
	wantError(t, err, ErrUnsafe, "chunks")
}

// qcow2Header returns a qcow2 v3 header; tweak sets fields.
func qcow2Header(tweak func(h []byte)) []byte {
	h := make([]byte, 4096)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint32(h[20:], 16)
	binary.BigEndian.PutUint64(h[24:], 1<<30)
	binary.BigEndian.PutUint32(h[100:], 104)
	if tweak != nil {
		tweak(h)
	}
	return h
}

// sparseVMDK returns a sparse VMDK header with an embedded descriptor.
func sparseVMDK(descriptor string) []byte {
	h := make([]byte, 2048)
	copy(h, "KDMV")
	binary.LittleEndian.PutUint32(h[4:], 3)
	binary.LittleEndian.PutUint64(h[12:], 2097152)
	binary.LittleEndian.PutUint64(h[28:], 1)
	binary.LittleEndian.PutUint64(h[36:], 2)
	copy(h[512:], descriptor)
	return h
}

const vmdkDesc = "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\nRW 2097152 SPARSE \"disk1.vmdk\"\n"

func case22(t *testing.T) {
	check := func(img []byte) (ImageInfo, error) { return DetectImage(bytes.NewReader(img), int64(len(img))) }
	_, err := check(qcow2Header(func(h []byte) { binary.BigEndian.PutUint64(h[8:], 512); binary.BigEndian.PutUint32(h[16:], 11) }))
	wantError(t, err, ErrUnsafe, "backing file")
	_, err = check(qcow2Header(func(h []byte) { binary.BigEndian.PutUint64(h[72:], 1<<2) }))
	wantError(t, err, ErrUnsafe, "external file")
	_, err = check(qcow2Header(func(h []byte) { binary.BigEndian.PutUint32(h[32:], 2) }))
	wantError(t, err, ErrUnsupported, "encrypted")
	_, err = check([]byte("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/shadow\" 0\n"))
	wantError(t, err, ErrUnsafe, "text descriptor")
	_, err = check(sparseVMDK(strings.Replace(vmdkDesc, `SPARSE "disk1.vmdk"`, `FLAT "/etc/shadow" 0`, 1)))
	wantError(t, err, ErrUnsafe, "FLAT")
	_, err = check(sparseVMDK(vmdkDesc + "RW 2048 SPARSE \"other.vmdk\"\n"))
	wantError(t, err, ErrUnsafe, "2 extents")
	_, err = check(sparseVMDK(strings.Replace(vmdkDesc, "parentCID=ffffffff", "parentCID=1234abcd\nparentFileNameHint=\"/var/lib/base.vmdk\"", 1)))
	wantError(t, err, ErrUnsafe, "parent")
	_, err = check(sparseVMDK(strings.Replace(vmdkDesc, "streamOptimized", "twoGbMaxExtentSparse", 1)))
	wantError(t, err, ErrUnsafe, "twoGbMaxExtentSparse")
	vhd := make([]byte, 4096)
	copy(vhd[len(vhd)-512:], "conectix")
	binary.BigEndian.PutUint32(vhd[len(vhd)-512+60:], 4)
	_, err = check(vhd)
	wantError(t, err, ErrUnsafe, "differencing")
	// Clean images pass with their virtual size.
	info, err := check(sparseVMDK(vmdkDesc))
	if err != nil || info.Format != "vmdk/streamOptimized" || info.VirtualSize != 1<<30 {
		t.Errorf("streamOptimized: %+v, %v", info, err)
	}
	info, err = check(qcow2Header(nil))
	if err != nil || info.Format != "qcow2" || info.VirtualSize != 1<<30 {
		t.Errorf("qcow2: %+v, %v", info, err)
	}
}

func case23(t *testing.T) {
	// Content decides, whatever the descriptor declares: a "raw" disk
	// holding a qcow2 header is qcow2, and is checked as one.
	img := qcow2Header(func(h []byte) { binary.BigEndian.PutUint64(h[8:], 512); binary.BigEndian.PutUint32(h[16:], 11) })
	_, err := DetectImage(bytes.NewReader(img), int64(len(img)))
	wantError(t, err, ErrUnsafe, "backing file")
	raw := bytes.Repeat([]byte("guest data "), 4000)
	if info, err := DetectImage(bytes.NewReader(raw), int64(len(raw))); err != nil || info.Format != "raw" {
		t.Errorf("raw: %+v, %v", info, err)
	}
	iso := make([]byte, 40000)
	copy(iso[32769:], "CD001")
	if info, _ := DetectImage(bytes.NewReader(iso), int64(len(iso))); info.Format != "iso" {
		t.Errorf("iso: %+v", info)
	}
}

func case24(t *testing.T) {
	raw := ImageInfo{Format: "raw"}
	if w := CompareFormat(FormatVMDKSparseOld, raw); !strings.Contains(w, "vmdk/sparse") || !strings.Contains(w, "raw") {
		t.Errorf("oVirt raw labelled VMDK: warning %q", w)
	}
	if w := CompareFormat(FormatStreamOptimized, ImageInfo{Format: "qcow2"}); w == "" {
		t.Error("qcow2 labelled VMDK: no warning")
	}
	if w := CompareFormat(FormatStreamOptimized, ImageInfo{Format: "vmdk/monolithicSparse"}); w != "" {
		t.Errorf("VMDK subformats: warning %q", w)
	}
	if w := CompareFormat(FormatRaw, raw); w != "" {
		t.Errorf("matching raw: warning %q", w)
	}
}

func case25(t *testing.T) {
	deep := doc(strings.Repeat("<x>", 100) + strings.Repeat("</x>", 100))
	_, err := Parse([]byte(deep), Options{})
	wantError(t, err, ErrUnsafe, "deeper than 64")
	many := doc(stdRefs + stdDisks + stdNets + vs(stdItems+strings.Repeat(`<vmw:Config ovf:required="false" vmw:key="a" vmw:value="b"/>`, 2000)))
	_, err = Parse([]byte(many), Options{Limits: Limits{MaxElements: 1000}})
	wantError(t, err, ErrUnsafe, "more than 1000 elements")
	if _, err := Parse([]byte(many), Options{}); err != nil {
		t.Errorf("2000 elements refused by default: %v", err)
	}
	long := withHref(strings.Repeat("a", 2<<20))
	_, err = Parse([]byte(long), Options{})
	wantError(t, err, ErrUnsafe, "longer than")
	_, err = Parse([]byte(stdDoc()), Options{Limits: Limits{MaxDescriptorBytes: 100}})
	wantError(t, err, ErrUnsafe, "larger than 100 bytes")
	_, err = ParseReader(io.MultiReader(strings.NewReader(stdDoc()), strings.NewReader(strings.Repeat(" ", 17<<20))), Options{})
	wantError(t, err, ErrUnsafe, "larger than")
	attrs := `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"` + strings.Repeat(` a="1"`, 0) + `>`
	for i := range 300 {
		attrs = strings.Replace(attrs, ">", fmt.Sprintf(` a%d="1">`, i), 1)
	}
	_, err = Parse([]byte(attrs+"</Envelope>"), Options{})
	wantError(t, err, ErrUnsafe, "attributes")
}

func case26(t *testing.T) {
	_, err := Parse(corpus(t, "pve__XEE.ovf"), Options{})
	wantError(t, err, ErrUnsafe, "DOCTYPE")
	laughs := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol2;</Envelope>`
	_, err = Parse([]byte(laughs), Options{})
	wantError(t, err, ErrUnsafe, "DOCTYPE")
	param := `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>`
	_, err = Parse([]byte(param), Options{})
	wantError(t, err, ErrUnsafe, "DOCTYPE")
	// An undeclared entity is a syntax error, never resolved.
	_, err = Parse([]byte(strings.Replace(stdDoc(), "<Name>vm</Name>", "<Name>&external;</Name>", 1)), Options{})
	wantError(t, err, ErrInvalid, "malformed XML")
}

func utf16Bytes(s string, bigEndian bool) []byte {
	var b []byte
	if bigEndian {
		b = []byte{0xFE, 0xFF}
	} else {
		b = []byte{0xFF, 0xFE}
	}
	for _, r := range s {
		if r > 0xFFFF {
			r -= 0x10000
			hi, lo := 0xD800+(r>>10), 0xDC00+(r&0x3FF)
			for _, u := range []rune{hi, lo} {
				if bigEndian {
					b = append(b, byte(u>>8), byte(u))
				} else {
					b = append(b, byte(u), byte(u>>8))
				}
			}
			continue
		}
		if bigEndian {
			b = append(b, byte(r>>8), byte(r))
		} else {
			b = append(b, byte(r), byte(r>>8))
		}
	}
	return b
}

func case27(t *testing.T) {
	e, err := Parse(corpus(t, "xenadmin__sample_app.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, `declares encoding "utf-16" but its bytes are UTF-8`)
	named := strings.Replace(strings.Replace(stdDoc(), `encoding="UTF-8"`, `encoding="UTF-16"`, 1), "<Name>vm</Name>", "<Name>café 𝄞</Name>", 1)
	for _, be := range []bool{false, true} {
		e, err := Parse(utf16Bytes(named, be), Options{})
		if err != nil {
			t.Fatalf("UTF-16 (big endian %v): %v", be, err)
		}
		if n := e.VirtualSystems()[0].Name; n != "café 𝄞" {
			t.Errorf("UTF-16 name = %q", n)
		}
	}
	latin1 := strings.Replace(strings.Replace(stdDoc(), `encoding="UTF-8"`, `encoding="ISO-8859-1"`, 1), "<Name>vm</Name>", "<Name>caf\xe9</Name>", 1)
	if n := mustParse(t, latin1, Options{}).VirtualSystems()[0].Name; n != "café" {
		t.Errorf("latin1 name = %q", n)
	}
	cp := strings.Replace(strings.Replace(stdDoc(), `encoding="UTF-8"`, `encoding="windows-1252"`, 1), "<Name>vm</Name>", "<Name>\x80 \x93q\x94</Name>", 1)
	if n := mustParse(t, cp, Options{}).VirtualSystems()[0].Name; n != "€ “q”" {
		t.Errorf("windows-1252 name = %q", n)
	}
	bom := "\xEF\xBB\xBF" + stdDoc()
	mustParse(t, bom, Options{})
	_, err = Parse([]byte(strings.Replace(stdDoc(), "<Name>vm</Name>", "<Name>caf\xe9</Name>", 1)), Options{})
	wantError(t, err, ErrInvalid, "invalid UTF-8")
	_, err = Parse([]byte(strings.Replace(stdDoc(), `encoding="UTF-8"`, `encoding="Shift_JIS"`, 1)), Options{})
	wantError(t, err, ErrUnsupported, "Shift_JIS")
	_, err = Parse([]byte(strings.Replace(strings.Replace(stdDoc(), `encoding="UTF-8"`, `encoding="UTF-16"`, 1), "<Name>vm</Name>", "<Name>caf\xe9</Name>", 1)), Options{})
	wantError(t, err, ErrUnsupported, "no UTF-16 byte order mark")
}

func case28(t *testing.T) {
	e, err := Parse(corpus(t, "govmomi__nsx-unified-appliance-9.1.0.0.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Disks) != 3 {
		t.Errorf("nsx: %d disks (Disk and ovf:Disk mixed), want 3", len(e.Disks))
	}
	// Other prefixes, per-element declarations: only URIs count.
	odd := `<?xml version="1.0"?>
<o:Envelope xmlns:o="http://schemas.dmtf.org/ovf/envelope/1">
 <o:References><o:File o:id="file1" o:href="disk1.vmdk" o:size="1024"/></o:References>
 <DiskSection xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Info/><Disk o:diskId="vmdisk1" o:fileRef="file1" o:capacity="1" o:capacityAllocationUnits="byte * 2^30"/></DiskSection>
 <o:VirtualSystem o:id="vm"><o:Info/><o:VirtualHardwareSection><o:Info/>
  <o:Item><r:InstanceID xmlns:r="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">1</r:InstanceID><q:ResourceType xmlns:q="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">3</q:ResourceType><q:VirtualQuantity xmlns:q="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">4</q:VirtualQuantity></o:Item>
  <o:Item xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></o:Item>
 </o:VirtualHardwareSection></o:VirtualSystem>
</o:Envelope>`
	e = mustParse(t, odd, Options{})
	if m := e.VirtualSystems()[0].Machine; m.CPUs != 4 || len(m.Disks) != 1 {
		t.Errorf("odd prefixes: %+v", m)
	}
	// The "ovf" prefix bound to another namespace is not OVF.
	fake := strings.Replace(stdDoc(), `xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"`, `xmlns="http://example.com/not-ovf" xmlns:ovf="http://example.com/not-ovf"`, 1)
	_, err = Parse([]byte(fake), Options{})
	wantError(t, err, ErrUnsupported, "not an OVF envelope namespace")
	// A section named like an OVF one in a vendor namespace is not one.
	vendor := doc(stdRefs + `<x:DiskSection xmlns:x="http://example.com/x"><Info/></x:DiskSection>` + vs(cpuItem))
	_, err = Parse([]byte(vendor), Options{})
	wantError(t, err, ErrUnsupported, "DiskSection (namespace http://example.com/x)")
}

func case29(t *testing.T) {
	_, err := Parse(corpus(t, "govmomi__child_uitem_req_true.ovf"), Options{})
	wantError(t, err, ErrUnsupported, "Unknown", "required but not supported")
	req := doc(stdRefs + stdDisks + stdNets + `<x:LicenseServerSection xmlns:x="http://example.com/x"><Info/></x:LicenseServerSection>` + vs(stdItems))
	_, err = Parse([]byte(req), Options{})
	wantError(t, err, ErrUnsupported, "LicenseServerSection", "Envelope")
	req = doc(stdRefs + stdDisks + stdNets + `<ScaleOutSection ovf:required="true"><Info/></ScaleOutSection>` + vs(stdItems))
	_, err = Parse([]byte(req), Options{})
	wantError(t, err, ErrUnsupported, "ScaleOutSection")
	// Ganeti's and XenServer's sections carry no ovf:required: tolerated
	// with a warning, refused in strict mode.
	e, err := Parse(corpus(t, "xenadmin__sample_app.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, "VirtualSystemOtherConfigurationData")
	_, err = Parse(corpus(t, "xenadmin__sample_app.ovf"), Options{Strict: true})
	wantError(t, err, ErrUnsupported, "VirtualSystemOtherConfigurationData")
	_, err = Parse(corpus(t, "ganeti__ganeti.ovf"), Options{Strict: true})
	wantError(t, err, ErrUnsupported, "GanetiSection (namespace http://ganeti)")
	// Explicitly required vendor content is refused even when tolerated.
	vmw := doc(stdRefs + stdDisks + stdNets + `<vmw:StorageGroupSection ovf:required="true"><Info/></vmw:StorageGroupSection>` + vs(stdItems))
	_, err = Parse([]byte(vmw), Options{})
	wantError(t, err, ErrUnsupported, "StorageGroupSection")
}

func case30(t *testing.T) {
	e, err := Parse(corpus(t, "govmomi__unknownSectionsVm.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, "ignored optional EbbeSection")
	wantWarning(t, e.Warnings, "ignored optional EbbeVmSection")
	e, err = Parse(corpus(t, "virtmgr__test1.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, "ignored optional TestSection")
	// Logged once however often it occurs.
	opt := `<x:Hint xmlns:x="http://example.com/x" ovf:required="false"><Info/></x:Hint>`
	e = mustParse(t, doc(stdRefs+stdDisks+stdNets+opt+opt+opt+vs(stdItems)), Options{})
	n := 0
	for _, w := range e.Warnings {
		if strings.Contains(w, "Hint") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings for one repeated optional section: %q", n, e.Warnings)
	}
}

func case31(t *testing.T) {
	e, err := Parse(corpus(t, "govmomi__aag-1-vm-mixed-ovf1-ovf2.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantWarning(t, e.Warnings, "PlacementGroupSection")
	e, err = Parse(corpus(t, "cot__ubuntu.2.0.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := e.VirtualSystems()[0].Machine
	if e.Version != "2.0" || len(m.Disks) != 1 || m.Disks[0].Bus != "sata" || len(m.NICs) != 1 || m.NICs[0].Network != "NAT" {
		t.Errorf("OVF 2 StorageItem/EthernetPortItem: version %s, %+v", e.Version, m)
	}
}

const ovirtDoc = `<?xml version='1.0' encoding='utf-8'?>
<ovf:Envelope xmlns:rasd='http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData' xmlns:vssd='http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ovf='http://schemas.dmtf.org/ovf/envelope/1/' xmlns:ovirt='http://www.ovirt.org/ovf' ovf:version='0.9'>
  <References><File ovf:href='img-group/img-1' ovf:id='img-1' ovf:size='2048'/></References>
  <Section xsi:type='ovf:NetworkSection_Type'><Info>List of networks</Info><Network ovf:name='ovirtmgmt'/></Section>
  <Section xsi:type='ovf:DiskSection_Type'><Info>List of Virtual Disks</Info>
    <Disk ovf:diskId='img-1' ovf:size='1' ovf:capacity='536870912' ovf:fileRef='img-group/img-1' ovf:parentRef='' ovf:volume-format='RAW' ovf:format='http://en.wikipedia.org/wiki/Byte' ovf:disk-interface='VirtIO' ovf:boot='True'/>
  </Section>
  <Content ovf:id='out' xsi:type='ovf:VirtualSystem_Type'>
    <Name>windows</Name><TemplateId>00000000-0000-0000-0000-000000000000</TemplateId><BiosType>1</BiosType>
    <Section ovf:id='vm-1' ovf:required='false' xsi:type='ovf:OperatingSystemSection_Type'><Info>Windows</Info><Description>windows_2022</Description></Section>
    <Section xsi:type='ovf:VirtualHardwareSection_Type'><Info>1 CPU, 1024 Memory</Info>
      <Item><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType><rasd:num_of_sockets>2</rasd:num_of_sockets><rasd:cpu_per_socket>2</rasd:cpu_per_socket></Item>
      <Item><rasd:InstanceId>2</rasd:InstanceId><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
      <Item><rasd:InstanceId>3</rasd:InstanceId><rasd:ResourceType>20</rasd:ResourceType><Type>video</Type><Device>vga</Device></Item>
      <Item><rasd:InstanceId>4</rasd:InstanceId><rasd:ResourceType>0</rasd:ResourceType><Type>rng</Type><SpecParams><source>urandom</source></SpecParams></Item>
      <Item><rasd:InstanceId>img-1</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><Type>disk</Type><rasd:HostResource>img-group/img-1</rasd:HostResource><BootOrder>1</BootOrder></Item>
      <Item><rasd:InstanceId>6</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType><rasd:ResourceSubType>3</rasd:ResourceSubType><rasd:Connection>ovirtmgmt</rasd:Connection><rasd:MACAddress>00:11:22:33:44:55</rasd:MACAddress></Item>
    </Section>
  </Content>
</ovf:Envelope>`

func case32(t *testing.T) {
	e := mustParse(t, ovirtDoc, Options{})
	if e.Dialect != "ovirt" || e.Version != "1.0" {
		t.Errorf("dialect %q version %q", e.Dialect, e.Version)
	}
	vs := e.VirtualSystems()[0]
	m := vs.Machine
	if vs.Name != "windows" || m.CPUs != 4 || m.MemoryBytes != 1<<30 || len(m.Disks) != 1 || m.Disks[0].Href != "img-group/img-1" || m.Disks[0].Format != "raw" || len(m.NICs) != 1 {
		t.Errorf("oVirt machine: %s %+v", vs.Name, m)
	}
	if vs.OS.Type() != "windows_2022" {
		t.Errorf("oVirt OS %q", vs.OS.Type())
	}
	wantWarning(t, e.Warnings, "oVirt")
	// virt-v2v's expected output keeps its test placeholders: refused
	// without crashing, naming the first bad value.
	_, err := Parse(corpus(t, "v2v__test-o-ovirt.ovf"), Options{})
	wantError(t, err, ErrInvalid, "#SIZE#")
}

func case33(t *testing.T) {
	e, err := Parse(corpus(t, "cot__v0.9.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := e.VirtualSystems()[0].Machine
	if e.Version != "0.9" || m.CPUs != 1 || m.MemoryBytes != 8192<<20 || len(m.Disks) != 1 || m.Disks[0].Format != "vmdk/sparse" {
		t.Errorf("OVF 0.9: %s %+v", e.Version, m)
	}
}

func case34(t *testing.T) {
	e, err := Parse(corpus(t, "govmomi__vCD_vApp_OVF.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.VirtualSystems()); n != 2 {
		t.Errorf("vCD vApp: %d systems", n)
	}
	vc := e.Content.(*VirtualSystemCollection)
	if len(vc.Startup) != 2 {
		t.Errorf("startup %+v", vc.Startup)
	}
	nested := doc(stdRefs + stdDisks + stdNets + `<VirtualSystemCollection ovf:id="outer"><Info/>
	<StartupSection><Info/><Item ovf:id="inner" ovf:order="2"/><Item ovf:id="vm" ovf:order="1"/></StartupSection>` +
		vs(stdItems) + `<VirtualSystemCollection ovf:id="inner"><Info/>` + strings.Replace(vs(cpuItem+memItem), `ovf:id="vm"`, `ovf:id="vm2"`, 1) + `</VirtualSystemCollection></VirtualSystemCollection>`)
	e = mustParse(t, nested, Options{})
	ids := []string{}
	for _, v := range e.VirtualSystems() {
		ids = append(ids, v.ID)
	}
	if strings.Join(ids, ",") != "vm,vm2" {
		t.Errorf("nested members %q", ids)
	}
	if st := e.Content.(*VirtualSystemCollection).Startup; st[0].ID != "vm" || st[1].ID != "inner" {
		t.Errorf("startup order %+v", st)
	}
	if s := Summarize(e); len(s.VirtualSystems) != 2 {
		t.Errorf("summary lists %d systems", len(s.VirtualSystems))
	}
	_, err = Parse([]byte(doc(`<VirtualSystemCollection ovf:id="c"><Info/></VirtualSystemCollection>`)), Options{})
	wantError(t, err, ErrInvalid, "no members")
}

func case35(t *testing.T) {
	hw := func(family, cpus string) string {
		return `<VirtualHardwareSection><Info/><System><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>` + family + `</vssd:VirtualSystemType></System>` +
			strings.Replace(cpuItem, ">2<", ">"+cpus+"<", 1) + memItem + `</VirtualHardwareSection>`
	}
	d := doc(`<VirtualSystem ovf:id="vm"><Info/>` + hw("virtualbox-2.2", "1") + hw("vmx-07 vmx-10", "4") + hw("xen-3.0-unknown", "2") + `</VirtualSystem>`)
	e := mustParse(t, d, Options{})
	v := e.VirtualSystems()[0]
	if v.HardwareIndex != 1 || v.Machine.CPUs != 4 || len(v.Hardware) != 3 {
		t.Errorf("chose section %d with %d CPUs", v.HardwareIndex, v.Machine.CPUs)
	}
	wantWarning(t, e.Warnings, "3 VirtualHardwareSections")
	d = doc(`<VirtualSystem ovf:id="vm"><Info/>` + hw("vmx-10", "4") + hw("kvm", "6") + `</VirtualSystem>`)
	if c := mustParse(t, d, Options{}).VirtualSystems()[0].Machine.CPUs; c != 6 {
		t.Errorf("KVM section not preferred: %d CPUs", c)
	}
}

func case36(t *testing.T) {
	nsx := corpus(t, "govmomi__nsx-unified-appliance-9.1.0.0.ovf")
	for cfg, want := range map[string][3]int64{"": {6, 24576 << 20, 2}, "small": {4, 16384 << 20, 2}, "xlarge": {24, 98304 << 20, 3}} {
		e, err := Parse(nsx, Options{Configuration: cfg})
		if err != nil {
			t.Fatal(err)
		}
		m := e.VirtualSystems()[0].Machine
		if int64(m.CPUs) != want[0] || m.MemoryBytes != want[1] || int64(len(m.Disks)) != want[2] {
			t.Errorf("nsx %q: %d CPUs, %d bytes, %d disks; want %v", cfg, m.CPUs, m.MemoryBytes, len(m.Disks), want)
		}
	}
	_, err := Parse(nsx, Options{Configuration: "huge"})
	wantError(t, err, ErrInvalid, `"huge" is not offered`, "small")
	_, err = Parse([]byte(stdDoc()), Options{Configuration: "small"})
	wantError(t, err, ErrInvalid, "no DeploymentOptionSection")
	// Property values follow the configuration.
	d := doc(stdRefs + stdDisks + stdNets + `<DeploymentOptionSection><Info/><Configuration ovf:id="a"/><Configuration ovf:id="b" ovf:default="true"/></DeploymentOptionSection>` +
		vs(stdItems, `<ProductSection><Info/><Property ovf:key="mode" ovf:type="string" ovf:value="x"><Value ovf:value="from-a" ovf:configuration="a"/><Value ovf:value="from-b" ovf:configuration="b"/></Property></ProductSection>`))
	e := mustParse(t, d, Options{})
	if v := e.VirtualSystems()[0].Products[0].Properties[0].Value; e.Configuration != "b" || v != "from-b" {
		t.Errorf("configuration %q, value %q", e.Configuration, v)
	}
}

func case37(t *testing.T) {
	props := `<ProductSection ovf:class="app" ovf:instance="1"><Info/>
	<Property ovf:key="port" ovf:type="uint16" ovf:value="80" ovf:qualifiers="MinValue(1) MaxValue(1024)" ovf:userConfigurable="true"/>
	<Property ovf:key="role" ovf:type="string" ovf:value="web" ovf:qualifiers="ValueMap{&quot;web&quot;,&quot;db&quot;}"/>
	<Property ovf:key="secret" ovf:type="string" ovf:password="true" ovf:qualifiers="MinLen(8)"/>
	<Property ovf:key="debug" ovf:type="boolean" ovf:value="false"/>
	</ProductSection>`
	d := doc(stdRefs + stdDisks + stdNets + vs(stdItems, props))
	e := mustParse(t, d, Options{Properties: map[string]string{"app.port.1": "443", "role": "db", "secret": "correct horse", "debug": "True"}})
	got := map[string]string{}
	for _, p := range e.VirtualSystems()[0].Products[0].Properties {
		got[p.Key] = p.Value
	}
	if got["port"] != "443" || got["role"] != "db" || got["secret"] != "correct horse" {
		t.Errorf("values %v", got)
	}
	for k, v := range map[string]string{"port": "70000", "role": "cache", "debug": "yes"} {
		_, err := Parse([]byte(d), Options{Properties: map[string]string{k: v}})
		wantError(t, err, ErrInvalid, k, v)
	}
	_, err := Parse([]byte(d), Options{Properties: map[string]string{"port": "2000"}})
	wantError(t, err, ErrInvalid, "above 1024")
	_, err = Parse([]byte(d), Options{Properties: map[string]string{"secret": "hunter2"}})
	wantError(t, err, ErrInvalid, "secret", "shorter than 8")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password value leaked: %v", err)
	}
	_, err = Parse([]byte(d), Options{Properties: map[string]string{"nope": "1"}})
	wantError(t, err, ErrInvalid, `"nope" is not defined`)
	// The empty ovf:type of VMware Studio is a string.
	if err := ValidateProperty(Property{Key: "k"}, "anything"); err != nil {
		t.Error(err)
	}
}

func case38(t *testing.T) {
	e, err := Parse(corpus(t, "govmomi__StudioVappEulaOvf.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := len(e.Content.(*VirtualSystemCollection).EULAs)
	for _, v := range e.VirtualSystems() {
		n += len(v.EULAs)
	}
	if n == 0 {
		t.Error("no EULA found")
	}
	if !Summarize(e).EULA {
		t.Error("summary does not flag the EULA")
	}
	if Summarize(mustParse(t, stdDoc(), Options{})).EULA {
		t.Error("summary flags a EULA that is not there")
	}
}

func case39(t *testing.T) {
	for _, href := range []string{"虚拟机-1.vmdk", "name%24x%a-1.vmdk", "my disk.vmdk"} {
		files := map[string][]byte{"vm.ovf": []byte(withHref(href)), href: bytes.Repeat([]byte{1}, 1024)}
		files["vm.mf"] = manifestFor(files, "vm.ovf", href)
		p, err := openOVA(tarOf(t, files, "vm.ovf", "vm.mf", href), Options{})
		if err != nil {
			t.Fatalf("%q: %v", href, err)
		}
		if err := p.Verify(context.Background()); err != nil {
			t.Errorf("%q: %v", href, err)
		}
	}
	e, err := Parse(corpus(t, "govmomi__chinese_characters.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := e.Files[0].Href; h != "虚拟机-1.vmdk" {
		t.Errorf("href %q", h)
	}
}

func case40(t *testing.T) {
	for _, hr := range []string{"ovf:/disk/vmdisk1", "/disk/vmdisk1", "ovf://disk/vmdisk1"} {
		e := mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, "ovf:/disk/vmdisk1", hr, 1))), Options{})
		if d := e.VirtualSystems()[0].Machine.Disks; len(d) != 1 || d[0].DiskID != "vmdisk1" {
			t.Errorf("%s: %+v", hr, d)
		}
	}
	iso := `<References><File ovf:id="file1" ovf:href="disk1.vmdk" ovf:size="1024"/><File ovf:id="iso" ovf:href="boot.iso"/></References>`
	cd := func(hr string) string {
		return `<Item><rasd:HostResource>` + hr + `</rasd:HostResource><rasd:InstanceID>8</rasd:InstanceID><rasd:ResourceType>15</rasd:ResourceType></Item>`
	}
	e := mustParse(t, doc(iso+stdDisks+stdNets+vs(stdItems+cd("ovf:/file/iso"))), Options{})
	if r := e.VirtualSystems()[0].Machine.Removables; len(r) != 1 || r[0].Href != "boot.iso" || r[0].Device != "cdrom" {
		t.Errorf("ISO: %+v", r)
	}
	e = mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(stdItems+cd(""))), Options{})
	if r := e.VirtualSystems()[0].Machine.Removables; len(r) != 1 || r[0].FileID != "" {
		t.Errorf("empty drive: %+v", r)
	}
	e = mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(stdItems+cd("vmware.cdrom.remotepassthrough"))), Options{})
	wantWarning(t, e.Warnings, "left empty")
	_, err := Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, "ovf:/disk/vmdisk1", "/var/lib/x.img", 1)))), Options{})
	wantError(t, err, ErrInvalid, `HostResource "/var/lib/x.img"`)
	_, err = Parse([]byte(doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, "<rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>", "", 1)))), Options{})
	wantError(t, err, ErrInvalid, "no HostResource")
	e, err = Parse(corpus(t, "vbox-smartos__box.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.VirtualSystems()[0].Machine.Removables; len(r) != 1 || r[0].Href != "box-disk002.iso" {
		t.Errorf("VirtualBox ISO as /disk/: %+v", r)
	}
}

func case41(t *testing.T) {
	ctl := func(sub string) string {
		return strings.Replace(stdItems, "<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>", "<rasd:ResourceSubType>"+sub+"</rasd:ResourceSubType>", 1)
	}
	for sub, want := range map[string]string{"virtio lsilogic": "virtio", "buslogic,lsilogic": "buslogic", "VirtualSCSI": "VirtualSCSI", "foo lsilogicsas": "lsilogicsas"} {
		e := mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(ctl(sub))), Options{})
		if m := e.VirtualSystems()[0].Machine.Controllers[0].Model; m != want {
			t.Errorf("%q: model %q, want %q", sub, m, want)
		}
	}
	e := mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(strings.Replace(stdItems, ">E1000<", ">FancyNIC9000<", 1))), Options{})
	wantWarning(t, e.Warnings, `unknown model "FancyNIC9000"`)
	if m := e.VirtualSystems()[0].Machine.NICs[0].Model; m != "FancyNIC9000" {
		t.Errorf("NIC model %q", m)
	}
	odd := func(req string) string {
		return `<Item` + req + `><rasd:ElementName>tpm</rasd:ElementName><rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceSubType>vmware.vtpm</rasd:ResourceSubType><rasd:ResourceType>34</rasd:ResourceType></Item>`
	}
	e = mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(stdItems+odd(` ovf:required="false"`))), Options{})
	if hasWarning(e.Warnings, "tpm") {
		t.Errorf("optional unknown item warned: %q", e.Warnings)
	}
	e = mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(stdItems+odd(""))), Options{})
	wantWarning(t, e.Warnings, "unsupported ResourceType 34")
}

func case42(t *testing.T) {
	for name, want := range map[string]string{
		"pve__Win10-Liz.ovf":     "windows9_64Guest",
		"cot__ubuntu.2.0.ovf":    "Ubuntu_64",
		"ganeti__virtualbox.ovf": "",
	} {
		if want == "" {
			continue
		}
		e, err := Parse(corpus(t, name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.VirtualSystems()[0].OS.Type(); got != want {
			t.Errorf("%s: OS %q, want %q", name, got, want)
		}
	}
	if got := (&OperatingSystem{ID: 96, Description: "Debian"}).Type(); got != "Debian 64-Bit" {
		t.Errorf("CIM name: %q", got)
	}
	if got := (&OperatingSystem{ID: 1, Description: "debian12"}).Type(); got != "debian12" {
		t.Errorf("Other with description: %q", got)
	}
	e := mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(stdItems, `<OperatingSystemSection ovf:id="1" xmlns:ovirt="http://www.ovirt.org/ovf" ovirt:id="rhel_9x64"><Info/></OperatingSystemSection>`)), Options{})
	if got := e.VirtualSystems()[0].OS.Type(); got != "rhel_9x64" {
		t.Errorf("ovirt:id: %q", got)
	}
}

func case43(t *testing.T) {
	for name, want := range map[string]string{"govmomi__efi-nvram.ovf": "efi", "vbox-nxos__box.ovf": "efi", "cot__ubuntu.2.0.ovf": ""} {
		e, err := Parse(corpus(t, name), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := e.VirtualSystems()[0].Machine.Firmware; got != want {
			t.Errorf("%s: firmware %q, want %q", name, got, want)
		}
		if name == "govmomi__efi-nvram.ovf" && hasWarning(e.Warnings, "efi-nvram-2.nvram") {
			t.Errorf("NVRAM file reported unused: %q", e.Warnings)
		}
	}
}

func case44(t *testing.T) {
	// A MAC is reported for the importer to keep or regenerate; nothing
	// of the source host appears in the summary.
	withMAC := strings.Replace(stdItems, "<rasd:Connection>lan</rasd:Connection>", "<rasd:Address>00:50:56:aa:bb:cc</rasd:Address><rasd:Connection>lan</rasd:Connection>", 1)
	e := mustParse(t, doc(stdRefs+stdDisks+stdNets+vs(withMAC)), Options{})
	if mac := e.VirtualSystems()[0].Machine.NICs[0].MAC; mac != "00:50:56:aa:bb:cc" {
		t.Errorf("MAC %q", mac)
	}
	js, _ := json.Marshal(Summarize(e))
	if strings.Contains(string(js), "00:50:56") {
		t.Errorf("summary carries the source MAC: %s", js)
	}
	// VirtualBox's machine blob (VRDE port, serial port as a TCP server)
	// is ignored: only the OVF items define the machine.
	e, err := Parse(corpus(t, "vbox-nxos__box.ovf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := e.VirtualSystems()[0].Machine
	if m.CPUs != 2 || len(m.NICs) != 1 || len(m.Disks) != 1 {
		t.Errorf("vbox-nxos machine %+v", m)
	}
	js, _ = json.Marshal(Summarize(e))
	for _, host := range []string{"TCP", "VRDE", "port"} {
		if strings.Contains(string(js), host) {
			t.Errorf("summary mentions %q: %s", host, js)
		}
	}
}

// sparseFile is an io.ReaderAt of a given size: head, zeros, tail.
type sparseFile struct {
	head []byte
	size int64
}

func (s sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < s.size {
		pos := off + int64(n)
		if pos < int64(len(s.head)) {
			n += copy(p[n:], s.head[pos:])
			continue
		}
		p[n] = 0
		n++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func case45(t *testing.T) {
	const big = 9 << 30
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "vm.ovf", Size: 3, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	tw.Write([]byte("abc"))
	tw.Flush()
	long := strings.Repeat("d", 150) + ".vmdk"
	tw.WriteHeader(&tar.Header{Name: long, Size: 1, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
	tw.Write([]byte("x"))
	tw.Flush()
	if err := tw.WriteHeader(memberHeader("big.vmdk", big, time.Unix(0, 0))); err != nil {
		t.Fatal(err)
	}
	head := b.Bytes()
	a, err := IndexArchive(sparseFile{head: head, size: int64(len(head)) + big + 1024}, int64(len(head))+big+1024)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := a.Member("big.vmdk")
	if !ok || m.Size != big || m.Offset != int64(len(head)) {
		t.Errorf("big member %+v (header ends at %d)", m, len(head))
	}
	if _, ok := a.Member(long); !ok {
		t.Errorf("PAX long name not indexed: %+v", a.Members())
	}
	// A GNU sparse member is refused.
	files := stdPackage()
	data := tarOf(t, files, "vm.ovf", "vm.mf", "disk1.vmdk")
	off := 0
	for _, n := range []string{"vm.ovf", "vm.mf"} {
		off += 512 + (len(files[n])+511)/512*512
	}
	hdr := data[off : off+512]
	hdr[156] = tar.TypeGNUSparse
	copy(hdr[257:265], "ustar  \x00")
	copy(hdr[148:156], "        ")
	var sum int
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	_, err = openOVA(data, Options{})
	wantError(t, err, ErrUnsafe, "sparse")
}

func case46(t *testing.T) {
	ova := tarOf(t, stdPackage(), "vm.ovf", "vm.mf", "disk1.vmdk")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(ova)
	zw.Close()
	_, err := openOVA(gz.Bytes(), Options{})
	wantError(t, err, ErrUnsupported, "gzip-compressed")
	_, err = openOVA(append([]byte("PK\x03\x04"), make([]byte, 2000)...), Options{})
	wantError(t, err, ErrUnsupported, "zip")
	_, err = openOVA(bytes.Repeat([]byte("not a tar "), 200), Options{})
	wantError(t, err, ErrInvalid, "not a tar")
}

func case47(t *testing.T) {
	ova := tarOf(t, stdPackage(), "vm.ovf", "vm.mf", "disk1.vmdk")
	for _, cut := range []int{len(ova) - 1024 - 600, len(ova) - 1024 - 1100} {
		_, err := openOVA(ova[:cut], Options{})
		wantError(t, err, ErrIntegrity, "truncated")
	}
}

func case48(t *testing.T) {
	e := mustParse(t, stdDoc(), Options{})
	if n, err := e.RequiredBytes(); err != nil || n != 1<<30 {
		t.Errorf("RequiredBytes = %d, %v", n, err)
	}
	huge := doc(`<References><File ovf:id="a" ovf:href="a"/><File ovf:id="b" ovf:href="b"/></References><DiskSection><Info/>` +
		`<Disk ovf:diskId="a" ovf:fileRef="a" ovf:capacity="6" ovf:capacityAllocationUnits="byte * 2^60"/><Disk ovf:diskId="b" ovf:fileRef="b" ovf:capacity="6" ovf:capacityAllocationUnits="byte * 2^60"/></DiskSection>` +
		vs(cpuItem+memItem+`<Item><rasd:HostResource>ovf:/disk/a</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/b</rasd:HostResource><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>`))
	e = mustParse(t, huge, Options{})
	_, err := e.RequiredBytes()
	wantError(t, err, ErrInvalid, "overflows")
}

func case49(t *testing.T) {
	files := map[string][]byte{
		"pkg/appliance.ovf":    []byte(withHref("disks/disk1.vmdk")),
		"pkg/disks/disk1.vmdk": bytes.Repeat([]byte{7}, 1024),
	}
	mf := fmt.Sprintf("SHA256(appliance.ovf)= %x\nSHA256(disks/disk1.vmdk)= %x\n", sha256Sum(files["pkg/appliance.ovf"]), sha256Sum(files["pkg/disks/disk1.vmdk"]))
	files["pkg/appliance.mf"] = []byte(mf)
	for _, open := range []func() (*Package, error){
		func() (*Package, error) {
			return openOVA(tarOf(t, files, "pkg/appliance.ovf", "pkg/appliance.mf", "pkg/disks/disk1.vmdk"), Options{})
		},
		func() (*Package, error) { return OpenDir(mapFS(files), "pkg/appliance.ovf", Options{}) },
	} {
		p, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	files["pkg/appliance.ovf"] = []byte(withHref("disks/../../disk1.vmdk"))
	_, err := OpenDir(mapFS(files), "pkg/appliance.ovf", Options{})
	wantError(t, err, ErrUnsafe, "leaves the package")
}

func case50(t *testing.T) {
	spec := Spec{Systems: []SystemSpec{{Name: "web", CPUs: 1, MemoryBytes: 512 << 20, Disks: []DiskSpec{
		{Href: "web-1.vmdk", Size: 3, Capacity: 2 << 30},
		{Href: "web-2.vmdk", Size: 4, Capacity: 1000000000},
	}}}}
	d, err := Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`ovf:href="web-1.vmdk" ovf:size="3"`, `ovf:href="web-2.vmdk" ovf:size="4"`,
		`ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^30"`, `ovf:capacity="1000000000" ovf:capacityAllocationUnits="byte"`} {
		if !bytes.Contains(d, []byte(want)) {
			t.Errorf("descriptor lacks %s", want)
		}
	}
	var out bytes.Buffer
	o := OVA{DescriptorName: "web.ovf", Descriptor: d, Files: []OVAFile{
		{Name: "web-1.vmdk", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("one")), nil }},
		{Name: "web-2.vmdk", Size: 4, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("four")), nil }},
	}}
	if err := o.Write(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	var names []string
	var manifest []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Format != tar.FormatUSTAR && h.Format != tar.FormatUnknown {
			t.Errorf("%s: format %v", h.Name, h.Format)
		}
		names = append(names, h.Name)
		if h.Name == "web.mf" {
			manifest, _ = io.ReadAll(tr)
		}
	}
	if strings.Join(names, " ") != "web.ovf web.mf web-1.vmdk web-2.vmdk" {
		t.Errorf("member order %q", names)
	}
	want := fmt.Sprintf("SHA256(web.ovf)= %x\nSHA256(web-1.vmdk)= %x\nSHA256(web-2.vmdk)= %x\n", sha256Sum(d), sha256Sum([]byte("one")), sha256Sum([]byte("four")))
	if string(manifest) != want {
		t.Errorf("manifest\n%s\nwant\n%s", manifest, want)
	}
	if !bytes.Equal(out.Bytes()[257:262], []byte("ustar")) {
		t.Error("first header is not ustar")
	}
	// Members of 8 GiB and more get a GNU base-256 size field.
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(memberHeader("big.vmdk", 9<<30, time.Unix(0, 0))); err != nil {
		t.Fatal(err)
	}
	if h := b.Bytes(); h[124]&0x80 == 0 || string(h[257:263]) != "ustar " {
		t.Errorf("big member header: size field %x, magic %q", h[124:136], h[257:265])
	}
	if memberHeader("small", ustarMaxSize, time.Time{}).Format != tar.FormatUSTAR {
		t.Error("largest ustar size not written as ustar")
	}
	// Short, long and changing files are refused.
	for name, f := range map[string]OVAFile{
		"yielded 2 bytes": {Name: "x.vmdk", Size: 3, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("ab")), nil }},
		"larger than":     {Name: "x.vmdk", Size: 1, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("ab")), nil }},
		"changed":         {Name: "x.vmdk", Size: 2, SHA256: sha256Sum([]byte("zz")), Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("ab")), nil }},
	} {
		err := OVA{DescriptorName: "web.ovf", Descriptor: d, Files: []OVAFile{f}}.Write(context.Background(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	err = OVA{DescriptorName: "web.ovf", Descriptor: d, Files: []OVAFile{{Name: strings.Repeat("n", 300), Size: 0, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }}}}.Write(context.Background(), io.Discard)
	if err == nil {
		t.Error("a 300-byte member name was written")
	}
}
