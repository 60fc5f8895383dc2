package ovf

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// goldenDescriptors get a golden inspect summary each.
var goldenDescriptors = []string{
	"cot__csr1000v.ovf",
	"cot__ubuntu.2.0.ovf",
	"cot__v0.9.ovf",
	"govmomi__nsx-unified-appliance-9.1.0.0.ovf",
	"govmomi__vCD_vApp_OVF.ovf",
	"govmomi__virtualsystemcollection-ovf2.ovf",
	"govmomi__xp-compress-multinic.ovf",
	"pve__Win10-Liz.ovf",
	"vbox-smartos__box.ovf",
	"virtmgr__test1.ovf",
	"xenadmin__sample_app.ovf",
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ovf -run Golden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("summary differs from %s:\n%s", path, got)
	}
}

func TestGoldenSummaries(t *testing.T) {
	for _, name := range goldenDescriptors {
		t.Run(strings.TrimSuffix(name, ".ovf"), func(t *testing.T) {
			e, err := Parse(corpus(t, name), Options{})
			if err != nil {
				t.Fatal(err)
			}
			js, err := Summarize(e).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(name, ".ovf"), js)
		})
	}
	t.Run("package-std-ova", func(t *testing.T) {
		p, err := openOVA(tarOf(t, stdPackage(), "vm.ovf", "vm.mf", "disk1.vmdk"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		js, err := p.Summary().Marshal()
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "package-std-ova", js)
	})
}
