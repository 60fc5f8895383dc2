package ovf

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// ImageInfo is what DetectImage found in a disk image.
type ImageInfo struct {
	// Format is "raw", "qcow2", "vmdk/streamOptimized",
	// "vmdk/monolithicSparse", "vhd", "vhdx", "iso" or "gzip".
	Format string
	// VirtualSize is the disk size recorded in the header, 0 when the
	// format has none (raw, iso).
	VirtualSize int64
}

// DetectImage identifies a disk image by its content and refuses images
// that would make a converter read other files of the host: a qcow2 with
// a backing file or an external data file, a VMDK text descriptor (its
// extents name other files), a sparse VMDK with a parent or with extents
// other than itself, a differencing VHD. Encrypted qcow2 and old qcow and
// COWD images are refused as unsupported. The format the descriptor
// declares is never consulted: pin the detected one when converting.
func DetectImage(r io.ReaderAt, size int64) (ImageInfo, error) {
	head := make([]byte, 4096)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return ImageInfo{}, fmt.Errorf("read image: %w", err)
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return detectQCOW2(head)
	case bytes.HasPrefix(head, []byte("KDMV")):
		return detectVMDK(r, head)
	case bytes.HasPrefix(head, []byte("COWD")):
		return ImageInfo{}, unsupportedf(0, "image is an ESX COWD sparse VMDK, which is not supported")
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return ImageInfo{Format: "vhdx"}, nil
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return ImageInfo{Format: "gzip"}, nil
	case isVMDKDescriptor(head):
		return ImageInfo{}, unsafef(0, "image is a VMDK text descriptor, whose extents name other files; refused")
	}
	if size >= 512 {
		foot := make([]byte, 512)
		if _, err := r.ReadAt(foot, size-512); err == nil && bytes.HasPrefix(foot, []byte("conectix")) {
			return detectVHD(foot)
		}
	}
	if size >= 32774 {
		iso := make([]byte, 5)
		if _, err := r.ReadAt(iso, 32769); err == nil && string(iso) == "CD001" {
			return ImageInfo{Format: "iso"}, nil
		}
	}
	return ImageInfo{Format: "raw"}, nil
}

func detectQCOW2(h []byte) (ImageInfo, error) {
	if len(h) < 104 {
		return ImageInfo{}, invalidf(0, "qcow2 header is truncated")
	}
	be := binary.BigEndian
	version := be.Uint32(h[4:])
	if version < 2 {
		return ImageInfo{}, unsupportedf(0, "image is qcow version %d, which is not supported", version)
	}
	if be.Uint64(h[8:]) != 0 || be.Uint32(h[16:]) != 0 {
		return ImageInfo{}, unsafef(0, "qcow2 image names a backing file; refused")
	}
	if be.Uint32(h[32:]) != 0 {
		return ImageInfo{}, unsupportedf(0, "qcow2 image is encrypted, which is not supported")
	}
	if version >= 3 && be.Uint64(h[72:])&(1<<2) != 0 {
		return ImageInfo{}, unsafef(0, "qcow2 image stores its data in an external file; refused")
	}
	vsize := be.Uint64(h[24:])
	if vsize > 1<<62 {
		return ImageInfo{}, invalidf(0, "qcow2 virtual size %d is absurd", vsize)
	}
	return ImageInfo{Format: "qcow2", VirtualSize: int64(vsize)}, nil
}

var (
	vmdkCreateType = regexp.MustCompile(`(?m)^\s*createType\s*=\s*"?([A-Za-z0-9]+)"?`)
	vmdkParentCID  = regexp.MustCompile(`(?m)^\s*parentCID\s*=\s*([0-9a-fA-F]+)`)
	vmdkParentHint = regexp.MustCompile(`(?m)^\s*parentFileNameHint\s*=`)
	vmdkExtent     = regexp.MustCompile(`(?m)^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+(\S+)`)
)

func isVMDKDescriptor(h []byte) bool {
	t := string(h[:min(len(h), 1024)])
	return strings.Contains(t, "# Disk DescriptorFile") || vmdkCreateType.MatchString(t)
}

func detectVMDK(r io.ReaderAt, h []byte) (ImageInfo, error) {
	if len(h) < 79 {
		return ImageInfo{}, invalidf(0, "VMDK header is truncated")
	}
	le := binary.LittleEndian
	capacity := le.Uint64(h[12:])
	descOff, descSize := le.Uint64(h[28:]), le.Uint64(h[36:])
	if capacity > 1<<53 {
		return ImageInfo{}, invalidf(0, "VMDK capacity %d sectors is absurd", capacity)
	}
	info := ImageInfo{Format: "vmdk/monolithicSparse", VirtualSize: int64(capacity) * 512}
	if descOff == 0 || descSize == 0 {
		return info, nil
	}
	if descSize > 2048 || descOff > 1<<40 {
		return ImageInfo{}, invalidf(0, "VMDK embedded descriptor is out of bounds")
	}
	desc := make([]byte, descSize*512)
	n, err := r.ReadAt(desc, int64(descOff)*512)
	if err != nil && !errors.Is(err, io.EOF) {
		return ImageInfo{}, fmt.Errorf("read VMDK descriptor: %w", err)
	}
	text := string(bytes.TrimRight(desc[:n], "\x00"))
	if m := vmdkCreateType.FindStringSubmatch(text); m != nil {
		switch m[1] {
		case "streamOptimized", "monolithicSparse":
			info.Format = "vmdk/" + m[1]
		default:
			return ImageInfo{}, unsafef(0, "VMDK createType %q may span other files; only streamOptimized and monolithicSparse are accepted", m[1])
		}
	}
	if vmdkParentHint.MatchString(text) {
		return ImageInfo{}, unsafef(0, "VMDK names a parent disk (parentFileNameHint); refused")
	}
	if m := vmdkParentCID.FindStringSubmatch(text); m != nil && !strings.EqualFold(m[1], "ffffffff") {
		return ImageInfo{}, unsafef(0, "VMDK is a delta disk (parentCID %s); refused", m[1])
	}
	extents := vmdkExtent.FindAllStringSubmatch(text, -1)
	if len(extents) > 1 {
		return ImageInfo{}, unsafef(0, "VMDK lists %d extents; only single-extent images are accepted", len(extents))
	}
	for _, e := range extents {
		if e[2] != "SPARSE" {
			return ImageInfo{}, unsafef(0, "VMDK extent of type %s names another file; refused", e[2])
		}
	}
	return info, nil
}

func detectVHD(foot []byte) (ImageInfo, error) {
	be := binary.BigEndian
	switch t := be.Uint32(foot[60:]); t {
	case 2, 3:
	case 4:
		return ImageInfo{}, unsafef(0, "VHD is a differencing disk with a parent; refused")
	default:
		return ImageInfo{}, invalidf(0, "VHD has unknown disk type %d", t)
	}
	vsize := be.Uint64(foot[48:])
	if vsize > 1<<62 {
		return ImageInfo{}, invalidf(0, "VHD size %d is absurd", vsize)
	}
	return ImageInfo{Format: "vhd", VirtualSize: int64(vsize)}, nil
}

// CompareFormat compares the format a Disk declares (a URI or short name)
// with the one detected from content and returns a warning when they
// disagree, or "". Any VMDK subformat matches any other.
func CompareFormat(declared string, detected ImageInfo) string {
	name := FormatName(declared)
	if name == "" {
		return ""
	}
	family := func(f string) string { f, _, _ = strings.Cut(f, "/"); return f }
	if family(name) == family(detected.Format) {
		return ""
	}
	return fmt.Sprintf("disk declares format %s but its content is %s; the content is used", name, detected.Format)
}

// Decompress returns the content of stored file bytes: gunzipped when
// they start with the gzip magic, whatever the descriptor says, else as
// they are. It refuses to return more than limit bytes.
func Decompress(r io.Reader, limit int64) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read: %w", err)
	}
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, invalidf(0, "gzip stream: %v", err)
		}
		return &limitedReader{r: zr, c: zr, left: limit, limit: limit}, nil
	}
	return &limitedReader{r: br, left: limit, limit: limit}, nil
}

type limitedReader struct {
	r     io.Reader
	c     io.Closer
	left  int64
	limit int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Probe for one more byte to tell the exact limit from an excess.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, unsafef(0, "content is larger than %d bytes (decompression bomb?)", l.limit)
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedReader) Close() error {
	if l.c != nil {
		return l.c.Close()
	}
	return nil
}
