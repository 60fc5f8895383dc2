package qemuimg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Header checks run before qemu-img opens an untrusted image, so that files
// the image names are never opened, not even for inspection.

// qcow2 header layout (big-endian), see qemu's docs/interop/qcow2.txt.
const (
	qcow2V2HeaderSize       = 72
	qcow2V3HeaderSize       = 104
	qcow2IncompatDataFile   = 1 << 2
	qcow2ExtDataFile        = 0x44415441
	qcow2MaxNameLen         = 1023
	qcow2MaxHeaderExtBytes  = 64 << 10
	qcow2MaxHeaderExtension = 64
)

// qcow2References reports the backing file and external data file that the
// qcow2 header of f names, as an error wrapping ErrExternalReference.
func qcow2References(f io.ReaderAt) error {
	hdr := make([]byte, qcow2V3HeaderSize)
	n, err := f.ReadAt(hdr, 0)
	if n < qcow2V2HeaderSize {
		return fmt.Errorf("read qcow2 header: %w", orUnexpectedEOF(err))
	}
	be := binary.BigEndian
	version := be.Uint32(hdr[4:8])
	if off, size := be.Uint64(hdr[8:16]), be.Uint32(hdr[16:20]); off != 0 {
		name := readName(f, int64(off), size)
		return fmt.Errorf("%w: qcow2 backing file %q", ErrExternalReference, name)
	}
	if version < 3 || n < qcow2V3HeaderSize {
		return nil
	}
	if be.Uint64(hdr[72:80])&qcow2IncompatDataFile != 0 {
		name := qcow2DataFileName(f, int64(be.Uint32(hdr[100:104])))
		return fmt.Errorf("%w: qcow2 external data file %q", ErrExternalReference, name)
	}
	return nil
}

// qcow2DataFileName looks for the data file name among the header
// extensions that start at off; it returns "" when there is none.
func qcow2DataFileName(f io.ReaderAt, off int64) string {
	buf := make([]byte, qcow2MaxHeaderExtBytes)
	n, _ := f.ReadAt(buf, off)
	buf = buf[:n]
	be := binary.BigEndian
	for range qcow2MaxHeaderExtension {
		if len(buf) < 8 {
			return ""
		}
		typ, size := be.Uint32(buf[0:4]), int(be.Uint32(buf[4:8]))
		if typ == 0 || size > len(buf)-8 {
			return ""
		}
		if typ == qcow2ExtDataFile {
			return string(buf[8 : 8+size])
		}
		buf = buf[min(8+(size+7)&^7, len(buf)):]
	}
	return ""
}

func readName(f io.ReaderAt, off int64, size uint32) string {
	name := make([]byte, min(size, qcow2MaxNameLen))
	n, _ := f.ReadAt(name, off)
	return string(name[:n])
}

// VMDK4 sparse header layout (little-endian).
const vmdkSparseHeaderSize = 36

// vmdkReferences refuses VMDKs that qemu would assemble from other files: a
// text descriptor always lists its extents, and a sparse header with no
// capacity hands over to the descriptor embedded in it.
func vmdkReferences(f io.ReaderAt) error {
	hdr := make([]byte, vmdkSparseHeaderSize)
	n, err := f.ReadAt(hdr, 0)
	switch {
	case bytes.HasPrefix(hdr[:n], vmdkCOWDMagic):
		return nil
	case !bytes.HasPrefix(hdr[:n], vmdkSparseMagic):
		return fmt.Errorf("%w: VMDK text descriptor (its extents are other files)", ErrExternalReference)
	case n < vmdkSparseHeaderSize:
		return fmt.Errorf("read VMDK header: %w", orUnexpectedEOF(err))
	}
	le := binary.LittleEndian
	capacity, descOffset := le.Uint64(hdr[12:20]), le.Uint64(hdr[28:36])
	if capacity == 0 && descOffset != 0 {
		return fmt.Errorf("%w: VMDK sparse header deferring to its descriptor's extents", ErrExternalReference)
	}
	return nil
}

// headerReferences runs the header check of format on the file at path.
func headerReferences(path, format string) error {
	var check func(io.ReaderAt) error
	switch format {
	case FormatQCOW2:
		check = qcow2References
	case FormatVMDK:
		check = vmdkReferences
	default:
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return check(f)
}

func orUnexpectedEOF(err error) error {
	if err == nil || err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
