package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/hostcmd"
)

// These tests run the real qemu-img.

const mib = 1 << 20

// qemuImgCmd runs qemu-img directly, to make images this package does not
// create itself.
func qemuImgCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func createImage(t *testing.T, path, format string, size int64) {
	t.Helper()
	if err := Create(t.Context(), path, format, size); err != nil {
		t.Fatal(err)
	}
}

func createVMDK(t *testing.T, path, subformat string) {
	t.Helper()
	qemuImgCmd(t, "create", "-q", "-f", "vmdk", "-o", "subformat="+subformat, path, "16M")
}

// writeData fills a raw image of size bytes with a non-zero pattern, so that
// conversions have real data to copy.
func writeData(t *testing.T, path string, size int) {
	t.Helper()
	chunk := make([]byte, mib)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for written := 0; written < size; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDetectFormat(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"raw":             FormatRaw,
		"qcow2":           FormatQCOW2,
		"sparse.vmdk":     FormatVMDK,
		"stream.vmdk":     FormatVMDK,
		"descriptor.vmdk": FormatVMDK,
		"versioned.vmdk":  FormatVMDK,
		"empty":           FormatRaw,
		"short":           FormatRaw,
		"text":            FormatRaw,
	}
	createImage(t, filepath.Join(dir, "raw"), FormatRaw, mib)
	createImage(t, filepath.Join(dir, "qcow2"), FormatQCOW2, mib)
	createVMDK(t, filepath.Join(dir, "sparse.vmdk"), "monolithicSparse")
	createVMDK(t, filepath.Join(dir, "stream.vmdk"), "streamOptimized")
	writeFile(t, filepath.Join(dir, "descriptor.vmdk"), "# Disk DescriptorFile\nversion=1\n")
	writeFile(t, filepath.Join(dir, "versioned.vmdk"), "# comment\n\n  \nversion=2\nCID=fffffffe\n")
	writeFile(t, filepath.Join(dir, "empty"), "")
	writeFile(t, filepath.Join(dir, "short"), "QF")
	writeFile(t, filepath.Join(dir, "text"), "# notes\nname=value\nversion=1\n")

	for name, want := range files {
		got, err := DetectFormat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s detected as %s, want %s", name, got, want)
		}
	}
	if _, err := DetectFormat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInfo(t *testing.T) {
	dir := t.TempDir()
	raw, qcow2 := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	sparse, stream := filepath.Join(dir, "sparse.vmdk"), filepath.Join(dir, "stream.vmdk")
	createImage(t, raw, FormatRaw, 8*mib)
	createImage(t, qcow2, FormatQCOW2, 10*mib)
	createVMDK(t, sparse, "monolithicSparse")
	createVMDK(t, stream, "streamOptimized")

	cases := []struct {
		path, format string
		size         int64
	}{
		{raw, FormatRaw, 8 * mib},
		{qcow2, FormatQCOW2, 10 * mib},
		{sparse, FormatVMDK, 16 * mib},
		{stream, FormatVMDK, 16 * mib},
	}
	for _, c := range cases {
		info, err := Info(t.Context(), c.path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Format != c.format || info.VirtualSize != c.size || info.BackingFile != "" || info.DataFile != "" {
			t.Errorf("%s: %+v", c.path, info)
		}
		if c.format == FormatVMDK && (len(info.Extents) != 1 || info.Extents[0].Filename != c.path) {
			t.Errorf("%s: extents %+v, want the file itself", c.path, info.Extents)
		}
	}
}

func TestInfoReportsReferences(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	createImage(t, base, FormatRaw, 4*mib)
	overlay := filepath.Join(dir, "overlay.qcow2")
	qemuImgCmd(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay)
	dataFile := filepath.Join(dir, "external.qcow2")
	qemuImgCmd(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "data.raw"), dataFile, "4M")

	info, err := Info(t.Context(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFile != base || info.BackingFormat != FormatRaw {
		t.Errorf("overlay: %+v", info)
	}
	info, err = Info(t.Context(), dataFile)
	if err != nil {
		t.Fatal(err)
	}
	if info.DataFile != filepath.Join(dir, "data.raw") {
		t.Errorf("external data file: %+v", info)
	}
}

func TestCheckSelfContained(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }

	createImage(t, path("base.raw"), FormatRaw, 4*mib)
	createImage(t, path("plain.qcow2"), FormatQCOW2, 4*mib)
	createVMDK(t, path("sparse.vmdk"), "monolithicSparse")
	createVMDK(t, path("stream.vmdk"), "streamOptimized")
	qemuImgCmd(t, "create", "-q", "-f", "qcow2", "-b", path("base.raw"), "-F", "raw", path("overlay.qcow2"))
	qemuImgCmd(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+path("data.raw"), path("datafile.qcow2"), "4M")
	createVMDK(t, path("split.vmdk"), "twoGbMaxExtentSparse")
	createVMDK(t, path("flat.vmdk"), "monolithicFlat")
	forgeDescriptorSparse(t, path("forged.vmdk"), path("base.raw"))
	createVMDK(t, path("parent.vmdk"), "monolithicSparse")
	qemuImgCmd(t, "create", "-q", "-f", "vmdk", "-b", path("parent.vmdk"), "-F", "vmdk", path("child.vmdk"))

	for _, c := range []struct{ name, format string }{
		{"base.raw", FormatRaw},
		{"plain.qcow2", FormatQCOW2},
		{"sparse.vmdk", FormatVMDK},
		{"stream.vmdk", FormatVMDK},
		// A qcow2 read as raw is a guest's bytes, nothing more.
		{"overlay.qcow2", FormatRaw},
	} {
		if err := CheckSelfContained(t.Context(), path(c.name), c.format); err != nil {
			t.Errorf("%s (%s) refused: %v", c.name, c.format, err)
		}
	}

	for _, c := range []struct{ name, format, mentions string }{
		{"overlay.qcow2", FormatQCOW2, "backing file"},
		{"datafile.qcow2", FormatQCOW2, "data file"},
		{"split.vmdk", FormatVMDK, "descriptor"},
		{"flat.vmdk", FormatVMDK, "descriptor"},
		{"forged.vmdk", FormatVMDK, "descriptor"},
		{"child.vmdk", FormatVMDK, "backing file"},
	} {
		err := CheckSelfContained(t.Context(), path(c.name), c.format)
		if !errors.Is(err, ErrExternalReference) {
			t.Errorf("%s (%s): got %v, want ErrExternalReference", c.name, c.format, err)
			continue
		}
		if !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.mentions)
		}
	}

	if err := CheckSelfContained(t.Context(), path("plain.qcow2"), "vhdx"); err == nil || errors.Is(err, ErrExternalReference) {
		t.Errorf("unsupported format: %v", err)
	}
}

func TestInfoReferences(t *testing.T) {
	self := "/images/disk.vmdk"
	ok := ImageInfo{Format: FormatVMDK, Extents: []Extent{{Filename: self}}}
	if err := infoReferences(self, ok); err != nil {
		t.Fatalf("single-file VMDK refused: %v", err)
	}
	bad := ImageInfo{
		Format:      FormatVMDK,
		BackingFile: "/images/parent.vmdk",
		Extents:     []Extent{{Filename: self}, {Filename: "/etc/shadow", Format: "FLAT"}},
	}
	err := infoReferences(self, bad)
	if !errors.Is(err, ErrExternalReference) || !strings.Contains(err.Error(), "/etc/shadow") ||
		!strings.Contains(err.Error(), "parent.vmdk") {
		t.Fatalf("references not all reported: %v", err)
	}
}

// forgeDescriptorSparse writes a sparse VMDK whose header has no capacity and
// points at an embedded descriptor that names target as its extent: qemu
// reads such a file as a descriptor and would serve target's content.
func forgeDescriptorSparse(t *testing.T, path, target string) {
	t.Helper()
	createVMDK(t, path, "monolithicSparse")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const descSector = 1
	desc := fmt.Sprintf("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8192 FLAT \"%s\" 0\n", target)
	if _, err := f.WriteAt(append([]byte(desc), 0), descSector*512); err != nil {
		t.Fatal(err)
	}
	header := make([]byte, 24)
	// capacity (offset 12) = 0, grain size (20) kept, descriptor offset (28) below.
	if _, err := f.WriteAt(header[:8], 12); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{descSector, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 28); err != nil {
		t.Fatal(err)
	}
}

func TestForgedVMDKReallyReferencesTarget(t *testing.T) {
	// Guards the forged image above: qemu-img must indeed see the other file,
	// or the refusal test would prove nothing.
	dir := t.TempDir()
	target, forged := filepath.Join(dir, "secret.raw"), filepath.Join(dir, "forged.vmdk")
	createImage(t, target, FormatRaw, 4*mib)
	forgeDescriptorSparse(t, forged, target)
	info, err := info(t.Context(), forged, FormatVMDK)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Extents) != 1 || info.Extents[0].Filename != target {
		t.Fatalf("forged VMDK extents %+v, want %s", info.Extents, target)
	}
}

func TestCreateOverlay(t *testing.T) {
	dir := t.TempDir()
	base, overlay := filepath.Join(dir, "base.qcow2"), filepath.Join(dir, "overlay.qcow2")
	createImage(t, base, FormatQCOW2, 6*mib)

	if err := CreateOverlay(t.Context(), overlay, base, FormatQCOW2, 0); err != nil {
		t.Fatal(err)
	}
	info, err := Info(t.Context(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	if info.BackingFile != base || info.BackingFormat != FormatQCOW2 || info.VirtualSize != 6*mib {
		t.Fatalf("overlay: %+v", info)
	}

	bigger := filepath.Join(dir, "bigger.qcow2")
	if err := CreateOverlay(t.Context(), bigger, base, FormatQCOW2, 12*mib); err != nil {
		t.Fatal(err)
	}
	if info, err := Info(t.Context(), bigger); err != nil || info.VirtualSize != 12*mib {
		t.Fatalf("overlay with size: %+v, %v", info, err)
	}

	if err := CreateOverlay(t.Context(), filepath.Join(dir, "rel.qcow2"), "base.qcow2", FormatQCOW2, 0); err == nil {
		t.Error("accepted a relative backing path")
	}
	if err := CreateOverlay(t.Context(), filepath.Join(dir, "noformat.qcow2"), base, "", 0); err == nil {
		t.Error("accepted an overlay without backing format")
	}
}

func TestResizeAndCheck(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	createImage(t, disk, FormatQCOW2, 4*mib)
	if err := Resize(t.Context(), disk, FormatQCOW2, 8*mib); err != nil {
		t.Fatal(err)
	}
	if info, err := Info(t.Context(), disk); err != nil || info.VirtualSize != 8*mib {
		t.Fatalf("after resize: %+v, %v", info, err)
	}
	if err := Check(t.Context(), disk, FormatQCOW2); err != nil {
		t.Fatal(err)
	}

	raw := filepath.Join(dir, "disk.raw")
	createImage(t, raw, FormatRaw, 4*mib)
	if err := Check(t.Context(), raw, FormatRaw); err != nil {
		t.Fatalf("raw has nothing to check: %v", err)
	}

	corrupt := filepath.Join(dir, "corrupt.qcow2")
	createImage(t, corrupt, FormatQCOW2, 4*mib)
	corruptRefcountTable(t, corrupt)
	if err := Check(t.Context(), corrupt, FormatQCOW2); err == nil {
		t.Fatal("Check passed a corrupt image")
	}
}

// corruptRefcountTable points the refcount table of a fresh qcow2 past the
// end of the file.
func corruptRefcountTable(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0, 0, 0, 1, 0, 0, 0, 0}, 48); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsCarryStderr(t *testing.T) {
	dir := t.TempDir()
	err := Resize(t.Context(), filepath.Join(dir, "missing.qcow2"), FormatQCOW2, mib)
	if err == nil || !strings.Contains(err.Error(), "Could not open") {
		t.Fatalf("error without qemu-img's message: %v", err)
	}
	disk := filepath.Join(dir, "disk.raw")
	createImage(t, disk, FormatRaw, 4*mib)
	err = Resize(t.Context(), disk, FormatRaw, mib)
	if err == nil || !strings.Contains(err.Error(), "shrink") {
		t.Fatalf("shrinking: %v", err)
	}
}

func TestConvertReportsProgress(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "dst.qcow2")
	writeData(t, src, 64*mib)

	var seen []float64
	err := Convert(t.Context(), src, FormatRaw, dst, FormatQCOW2, func(pct float64) { seen = append(seen, pct) })
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 || seen[len(seen)-1] != 100 {
		t.Fatalf("progress %v: want several updates ending at 100", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("progress went back: %v", seen)
		}
	}
	info, err := Info(t.Context(), dst)
	if err != nil || info.Format != FormatQCOW2 || info.VirtualSize != 64*mib {
		t.Fatalf("converted image: %+v, %v", info, err)
	}
}

func TestConvertToStreamOptimizedVMDK(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.qcow2"), filepath.Join(dir, "disk.vmdk")
	createImage(t, src, FormatQCOW2, 8*mib)
	if err := Convert(t.Context(), src, FormatQCOW2, dst, FormatVMDK, nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckSelfContained(t.Context(), dst, FormatVMDK); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "-f", "vmdk", dst).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "streamOptimized") {
		t.Fatalf("not streamOptimized: %v\n%s", err, out)
	}
}

func TestConvertCancelKillsQemuImg(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "dst.vmdk")
	// Compressing into a streamOptimized VMDK takes seconds for this much data.
	writeData(t, src, 256*mib)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	start := time.Now()
	err := Convert(ctx, src, FormatRaw, dst, FormatVMDK, func(pct float64) {
		if pct > 0 {
			cancel()
		}
	})
	elapsed := time.Since(start)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Convert after cancel: %v", err)
	}
	if elapsed > 10*time.Second {
		t.Fatalf("Convert returned %s after cancel", elapsed)
	}
	if pids := qemuImgChildren(t); len(pids) > 0 {
		t.Fatalf("qemu-img still running: %v", pids)
	}
	t.Logf("canceled after %s", elapsed.Round(time.Millisecond))
}

// qemuImgChildren lists the qemu-img processes this test process started
// that still exist, zombies included.
func qemuImgChildren(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	self := fmt.Sprint(os.Getpid())
	var pids []string
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(data)
		end := strings.LastIndexByte(s, ')')
		if end < 0 || !strings.Contains(s[:end], "(qemu-img") {
			continue
		}
		fields := strings.Fields(s[end+1:]) // state, ppid, ...
		if len(fields) > 1 && fields[1] == self {
			pids = append(pids, filepath.Base(filepath.Dir(path)))
		}
	}
	return pids
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Create(ctx, filepath.Join(t.TempDir(), "x.qcow2"), FormatQCOW2, mib)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a canceled context: %v", err)
	}
}

func TestParseProgress(t *testing.T) {
	var got []float64
	readProgress(strings.NewReader("    (0.00/100%)\r    (1.01/100%)\r    (1.01/100%)\r    (55.50/100%)\r\n    (100.00/100%)\r\n"),
		func(p float64) { got = append(got, p) })
	want := []float64{0, 1.01, 55.5, 100}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("progress %v, want %v", got, want)
	}
}

// qemu-img dies with the agent: every command is tied to its life.
func TestCommandsAreTied(t *testing.T) {
	if !hostcmd.Tied(command(context.Background(), "info")) {
		t.Fatal("qemu-img is not tied to the agent's life")
	}
}
