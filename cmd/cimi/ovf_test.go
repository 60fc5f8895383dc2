package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cimid/ovf"
)

// writeTestOVA exports a one-machine package to dir and returns its path
// and its files.
func writeTestOVA(t *testing.T, dir string) (string, []byte, []byte) {
	t.Helper()
	disk := bytes.Repeat([]byte("disk"), 256)
	desc, err := ovf.Encode(ovf.Spec{Systems: []ovf.SystemSpec{{
		Name: "web", CPUs: 2, MemoryBytes: 1 << 30, OSType: "Debian 64-Bit",
		Disks: []ovf.DiskSpec{{Href: "web-1.vmdk", Size: int64(len(disk)), Capacity: 8 << 30}},
		NICs:  []ovf.NICSpec{{Network: "default", Model: "virtio"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = ovf.OVA{DescriptorName: "web.ovf", Descriptor: desc, Files: []ovf.OVAFile{{
		Name: "web-1.vmdk", Size: int64(len(disk)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(disk)), nil },
	}}}.Write(context.Background(), &b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "web.ova")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, desc, disk
}

func TestOVFInspectOVA(t *testing.T) {
	path, _, _ := writeTestOVA(t, t.TempDir())
	r := runArgs(t, "ovf", "inspect", path)
	wantCode(t, r, 0)
	var s struct {
		OVFVersion     string `json:"ovfVersion"`
		VirtualSystems []struct {
			ID, Name, OSType string
			CPUs             int   `json:"cpus"`
			MemoryKiB        int64 `json:"memoryKiB"`
			Disks            []struct {
				DiskID, File, Format, Controller string
				CapacityBytes                    int64 `json:"capacityBytes"`
			} `json:"disks"`
			NICs []struct{ Network, Model string } `json:"nics"`
		} `json:"virtualSystems"`
		Networks []string `json:"networks"`
		Files    []struct {
			Href        string `json:"href"`
			Size        int64  `json:"size"`
			Compression string `json:"compression"`
		} `json:"files"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("stdout is not one JSON document: %v", err)
	}
	if s.OVFVersion != "1.0" || len(s.VirtualSystems) != 1 || len(s.Files) != 1 || s.Files[0].Size != 1024 || len(s.Warnings) != 0 {
		t.Fatalf("summary %+v", s)
	}
	v := s.VirtualSystems[0]
	if v.Name != "web" || v.CPUs != 2 || v.MemoryKiB != 1<<20 || v.OSType != "Debian 64-Bit" ||
		len(v.Disks) != 1 || v.Disks[0].CapacityBytes != 8<<30 || v.Disks[0].File != "web-1.vmdk" || v.Disks[0].Format != "vmdk/streamOptimized" || v.Disks[0].Controller != "scsi" ||
		len(v.NICs) != 1 || v.NICs[0].Network != "default" || v.NICs[0].Model != "virtio" {
		t.Errorf("virtual system %+v", v)
	}
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestOVFInspectDirectory(t *testing.T) {
	dir := t.TempDir()
	_, desc, disk := writeTestOVA(t, dir)
	os.WriteFile(filepath.Join(dir, "web.ovf"), desc, 0o644)
	os.WriteFile(filepath.Join(dir, "web-1.vmdk"), disk, 0o644)
	r := runArgs(t, "ovf", "inspect", filepath.Join(dir, "web.ovf"))
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"ovfVersion": "1.0"`) || !strings.Contains(r.stdout, "no manifest") {
		t.Errorf("stdout %s", r.stdout)
	}
	// A disk replaced by a link to a host file is refused.
	os.Remove(filepath.Join(dir, "web-1.vmdk"))
	os.Symlink("/etc/hostname", filepath.Join(dir, "web-1.vmdk"))
	r = runArgs(t, "ovf", "inspect", filepath.Join(dir, "web.ovf"))
	wantOneLineFailure(t, r, "symbolic link")
}

func wantOneLineFailure(t *testing.T, r result, fragment string) {
	t.Helper()
	wantCode(t, r, exitFailure)
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, fragment) {
		t.Errorf("stderr %q: want one line mentioning %q", r.stderr, fragment)
	}
}

func TestOVFInspectRefusesBadPackages(t *testing.T) {
	dir := t.TempDir()
	path, _, _ := writeTestOVA(t, dir)
	data, _ := os.ReadFile(path)
	tampered := bytes.Replace(data, []byte("diskdisk"), []byte("DISKdisk"), 1)
	bad := filepath.Join(dir, "tampered.ova")
	os.WriteFile(bad, tampered, 0o644)
	wantOneLineFailure(t, runArgs(t, "ovf", "inspect", bad), "does not match the manifest")

	xee := filepath.Join("..", "..", "ovf", "testdata", "corpus", "pve__XEE.ovf")
	wantOneLineFailure(t, runArgs(t, "ovf", "inspect", xee), "DOCTYPE")

	traversal := filepath.Join(dir, "up.ovf")
	d, _ := os.ReadFile(filepath.Join("..", "..", "ovf", "testdata", "corpus", "govmomi__child_uitem_req_true.ovf"))
	os.WriteFile(traversal, bytes.Replace(d, []byte(`<rasd:Unknown ovf:required="true"></rasd:Unknown>`), nil, 1), 0o644)
	wantOneLineFailure(t, runArgs(t, "ovf", "inspect", traversal), "leaves the package")

	wantOneLineFailure(t, runArgs(t, "ovf", "inspect", filepath.Join(dir, "missing.ova")), "no such file")
	r := runArgs(t, "ovf", "inspect")
	wantCode(t, r, exitUsage)
}
