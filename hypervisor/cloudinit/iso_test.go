package cloudinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// isoVolume is what readISO finds on a volume.
type isoVolume struct {
	label       string            // primary volume identifier, trimmed
	jolietLabel string            // Joliet volume identifier, trimmed
	primary     map[string][]byte // level 1 identifier (without ";1") -> content
	joliet      map[string][]byte // Joliet name (without ";1") -> content
	sectors     uint32
}

// readISO parses a volume independently of the writer: the descriptors,
// both root directories and the file extents they point at.
func readISO(t *testing.T, img []byte) isoVolume {
	t.Helper()
	if len(img)%sectorSize != 0 {
		t.Fatalf("image size %d is not a multiple of %d", len(img), sectorSize)
	}
	sector := func(n uint32) []byte {
		if int(n+1)*sectorSize > len(img) {
			t.Fatalf("sector %d is beyond the image (%d sectors)", n, len(img)/sectorSize)
		}
		return img[int(n)*sectorSize : int(n+1)*sectorSize]
	}
	var v isoVolume
	var primaryRoot, jolietRoot []byte
	for n := uint32(16); ; n++ {
		d := sector(n)
		if string(d[1:6]) != "CD001" || d[6] != 1 {
			t.Fatalf("sector %d is not a volume descriptor: % x", n, d[:7])
		}
		switch d[0] {
		case 1:
			v.label = strings.TrimRight(string(d[40:72]), " ")
			v.sectors = binary.LittleEndian.Uint32(d[80:])
			if binary.BigEndian.Uint32(d[84:]) != v.sectors {
				t.Fatal("volume space size: little and big endian differ")
			}
			if binary.LittleEndian.Uint16(d[128:]) != sectorSize {
				t.Fatalf("logical block size %d", binary.LittleEndian.Uint16(d[128:]))
			}
			primaryRoot = d[156:190]
		case 2:
			if string(d[88:91]) != "%/E" {
				t.Fatalf("supplementary descriptor escape %q is not Joliet level 3", d[88:91])
			}
			v.jolietLabel = strings.TrimRight(fromUCS2(d[40:72]), " ")
			jolietRoot = d[156:190]
		case 255:
			if primaryRoot == nil {
				t.Fatal("no primary volume descriptor")
			}
			if int(v.sectors)*sectorSize != len(img) {
				t.Fatalf("volume space size %d sectors, image has %d", v.sectors, len(img)/sectorSize)
			}
			v.primary = readDir(t, img, primaryRoot, false)
			if jolietRoot != nil {
				v.joliet = readDir(t, img, jolietRoot, true)
			}
			return v
		default:
			t.Fatalf("unexpected volume descriptor type %d", d[0])
		}
	}
}

func readDir(t *testing.T, img, rootRecord []byte, joliet bool) map[string][]byte {
	t.Helper()
	extent := binary.LittleEndian.Uint32(rootRecord[2:])
	size := binary.LittleEndian.Uint32(rootRecord[10:])
	if rootRecord[25]&2 == 0 {
		t.Fatal("root record is not a directory")
	}
	dir := img[int(extent)*sectorSize : int(extent)*sectorSize+int(size)]
	out := map[string][]byte{}
	for off := 0; off < len(dir); {
		n := int(dir[off])
		if n == 0 {
			off = (off/sectorSize + 1) * sectorSize
			continue
		}
		r := dir[off : off+n]
		if n%2 != 0 {
			t.Fatalf("directory record of odd length %d", n)
		}
		if binary.LittleEndian.Uint32(r[2:]) != binary.BigEndian.Uint32(r[6:]) || binary.LittleEndian.Uint32(r[10:]) != binary.BigEndian.Uint32(r[14:]) {
			t.Fatal("directory record: little and big endian fields differ")
		}
		id := r[33 : 33+int(r[32])]
		off += n
		if len(id) == 1 && id[0] <= 1 {
			continue // "." and ".."
		}
		name := string(id)
		if joliet {
			name = fromUCS2(id)
		}
		name = strings.TrimSuffix(name, ";1")
		start := int(binary.LittleEndian.Uint32(r[2:])) * sectorSize
		out[name] = img[start : start+int(binary.LittleEndian.Uint32(r[10:]))]
	}
	return out
}

func fromUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func TestWriteISOReadsBack(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300) // spans three sectors
	files := []File{
		{Name: "meta-data", Data: []byte("instance-id: \"x\"\n")},
		{Name: "user-data", Data: big},
		{Name: "network-config", Data: []byte("version: 2\n")},
		{Name: "empty", Data: nil},
	}
	var buf bytes.Buffer
	if err := WriteISO(&buf, "cidata", files, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	v := readISO(t, buf.Bytes())
	if v.label != "cidata" || v.jolietLabel != "cidata" {
		t.Errorf("labels %q / %q, want cidata", v.label, v.jolietLabel)
	}
	for _, f := range files {
		got, ok := v.joliet[f.Name]
		if !ok {
			t.Errorf("Joliet tree has no %q: %v", f.Name, keys(v.joliet))
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s: read back %d bytes that differ from the %d written", f.Name, len(got), len(f.Data))
		}
	}
	wantPrimary := map[string]string{"META_DAT.": "meta-data", "USER_DAT.": "user-data", "NETWORK_.": "network-config", "EMPTY.": "empty"}
	for id, name := range wantPrimary {
		if got := v.primary[id]; !bytes.Equal(got, v.joliet[name]) {
			t.Errorf("primary %s does not hold the content of %s (primary names: %v)", id, name, keys(v.primary))
		}
	}
	// The volume ends in padSectors of zeros, counted in its size.
	// Data: one sector each for meta-data and network-config, three for
	// user-data, none for empty.
	if n, want := len(buf.Bytes())/sectorSize, firstDataSector+5+padSectors; v.sectors != uint32(n) || n != want {
		t.Errorf("%d sectors, the volume says %d; want %d", n, v.sectors, want)
	}
	if tail := buf.Bytes()[len(buf.Bytes())-padSectors*sectorSize:]; !bytes.Equal(tail, make([]byte, len(tail))) {
		t.Error("the padding is not zeros")
	}
	// Same input, same bytes.
	var again bytes.Buffer
	if err := WriteISO(&again, "cidata", files, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of the same volume differ")
	}
}

func TestWriteISOLevel1NamesStayUnique(t *testing.T) {
	var buf bytes.Buffer
	err := WriteISO(&buf, "cidata", []File{{Name: "network-a", Data: []byte("a")}, {Name: "network-b", Data: []byte("b")}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	v := readISO(t, buf.Bytes())
	if len(v.primary) != 2 {
		t.Fatalf("primary tree: %v", keys(v.primary))
	}
	if string(v.joliet["network-a"]) != "a" || string(v.joliet["network-b"]) != "b" {
		t.Fatalf("joliet tree: %v", keys(v.joliet))
	}
}

func TestWriteISORefusesBadInput(t *testing.T) {
	cases := map[string][]File{
		"slash":     {{Name: "a/b"}},
		"duplicate": {{Name: "x"}, {Name: "x"}},
		"empty":     {{Name: ""}},
		"long":      {{Name: strings.Repeat("n", 65)}},
	}
	for name, files := range cases {
		if err := WriteISO(&bytes.Buffer{}, "cidata", files, time.Time{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := WriteISO(&bytes.Buffer{}, strings.Repeat("l", 33), nil, time.Time{}); err == nil {
		t.Error("a 33-character label was accepted")
	}
	many := make([]File, 60)
	for i := range many {
		many[i] = File{Name: fmt.Sprintf("file-with-a-long-name-%02d", i)}
	}
	if err := WriteISO(&bytes.Buffer{}, "cidata", many, time.Time{}); err == nil {
		t.Error("a root directory larger than one sector was accepted")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
