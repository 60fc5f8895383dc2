package ovf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sys is what a corpus descriptor must yield for one VirtualSystem.
type sys struct {
	cpus     int
	memMiB   int64
	disks    []int64 // capacities in bytes
	networks []string
}

// corpusCases lists every descriptor of testdata/corpus: either what it
// must parse to (default configuration) or why it must be refused (the
// reason SOURCES.md gives, or the tricky case it exhibits).
var corpusCases = map[string]struct {
	systems []sys
	err     error
	reason  string
	strict  string // reason for refusal in strict mode, when it differs
}{
	"cot__csr1000v.ovf":      {systems: []sys{{1, 4096, []int64{1 << 30}, []string{"GigabitEthernet1", "GigabitEthernet2", "GigabitEthernet3"}}}},
	"cot__input.ovf":         {systems: []sys{{4, 4096, []int64{1 << 30}, []string{"VM Network", "VM Network", "VM Network"}}}},
	"cot__iosv.ovf":          {systems: []sys{{1, 384, []int64{1 << 30, 128 << 20}, []string{"GigabitEthernet0_0", "GigabitEthernet0_1"}}}},
	"cot__ubuntu.2.0.ovf":    {systems: []sys{{1, 512, []int64{8 << 30}, []string{"NAT"}}}},
	"cot__v0.9.ovf":          {systems: []sys{{1, 8192, []int64{1 << 30}, []string{"bridged"}}}},
	"ganeti__ganeti.ovf":     {err: ErrInvalid, reason: `names Parent "3"`, strict: "GanetiSection"},
	"ganeti__gzip_disk.ovf":  {err: ErrInvalid, reason: `names Parent "3"`, strict: "GanetiSection"},
	"ganeti__virtualbox.ovf": {err: ErrInvalid, reason: `disk "vmdisk1" is used by both`},
	"glance__testserver.ovf": {systems: []sys{{1, 512, []int64{8 << 30}, []string{"NAT"}}}},
	"govmomi__StudioVappEulaOvf.ovf": {systems: []sys{
		{1, 256, []int64{2 << 30}, []string{"ubuntu8.04 Network 1"}},
		{1, 256, []int64{2 << 30}, []string{"ubuntu8.04 1 Network 1"}},
	}},
	"govmomi__Vcf-License-Server-9.1.0.0.ovf":        {systems: []sys{{2, 4096, []int64{4 << 30, 4 << 30, 4 << 30}, []string{"Network 1"}}}},
	"govmomi__Zimbra_606_Ubuntu_8041_i386_OVF10.ovf": {systems: []sys{{1, 2048, []int64{6 << 30, 12 << 30}, []string{"Network 1"}}}},
	"govmomi__aag-1-vm-mixed-ovf1-ovf2.ovf":          {systems: []sys{{0, 0, nil, nil}}},
	"govmomi__bitnami-tomcatstack-8.0.36-x86_64.ovf": {systems: []sys{{1, 1024, []int64{18253611008}, []string{"bridged"}}}},
	"govmomi__child_uitem_req_true.ovf":              {err: ErrUnsupported, reason: "Unknown"},
	"govmomi__chinese_characters.ovf":                {systems: []sys{{1, 40, []int64{40 << 20}, []string{"VM Network"}}}},
	"govmomi__comp002.ovf":                           {systems: []sys{{1, 1024, []int64{20 << 20}, []string{"VM Network"}}}},
	"govmomi__efi-nvram.ovf":                         {systems: []sys{{1, 1024, []int64{4 << 30}, []string{"VM Network"}}}},
	"govmomi__esxvmovf.ovf":                          {systems: []sys{{2, 8192, []int64{32 << 30}, []string{"vxw-dvs-34-virtualwire-3-sid-1300002-sc2-01-tr-build01-vc30-dynamic"}}}},
	"govmomi__nostalgia-chunkdisk.ovf":               {systems: []sys{{1, 64, []int64{107373568}, []string{"VM Network"}}}},
	"govmomi__nsx-unified-appliance-9.1.0.0.ovf":     {systems: []sys{{6, 24576, []int64{200 << 30, 100 << 30}, []string{"Network 1"}}}},
	"govmomi__photon5.ovf":                           {systems: []sys{{1, 2048, []int64{16 << 30}, []string{"None"}}}},
	"govmomi__ttylinux-pc_i486-16.1.ovf":             {systems: []sys{{1, 32, []int64{30 << 20}, []string{"nat"}}}},
	"govmomi__unknownSectionsVm.ovf":                 {systems: []sys{{1, 1024, nil, nil}}},
	"govmomi__vCD_vApp_OVF.ovf": {systems: []sys{
		{2, 512, []int64{1536 << 20, 2 << 30}, []string{"vc1-direct", "test"}},
		{1, 64, []int64{2 << 30}, []string{"vc1-direct"}},
	}},
	"govmomi__virtualsystemcollection-ovf2.ovf": {systems: []sys{{1, 1024, nil, []string{"VS Network"}}, {1, 1024, nil, []string{"VS Network"}}}},
	"govmomi__xp-compress-multinic.ovf":         {systems: []sys{{2, 512, []int64{1536 << 20, 2 << 30}, []string{"VM Network", "dvportgroup-30"}}}},
	"pve__Win10-Liz.ovf":                        {systems: []sys{{4, 6144, []int64{128 << 30}, []string{"bridged"}}}},
	"pve__Win_2008_R2_two-disks.ovf":            {systems: []sys{{1, 2048, []int64{40 << 30, 1 << 30}, []string{"bridged"}}}},
	"pve__XEE.ovf":                              {err: ErrUnsafe, reason: "DOCTYPE"},
	"v2v__test-i-ova-gz.ovf":                    {systems: []sys{{1, 1024, []int64{50 << 30}, []string{"PG-VLAN60"}}}},
	"v2v__test-i-ova.ovf":                       {systems: []sys{{1, 2048, []int64{32 << 30}, []string{"VM Network"}}}},
	"v2v__test-o-ovirt.ovf":                     {err: ErrInvalid, reason: `"#SIZE#"`},
	"vbox-nxos__box.ovf":                        {systems: []sys{{2, 8196, []int64{4 << 30}, []string{"NAT"}}}},
	"vbox-smartos__box.ovf":                     {systems: []sys{{1, 1024, []int64{8000 << 20}, []string{"NAT"}}}},
	"virtmgr__CentOS-6.4-i386-Gnome.ovf":        {systems: []sys{{1, 512, []int64{18 << 30}, []string{"NAT"}}}},
	"virtmgr__test1.ovf":                        {systems: []sys{{3, 777, []int64{8 << 30, 0}, []string{"VM Network"}}}},
	"virtmgr__test_gzip.ovf":                    {systems: []sys{{1, 4096, []int64{20 << 30}, []string{"bridged"}}}},
	"xenadmin__sample_app.ovf":                  {systems: []sys{{1, 64, []int64{10 << 20}, nil}}, strict: "VirtualSystemOtherConfigurationData"},
}

func TestCorpus(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.ovf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(corpusCases) {
		t.Errorf("%d descriptors in testdata/corpus, %d cases", len(names), len(corpusCases))
	}
	for _, path := range names {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".ovf"), func(t *testing.T) {
			c, ok := corpusCases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Parse(data, Options{})
			if c.err != nil {
				wantError(t, err, c.err, c.reason)
			} else {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				checkSystems(t, e, c.systems)
			}
			if c.strict != "" {
				_, err := Parse(data, Options{Strict: true})
				wantError(t, err, ErrUnsupported, c.strict)
			}
		})
	}
}

func checkSystems(t *testing.T, e *Envelope, want []sys) {
	t.Helper()
	got := e.VirtualSystems()
	if len(got) != len(want) {
		t.Fatalf("%d virtual systems, want %d", len(got), len(want))
	}
	for i, w := range want {
		m := got[i].Machine
		if m.CPUs != w.cpus || m.MemoryBytes != w.memMiB<<20 {
			t.Errorf("%s: %d CPUs, %d bytes; want %d, %d MiB", got[i].ID, m.CPUs, m.MemoryBytes, w.cpus, w.memMiB)
		}
		var caps []int64
		for _, d := range m.Disks {
			caps = append(caps, d.CapacityBytes)
		}
		if !equalSlices(caps, w.disks) {
			t.Errorf("%s: disk capacities %v, want %v", got[i].ID, caps, w.disks)
		}
		var nets []string
		for _, n := range m.NICs {
			nets = append(nets, n.Network)
		}
		if !equalSlices(nets, w.networks) {
			t.Errorf("%s: NIC networks %q, want %q", got[i].ID, nets, w.networks)
		}
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
