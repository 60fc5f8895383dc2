package ovf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	govmomi "github.com/vmware/govmomi/ovf"
)

var errorsIs = errors.Is

func exportSpec() Spec {
	return Spec{
		ID: "app", Name: "app", Description: "web & db <tier>",
		Systems: []SystemSpec{
			{Name: "web", Description: "front end", CPUs: 2, MemoryBytes: 2 << 30, OSType: "Debian 64-Bit", Firmware: "efi",
				Disks: []DiskSpec{{Href: "web-1.vmdk", Size: 5, Capacity: 10 << 30}, {Href: "web-2.vmdk", Size: 6, Capacity: 123456789, Controller: "sata"}},
				NICs:  []NICSpec{{Network: "default", Model: "VmxNet3", MAC: "52:54:00:12:34:56"}, {Network: "backend"}}},
			{Name: "db", CPUs: 4, MemoryBytes: 3<<30 + 512<<10, OSType: "debian12",
				Disks: []DiskSpec{{Href: "db-1.vmdk", Size: 7, Capacity: 20 << 30, Controller: "ide"}},
				NICs:  []NICSpec{{Network: "backend", Model: "E1000e"}}},
		},
	}
}

// TestRoundTrip encodes a spec, parses the result and compares the model
// with the spec, system by system.
func TestRoundTrip(t *testing.T) {
	for _, spec := range []Spec{exportSpec(), {Name: "solo", Description: "one machine", Systems: exportSpec().Systems[:1]}, {Name: "solo", Description: "one machine", Systems: []SystemSpec{{CPUs: 1, MemoryBytes: 1 << 30}}}} {
		d, err := Encode(spec)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Parse(d, Options{Strict: true})
		if err != nil {
			t.Fatalf("Parse(Encode()): %v\n%s", err, d)
		}
		if len(e.Warnings) != 0 {
			t.Errorf("warnings on our own descriptor: %q", e.Warnings)
		}
		if e.Version != "1.0" {
			t.Errorf("version %q", e.Version)
		}
		got := e.VirtualSystems()
		if len(got) != len(spec.Systems) {
			t.Fatalf("%d systems, want %d", len(got), len(spec.Systems))
		}
		if len(spec.Systems) == 1 {
			if got[0].Name != firstNonEmpty(spec.Systems[0].Name, spec.Name) || got[0].Annotation != firstNonEmpty(spec.Systems[0].Description, spec.Description) {
				t.Errorf("single system: name %q annotation %q", got[0].Name, got[0].Annotation)
			}
		} else if vc := e.Content.(*VirtualSystemCollection); vc.Name != spec.Name || vc.Annotation != spec.Description {
			t.Errorf("collection name %q annotation %q", vc.Name, vc.Annotation)
		}
		for i, want := range spec.Systems {
			v, m := got[i], got[i].Machine
			if want.Name != "" && v.Name != want.Name {
				t.Errorf("name %q, want %q", v.Name, want.Name)
			}
			if want.Description != "" && v.Annotation != want.Description {
				t.Errorf("annotation %q, want %q", v.Annotation, want.Description)
			}
			if m.CPUs != want.CPUs || m.MemoryBytes != want.MemoryBytes {
				t.Errorf("%s: %d CPUs %d bytes, want %d, %d", v.ID, m.CPUs, m.MemoryBytes, want.CPUs, want.MemoryBytes)
			}
			if v.OS.Type() != firstNonEmpty(want.OSType, "Other") {
				t.Errorf("%s: OS %q, want %q", v.ID, v.OS.Type(), want.OSType)
			}
			if want.Firmware != "" && m.Firmware != want.Firmware {
				t.Errorf("%s: firmware %q", v.ID, m.Firmware)
			}
			if len(m.Disks) != len(want.Disks) {
				t.Fatalf("%s: %d disks", v.ID, len(m.Disks))
			}
			for j, wd := range want.Disks {
				gd := m.Disks[j]
				f, _ := e.File(gd.FileID)
				if gd.Href != wd.Href || gd.CapacityBytes != wd.Capacity || f.Size != wd.Size || gd.Format != "vmdk/streamOptimized" || gd.Bus != firstNonEmpty(wd.Controller, "scsi") {
					t.Errorf("%s disk %d: %+v (size %d), want %+v", v.ID, j, gd, f.Size, wd)
				}
			}
			if len(m.NICs) != len(want.NICs) {
				t.Fatalf("%s: %d NICs", v.ID, len(m.NICs))
			}
			for j, wn := range want.NICs {
				gn := m.NICs[j]
				if gn.Network != wn.Network || gn.Model != firstNonEmpty(wn.Model, "E1000") || gn.MAC != wn.MAC {
					t.Errorf("%s NIC %d: %+v, want %+v", v.ID, j, gn, wn)
				}
			}
		}
	}
}

// TestRoundTripOVA writes an OVA and reads it back, verifying every digest.
func TestRoundTripOVA(t *testing.T) {
	spec := exportSpec()
	d, err := Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{"web-1.vmdk": "web-1", "web-2.vmdk": "web-2b", "db-1.vmdk": "db-one!"}
	var files []OVAFile
	for _, s := range spec.Systems {
		for _, disk := range s.Disks {
			c := contents[disk.Href]
			files = append(files, OVAFile{Name: disk.Href, Size: int64(len(c)), Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(c)), nil }})
		}
	}
	var out bytes.Buffer
	if err := (OVA{DescriptorName: "app.ovf", Descriptor: d, Files: files}).Write(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	p, err := OpenOVA(bytes.NewReader(out.Bytes()), int64(out.Len()), Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %q", p.Warnings)
	}
	if s := p.Summary(); s.Manifest != "SHA256" || len(s.VirtualSystems) != 2 || len(s.Networks) != 2 {
		t.Errorf("summary %+v", s)
	}
	for _, f := range p.Envelope.Files {
		secs, err := p.Sections(f)
		if err != nil {
			t.Fatal(err)
		}
		got := out.Bytes()[secs[0].Offset : secs[0].Offset+secs[0].Size]
		if string(got) != contents[f.Href] {
			t.Errorf("%s at offset %d: %q", f.Href, secs[0].Offset, got)
		}
	}
	// Cancelling stops the write.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (OVA{DescriptorName: "app.ovf", Descriptor: d, Files: files}).Write(ctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
}

// TestGovmomiAcceptsExport parses our descriptor with VMware's Go OVF
// package, an independent reader, and checks what it sees.
func TestGovmomiAcceptsExport(t *testing.T) {
	for _, spec := range []Spec{{Name: "solo", Systems: exportSpec().Systems[:1]}, exportSpec()} {
		d, err := Encode(spec)
		if err != nil {
			t.Fatal(err)
		}
		env, err := govmomi.Unmarshal(bytes.NewReader(d))
		if err != nil {
			t.Fatalf("govmomi rejects the descriptor: %v", err)
		}
		if len(env.References) != 3 && len(spec.Systems) == 2 || len(spec.Systems) == 1 && len(env.References) != 2 {
			t.Errorf("govmomi sees %d files", len(env.References))
		}
		if env.Disk == nil || env.Network == nil {
			t.Fatalf("govmomi sees no DiskSection or NetworkSection")
		}
		for _, disk := range env.Disk.Disks {
			if disk.FileRef == nil || disk.Format == nil || *disk.Format != FormatStreamOptimized {
				t.Errorf("govmomi disk %+v", disk)
			}
		}
		if len(spec.Systems) != 1 {
			continue
		}
		vs := env.VirtualSystem
		if vs == nil || vs.Name == nil || *vs.Name != "web" || len(vs.VirtualHardware) != 1 {
			t.Fatalf("govmomi virtual system %+v", vs)
		}
		if len(vs.OperatingSystem) != 1 || vs.OperatingSystem[0].ID != 96 {
			t.Errorf("govmomi OS %+v", vs.OperatingSystem)
		}
		counts := map[uint16]int{}
		for _, it := range vs.VirtualHardware[0].Item {
			if it.ResourceType != nil {
				counts[uint16(*it.ResourceType)]++
			}
			if *it.ResourceType == 3 && (it.VirtualQuantity == nil || *it.VirtualQuantity != 2) {
				t.Errorf("govmomi CPU item %+v", it)
			}
		}
		if counts[3] != 1 || counts[4] != 1 || counts[17] != 2 || counts[10] != 2 || counts[6] != 1 || counts[20] != 1 {
			t.Errorf("govmomi item types %v", counts)
		}
	}
}
