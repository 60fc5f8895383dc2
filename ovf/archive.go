package ovf

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Member is a regular file stored in an OVA: its data is Size bytes at
// Offset in the archive, so it can be read in place (for example handed
// to qemu-img as an offset and size) without extracting it.
type Member struct {
	Name   string
	Offset int64
	Size   int64
	// Index is the position of the member among the archive's regular
	// files.
	Index int
}

// Archive is an index of the members of a tar archive read through an
// io.ReaderAt. Only headers are read; data is skipped by seeking.
type Archive struct {
	r       io.ReaderAt
	size    int64
	members []Member
	byName  map[string]int
	// others maps names of members that are not regular files to their
	// type; they are never read.
	others   map[string]string
	Warnings []string
}

// maxMembers caps the number of members of an archive.
const maxMembers = 10_000

// IndexArchive reads the headers of a tar archive (ustar, GNU or PAX) of
// the given size. It refuses compressed archives, truncated ones,
// duplicate names, names that leave the archive and GNU sparse members;
// links and devices are listed but never read.
func IndexArchive(r io.ReaderAt, size int64) (*Archive, error) {
	if err := sniffArchive(r, size); err != nil {
		return nil, err
	}
	a := &Archive{r: r, size: size, byName: map[string]int{}, others: map[string]string{}}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	count := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, integrityf("archive is truncated (after %d members)", count)
		}
		if err != nil {
			return nil, invalidf(0, "archive: member %d: %v", count+1, err)
		}
		count++
		if count > maxMembers {
			return nil, unsafef(0, "archive has more than %d members", maxMembers)
		}
		offset, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		name, err := memberName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "" {
			continue
		}
		if _, dup := a.byName[name]; dup {
			return nil, unsafef(0, "archive holds member %q twice", name)
		}
		if _, dup := a.others[name]; dup {
			return nil, unsafef(0, "archive holds member %q twice", name)
		}
		if isSparse(hdr) {
			return nil, unsafef(0, "archive member %q is a GNU sparse file; refused", name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		default:
			kind := memberType(hdr.Typeflag)
			a.others[name] = kind
			a.Warnings = append(a.Warnings, fmt.Sprintf("archive member %q is a %s; ignored", name, kind))
			continue
		}
		if hdr.Size > size-offset {
			return nil, integrityf("archive is truncated: member %q declares %d bytes but only %d remain", name, hdr.Size, size-offset)
		}
		a.byName[name] = len(a.members)
		a.members = append(a.members, Member{Name: name, Offset: offset, Size: hdr.Size, Index: len(a.members)})
	}
	if len(a.members) == 0 && len(a.others) == 0 {
		return nil, invalidf(0, "archive holds no members")
	}
	return a, nil
}

// sniffArchive refuses what is not an uncompressed tar, naming what it is.
func sniffArchive(r io.ReaderAt, size int64) error {
	head := make([]byte, 512)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read archive: %w", err)
	}
	head = head[:n]
	for _, m := range []struct {
		magic []byte
		name  string
	}{
		{[]byte{0x1f, 0x8b}, "gzip"},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz"},
		{[]byte("BZh"), "bzip2"},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd"},
		{[]byte("PK\x03\x04"), "zip"},
	} {
		if bytes.HasPrefix(head, m.magic) {
			return unsupportedf(0, "archive is %s-compressed; an OVA must be an uncompressed tar (decompress it first)", m.name)
		}
	}
	if n < 512 || size < 1024 {
		return invalidf(0, "archive is too short to be a tar file (%d bytes)", size)
	}
	if !bytes.Equal(head[257:262], []byte("ustar")) && !validTarChecksum(head) {
		return invalidf(0, "file is not a tar archive")
	}
	return nil
}

// validTarChecksum checks the header checksum of an old-style tar header.
func validTarChecksum(h []byte) bool {
	var sum int64
	for i, c := range h[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	field := strings.Trim(string(h[148:156]), " \x00")
	var want int64
	if _, err := fmt.Sscanf(field, "%o", &want); err != nil {
		return false
	}
	return sum == want
}

func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func memberType(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("member of type %q", t)
}

// memberName checks a member name and returns it cleaned ("./x" is "x").
// Names leaving the archive are refused.
func memberName(name string) (string, error) {
	switch {
	case strings.ContainsRune(name, 0):
		return "", unsafef(0, "archive member name %q contains NUL", name)
	case strings.Contains(name, `\`):
		return "", unsafef(0, "archive member name %q contains a backslash", name)
	case strings.HasPrefix(name, "/"):
		return "", unsafef(0, "archive member name %q is absolute", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", unsafef(0, "archive member name %q leaves the archive", name)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// Members returns the regular files of the archive in archive order.
func (a *Archive) Members() []Member { return append([]Member(nil), a.members...) }

// Member returns the regular file with the given (clean) name.
func (a *Archive) Member(name string) (Member, bool) {
	i, ok := a.byName[name]
	if !ok {
		return Member{}, false
	}
	return a.members[i], true
}

// Section returns a reader over a member's data.
func (a *Archive) Section(m Member) *io.SectionReader {
	return io.NewSectionReader(a.r, m.Offset, m.Size)
}
