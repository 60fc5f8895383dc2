package ovf

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseDescriptor(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.ovf"))
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(stdDoc()))
	f.Add([]byte(ovirtDoc))
	f.Add([]byte(strings.Repeat("<a>", 70)))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data, Options{Limits: Limits{MaxElements: 20_000}})
		if err != nil {
			if !strings.Contains(err.Error(), "\n") && errorClass(err) == nil {
				t.Fatalf("error without class: %v", err)
			}
			return
		}
		if _, err := Summarize(e).Marshal(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.RequiredBytes(); err != nil && errorClass(err) == nil {
			t.Fatal(err)
		}
	})
}

func FuzzReadOVA(f *testing.F) {
	files := stdPackage()
	f.Add(tarOf(f, files, "vm.ovf", "vm.mf", "disk1.vmdk"))
	f.Add(tarOf(f, files, "vm.ovf", "disk1.vmdk", "vm.mf"))
	f.Add(tarOf(f, files, "vm.ovf", "disk1.vmdk"))
	ova := tarOf(f, files, "vm.ovf", "vm.mf", "disk1.vmdk")
	f.Add(ova[:len(ova)-1500])
	chunked := map[string][]byte{
		"vm.ovf":               []byte(strings.Replace(stdDoc(), `ovf:size="1024"`, `ovf:size="150" ovf:chunkSize="100"`, 1)),
		"disk1.vmdk.000000000": bytes.Repeat([]byte{1}, 100),
		"disk1.vmdk.000000001": bytes.Repeat([]byte{2}, 50),
	}
	f.Add(tarOf(f, chunked, "vm.ovf", "disk1.vmdk.000000000", "disk1.vmdk.000000001"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := OpenOVA(bytes.NewReader(data), int64(len(data)), Options{Limits: Limits{MaxElements: 20_000}})
		if err != nil {
			return
		}
		_ = p.Verify(context.Background())
		if _, err := p.Summary().Marshal(); err != nil {
			t.Fatal(err)
		}
		for _, file := range p.Envelope.Files {
			if secs, err := p.Sections(file); err == nil {
				for _, s := range secs {
					if s.Offset < 0 || s.Offset+s.Size > int64(len(data)) {
						t.Fatalf("section %+v outside the archive of %d bytes", s, len(data))
					}
				}
			}
		}
	})
}

func errorClass(err error) error {
	for _, c := range []error{ErrInvalid, ErrUnsafe, ErrUnsupported, ErrIntegrity} {
		if errorsIs(err, c) {
			return c
		}
	}
	return nil
}
