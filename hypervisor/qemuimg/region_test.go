package qemuimg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// container writes prefix bytes, then the file at path padded to a whole
// sector as a tar member is, then suffix bytes into a new file and returns
// it with the region the image takes in it.
func container(t *testing.T, dir, path string, prefix, suffix int) (string, Region) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(bytes.Repeat([]byte{0xAA}, prefix))
	b.Write(img)
	b.Write(make([]byte, (512-len(img)%512)%512+suffix))
	out := filepath.Join(dir, filepath.Base(path)+".box")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out, Region{Path: out, Offset: int64(prefix), Size: int64(len(img))}
}

func TestConvertRegionReadsInPlace(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "data.raw")
	writeData(t, raw, 4*mib)
	vmdk := filepath.Join(dir, "data.vmdk")
	if err := Convert(t.Context(), raw, FormatRaw, vmdk, FormatVMDK, nil); err != nil {
		t.Fatal(err)
	}
	box, r := container(t, dir, vmdk, 1536, 512)
	if err := CheckRegionSelfContained(t.Context(), r, FormatVMDK); err != nil {
		t.Fatalf("a streamOptimized VMDK in a region: %v", err)
	}
	info, err := RegionInfo(t.Context(), r, FormatVMDK)
	if err != nil || info.VirtualSize != 4*mib {
		t.Fatalf("info: %+v %v", info, err)
	}
	var last float64
	out := filepath.Join(dir, "out.qcow2")
	if err := ConvertRegion(t.Context(), r, FormatVMDK, out, FormatQCOW2, func(p float64) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last != 100 {
		t.Fatalf("last progress %v", last)
	}
	qemuImgCmd(t, "compare", "-f", "raw", "-F", "qcow2", raw, out)
	if _, err := os.Stat(box); err != nil {
		t.Fatal(err)
	}
}

func TestRegionChecks(t *testing.T) {
	dir := t.TempDir()
	backed := filepath.Join(dir, "backed.qcow2")
	base := filepath.Join(dir, "base.raw")
	writeData(t, base, mib)
	qemuImgCmd(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", backed)
	_, r := container(t, dir, backed, 512, 0)
	if err := CheckRegionSelfContained(t.Context(), r, FormatQCOW2); !errors.Is(err, ErrExternalReference) {
		t.Fatalf("a qcow2 with a backing file in a region: %v", err)
	}
	forged := filepath.Join(dir, "forged.vmdk")
	forgeDescriptorSparse(t, forged, base)
	_, r = container(t, dir, forged, 1024, 0)
	if err := CheckRegionSelfContained(t.Context(), r, FormatVMDK); !errors.Is(err, ErrExternalReference) {
		t.Fatalf("a VMDK deferring to an extent in a region: %v", err)
	}
	// A region must start on a sector and lie inside its file, padding
	// included.
	raw := filepath.Join(dir, "odd.raw")
	os.WriteFile(raw, make([]byte, 1000), 0o644)
	for _, bad := range []Region{{Path: raw, Offset: 100, Size: 512}, {Path: raw, Offset: 0, Size: 1000}, {Path: raw, Offset: 0, Size: 0}} {
		if err := ConvertRegion(t.Context(), bad, FormatRaw, filepath.Join(dir, "x.qcow2"), FormatQCOW2, nil); err == nil {
			t.Fatalf("region %+v was accepted", bad)
		}
	}
	if err := ConvertRegion(t.Context(), Region{Path: raw, Size: 512}, "", filepath.Join(dir, "x.qcow2"), FormatQCOW2, nil); err == nil {
		t.Fatal("a region without a format was converted")
	}
}
