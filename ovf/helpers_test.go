package ovf

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// corpus returns a descriptor or manifest of testdata/corpus.
func corpus(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// wantError checks that err is of the class and mentions every fragment.
func wantError(t testing.TB, err error, class error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v mentioning %q", class, fragments)
	}
	if class != nil && !errors.Is(err, class) {
		t.Errorf("error %q is not of class %v", err, class)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans several lines", err)
	}
}

func mustParse(t testing.TB, data string, opts Options) *Envelope {
	t.Helper()
	e, err := Parse([]byte(data), opts)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return e
}

func hasWarning(e []string, fragment string) bool {
	for _, w := range e {
		if strings.Contains(w, fragment) {
			return true
		}
	}
	return false
}

func wantWarning(t testing.TB, warnings []string, fragment string) {
	t.Helper()
	if !hasWarning(warnings, fragment) {
		t.Errorf("no warning mentions %q; warnings: %q", fragment, warnings)
	}
}

// Synthetic descriptors. doc wraps sections and content in an OVF 1.0
// Envelope declaring the usual prefixes.
func doc(body string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
` + body + `
</Envelope>`
}

const (
	stdRefs  = `<References><File ovf:id="file1" ovf:href="disk1.vmdk" ovf:size="1024"/></References>`
	stdDisks = `<DiskSection><Info>disks</Info><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>`
	stdNets  = `<NetworkSection><Info>nets</Info><Network ovf:name="lan"><Description>lan</Description></Network></NetworkSection>`
	cpuItem  = `<Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>`
	memItem  = `<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>`
	scsiItem = `<Item><rasd:ElementName>scsi</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>`
	diskItem = `<Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>disk</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>`
	nicItem  = `<Item><rasd:Connection>lan</rasd:Connection><rasd:ElementName>nic</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>`
	stdItems = cpuItem + memItem + scsiItem + diskItem + nicItem
)

// vs wraps hardware items (and extra VirtualSystem content) in a
// VirtualSystem "vm".
func vs(items string, extra ...string) string {
	return `<VirtualSystem ovf:id="vm"><Info>vm</Info><Name>vm</Name>` + strings.Join(extra, "") +
		`<VirtualHardwareSection><Info>hw</Info><System><vssd:ElementName>hw</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemType>vmx-10</vssd:VirtualSystemType></System>` +
		items + `</VirtualHardwareSection></VirtualSystem>`
}

// stdDoc is a complete, valid descriptor: one VM with 2 CPUs, 1 GiB, one
// 1 GiB disk on SCSI and one E1000 NIC on "lan".
func stdDoc() string { return doc(stdRefs + stdDisks + stdNets + vs(stdItems)) }

// member is one entry of a synthetic tar archive.
type member struct {
	name     string
	data     []byte
	typeflag byte
	linkname string
}

func file(name string, data []byte) member { return member{name: name, data: data} }

// buildTar writes members as a tar archive.
func buildTar(t testing.TB, members ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: m.typeflag, Linkname: m.linkname, ModTime: time.Unix(0, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func openOVA(data []byte, opts Options) (*Package, error) {
	return OpenOVA(bytes.NewReader(data), int64(len(data)), opts)
}

// manifestFor returns SHA256 manifest lines for the given files.
func manifestFor(files map[string][]byte, order ...string) []byte {
	var b strings.Builder
	for _, name := range order {
		fmt.Fprintf(&b, "SHA256(%s)= %x\n", name, sha256Sum(files[name]))
	}
	return []byte(b.String())
}

// stdPackage returns the files of a valid package around stdDoc with a
// 1024-byte disk, the manifest included.
func stdPackage() map[string][]byte {
	files := map[string][]byte{
		"vm.ovf":     []byte(stdDoc()),
		"disk1.vmdk": bytes.Repeat([]byte{0xAB}, 1024),
	}
	files["vm.mf"] = manifestFor(files, "vm.ovf", "disk1.vmdk")
	return files
}

func mapFS(files map[string][]byte) fs.FS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: v, Mode: 0o644}
	}
	return m
}

// tarOf builds an OVA of files in the given member order.
func tarOf(t testing.TB, files map[string][]byte, order ...string) []byte {
	var ms []member
	for _, n := range order {
		ms = append(ms, file(n, files[n]))
	}
	return buildTar(t, ms...)
}
