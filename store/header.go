package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// ErrDamaged is returned (wrapped, with the file and what is wrong) when
// the file is not a store that can be read as it is. The file is left
// untouched: the store never repairs or resets it.
var ErrDamaged = errors.New("the state file is damaged")

// damaged describes a damaged file and the way out.
func damaged(path, why string) error {
	return fmt.Errorf("%w: %s: %s; it is left as it is. Move it aside (mv %s %s.broken) to start afresh; see \"When the state file is damaged\" in the README",
		ErrDamaged, path, why, path, path)
}

// The two meta pages at the start of a bbolt file (format version 2). A
// bbolt file whose newer meta page is unreadable opens on the older one,
// silently going back one transaction and overwriting the bad page at the
// next commit; checkHeader refuses such a file instead.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16 // id, flags, count, overflow
	metaSumOffset  = 56 // the checksum follows 56 bytes of meta fields
	metaSize       = metaSumOffset + 8
)

// checkHeader validates both meta pages of an existing, non-empty file.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil // bbolt initialises an empty file
	}
	// The page size is in a valid meta page; bbolt falls back to the
	// system's when the first is unreadable, and so does this check.
	pageSize := int64(os.Getpagesize())
	first, err := readMeta(f, 0)
	if err != nil {
		return damaged(path, fmt.Sprintf("its first meta page is unreadable (%v)", err))
	}
	if ps := int64(binary.NativeEndian.Uint32(first[8:12])); ps > 0 {
		pageSize = ps
	}
	if _, err := readMeta(f, pageSize); err != nil {
		return damaged(path, fmt.Sprintf("its second meta page is unreadable (%v)", err))
	}
	return nil
}

// readMeta reads and validates the meta page at offset off.
func readMeta(f *os.File, off int64) ([]byte, error) {
	buf := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file ends before it")
		}
		return nil, err
	}
	m := buf[pageHeaderSize:]
	if binary.NativeEndian.Uint32(m[0:4]) != boltMagic {
		return nil, errors.New("not a bbolt meta page")
	}
	if v := binary.NativeEndian.Uint32(m[4:8]); v != boltVersion {
		return nil, fmt.Errorf("bbolt format version %d, not %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != binary.NativeEndian.Uint64(m[metaSumOffset:]) {
		return nil, errors.New("checksum mismatch")
	}
	return m, nil
}
