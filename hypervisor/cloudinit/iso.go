package cloudinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// sectorSize is the logical block size of every volume written here.
const sectorSize = 2048

// File is one file in the root directory of an ISO 9660 volume.
type File struct {
	Name string // exact name, e.g. "meta-data"; at most 64 characters, no '/'
	Data []byte
}

// Layout of the volumes written by WriteISO, in sectors:
//
//	0-15   system area (zeros)
//	16     primary volume descriptor
//	17     Joliet supplementary volume descriptor
//	18     volume descriptor set terminator
//	19-22  path tables: primary L and M, Joliet L and M
//	23     primary root directory
//	24     Joliet root directory
//	25-    file contents, each starting on a sector boundary
//	then   padSectors of zeros, part of the volume
//
// Both directory trees point at the same file extents. The primary tree
// carries ISO 9660 level 1 names (8.3, upper case); the Joliet tree the
// exact names, which is what Linux, the BSDs and Windows show.
const (
	sectorPVD       = 16
	sectorSVD       = 17
	sectorTerm      = 18
	sectorPathL     = 19
	sectorPathM     = 20
	sectorJolietL   = 21
	sectorJolietM   = 22
	sectorRoot      = 23
	sectorJolietDir = 24
	firstDataSector = 25
)

// padSectors of zeros end every volume (300 KiB), as mkisofs and
// genisoimage pad theirs: read-ahead near the end of a CD-ROM then stays
// within the volume, and probes that read the first 68 KiB of a device
// (busybox's findfs and blkid among them) find a volume that large.
const padSectors = 150

// maxJolietName is the longest name Joliet allows, in UCS-2 characters.
const maxJolietName = 64

// WriteISO writes an ISO 9660 volume labelled label holding files in its
// root directory, with Joliet names. The output depends only on its
// arguments and on modified, which is recorded as every file's date.
func WriteISO(w io.Writer, label string, files []File, modified time.Time) error {
	if label == "" || len(label) > 32 {
		return fmt.Errorf("iso9660: volume label %q must have 1 to 32 characters", label)
	}
	entries, err := layout(files)
	if err != nil {
		return err
	}
	end := uint32(firstDataSector)
	for i := range entries {
		entries[i].extent = end
		end += sectors(len(entries[i].file.Data))
	}
	end += padSectors
	primaryDir, err := directory(entries, sectorRoot, false, modified)
	if err != nil {
		return err
	}
	jolietDir, err := directory(entries, sectorJolietDir, true, modified)
	if err != nil {
		return err
	}

	img := make([]byte, 0, int(end)*sectorSize)
	img = append(img, make([]byte, sectorPVD*sectorSize)...)
	img = append(img, volumeDescriptor(label, end, false, modified)...)
	img = append(img, volumeDescriptor(label, end, true, modified)...)
	img = append(img, terminator()...)
	img = appendPadded(img, pathTable(sectorRoot, binary.LittleEndian))
	img = appendPadded(img, pathTable(sectorRoot, binary.BigEndian))
	img = appendPadded(img, pathTable(sectorJolietDir, binary.LittleEndian))
	img = appendPadded(img, pathTable(sectorJolietDir, binary.BigEndian))
	img = appendPadded(img, primaryDir)
	img = appendPadded(img, jolietDir)
	for _, e := range entries {
		img = appendPadded(img, e.file.Data)
	}
	img = append(img, make([]byte, padSectors*sectorSize)...)
	if len(img) != int(end)*sectorSize {
		return fmt.Errorf("iso9660: internal layout error: %d bytes for %d sectors", len(img), end)
	}
	_, err = w.Write(img)
	return err
}

// entry is a file placed on the volume.
type entry struct {
	file    File
	primary string // level 1 identifier, e.g. "META_DAT.;1"
	joliet  string // exact name, e.g. "meta-data", as genisoimage writes it
	extent  uint32
}

// layout checks the files and gives each its two identifiers.
func layout(files []File) ([]entry, error) {
	seenJoliet := map[string]bool{}
	seenPrimary := map[string]int{}
	out := make([]entry, 0, len(files))
	for _, f := range files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/\\;*:?\"<>|\x00") {
			return nil, fmt.Errorf("iso9660: file name %q is not allowed", f.Name)
		}
		if n := len(utf16.Encode([]rune(f.Name))); n > maxJolietName {
			return nil, fmt.Errorf("iso9660: file name %q is longer than %d characters", f.Name, maxJolietName)
		}
		if seenJoliet[f.Name] {
			return nil, fmt.Errorf("iso9660: file %q given twice", f.Name)
		}
		seenJoliet[f.Name] = true
		base := level1Name(f.Name)
		seenPrimary[base]++
		if n := seenPrimary[base]; n > 1 {
			// Keep 8.3 names unique: replace the end of the base name by a number.
			b, ext, _ := strings.Cut(base, ".")
			suffix := fmt.Sprintf("%d", n)
			if len(b)+len(suffix) > 8 {
				b = b[:8-len(suffix)]
			}
			base = b + suffix + "." + ext
		}
		out = append(out, entry{file: f, primary: base + ";1", joliet: f.Name})
	}
	return out, nil
}

// level1Name maps a name to an ISO 9660 level 1 name "BASE.EXT": at most
// eight and three d-characters (A-Z, 0-9, _).
func level1Name(name string) string {
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	clean := func(s string, n int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == n {
				break
			}
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	return clean(base, 8) + "." + clean(ext, 3)
}

func sectors(n int) uint32 { return uint32((n + sectorSize - 1) / sectorSize) }

// appendPadded appends b to img followed by zeros up to a sector boundary.
func appendPadded(img, b []byte) []byte {
	img = append(img, b...)
	if r := len(b) % sectorSize; r != 0 {
		img = append(img, make([]byte, sectorSize-r)...)
	}
	return img
}

// directory builds the one-sector root directory extent of one tree.
func directory(entries []entry, self uint32, joliet bool, modified time.Time) ([]byte, error) {
	type rec struct {
		id   []byte
		sort string
		e    entry
	}
	recs := make([]rec, len(entries))
	for i, e := range entries {
		if joliet {
			recs[i] = rec{id: ucs2(e.joliet), sort: string(ucs2(e.joliet)), e: e}
		} else {
			recs[i] = rec{id: []byte(e.primary), sort: e.primary, e: e}
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].sort < recs[j].sort })
	var buf bytes.Buffer
	buf.Write(dirRecord([]byte{0}, self, sectorSize, true, modified))
	buf.Write(dirRecord([]byte{1}, self, sectorSize, true, modified))
	for _, r := range recs {
		buf.Write(dirRecord(r.id, r.e.extent, uint32(len(r.e.file.Data)), false, modified))
	}
	if buf.Len() > sectorSize {
		return nil, errors.New("iso9660: too many files for a one-sector root directory")
	}
	return buf.Bytes(), nil
}

// dirRecord encodes a directory record (ECMA-119 9.1).
func dirRecord(id []byte, extent, size uint32, dir bool, t time.Time) []byte {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++ // padding field: records have an even length
	}
	r := make([]byte, n)
	r[0] = byte(n)
	both32(r[2:], extent)
	both32(r[10:], size)
	copy(r[18:25], recordTime(t))
	if dir {
		r[25] = 0x02
	}
	both16(r[28:], 1)
	r[32] = byte(len(id))
	copy(r[33:], id)
	return r
}

// volumeDescriptor encodes the primary (joliet false) or the Joliet
// supplementary volume descriptor (ECMA-119 8.4 and 8.5).
func volumeDescriptor(label string, totalSectors uint32, joliet bool, t time.Time) []byte {
	d := make([]byte, sectorSize)
	text := func(off, n int, s string) {
		if joliet {
			b := ucs2(s)
			for i := 0; i < n; i += 2 {
				d[off+i], d[off+i+1] = 0x00, 0x20
			}
			copy(d[off:off+n], b)
			return
		}
		for i := 0; i < n; i++ {
			d[off+i] = ' '
		}
		copy(d[off:off+n], s)
	}
	d[0] = 1
	if joliet {
		d[0] = 2
	}
	copy(d[1:6], "CD001")
	d[6] = 1
	text(8, 32, "LINUX")
	text(40, 32, label)
	both32(d[80:], totalSectors)
	if joliet {
		copy(d[88:91], "%/E") // UCS-2 level 3
	}
	both16(d[120:], 1)
	both16(d[124:], 1)
	both16(d[128:], sectorSize)
	both32(d[132:], uint32(len(pathTable(0, binary.LittleEndian))))
	root, l, m := uint32(sectorRoot), uint32(sectorPathL), uint32(sectorPathM)
	if joliet {
		root, l, m = sectorJolietDir, sectorJolietL, sectorJolietM
	}
	binary.LittleEndian.PutUint32(d[140:], l)
	binary.BigEndian.PutUint32(d[148:], m)
	copy(d[156:190], dirRecord([]byte{0}, root, sectorSize, true, t))
	text(190, 128, "")
	text(318, 128, "")
	text(446, 128, "")
	text(574, 128, "CIMID")
	text(702, 37, "")
	text(739, 37, "")
	text(776, 37, "")
	copy(d[813:830], descriptorTime(t))
	copy(d[830:847], descriptorTime(t))
	copy(d[847:864], descriptorTime(time.Time{}))
	copy(d[864:881], descriptorTime(time.Time{}))
	d[881] = 1
	return d
}

func terminator() []byte {
	d := make([]byte, sectorSize)
	d[0] = 255
	copy(d[1:6], "CD001")
	d[6] = 1
	return d
}

// pathTable encodes a path table holding only the root directory.
func pathTable(rootExtent uint32, order binary.ByteOrder) []byte {
	p := make([]byte, 10)
	p[0] = 1
	order.PutUint32(p[2:], rootExtent)
	order.PutUint16(p[6:], 1)
	return p
}

// ucs2 encodes s as big-endian UTF-16, as Joliet names are.
func ucs2(s string) []byte {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(units))
	for i, u := range units {
		binary.BigEndian.PutUint16(b[2*i:], u)
	}
	return b
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// recordTime is the 7-byte date of a directory record, in UTC.
func recordTime(t time.Time) []byte {
	if t.IsZero() {
		return make([]byte, 7)
	}
	t = t.UTC()
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// descriptorTime is the 17-byte date of a volume descriptor; the zero
// time means "not specified".
func descriptorTime(t time.Time) []byte {
	if t.IsZero() {
		return append([]byte("0000000000000000"), 0)
	}
	t = t.UTC()
	s := fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7)
	return append([]byte(s), 0)
}
