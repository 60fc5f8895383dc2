package qemuimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Formats accepted for images read from a Region besides raw, qcow2 and
// vmdk: VHD (qemu's "vpc") and VHDX.
const (
	FormatVPC  = "vpc"
	FormatVHDX = "vhdx"
)

// Region is an image stored as a byte range of a larger file, such as a
// disk inside an uncompressed OVA archive. qemu-img reads it in place
// through its raw driver's offset and size options, so the image is never
// copied out of the file that holds it.
type Region struct {
	Path   string
	Offset int64
	// Size is the image's length; qemu's raw driver wants a multiple of
	// 512, so the region read is Size rounded up, which a tar member's
	// padding provides.
	Size int64
}

// regionSize is the length qemu-img reads: Size rounded up to a sector.
func (r Region) regionSize() int64 { return (r.Size + 511) &^ 511 }

// check validates the region against the file holding it.
func (r Region) check() (string, error) {
	abs, err := absPath(r.Path)
	if err != nil {
		return "", err
	}
	if r.Offset < 0 || r.Size <= 0 || r.Offset%512 != 0 {
		return "", fmt.Errorf("region at %d of %d bytes in %s: the offset must be a multiple of 512 and the size positive", r.Offset, r.Size, r.Path)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if end := r.Offset + r.regionSize(); end > fi.Size() {
		return "", fmt.Errorf("region at %d of %d bytes (%d with its sector padding) ends beyond the %d bytes of %s", r.Offset, r.Size, r.regionSize(), fi.Size(), r.Path)
	}
	return abs, nil
}

// rawNode is the qemu block node that reads the region.
type rawNode struct {
	Driver string   `json:"driver"`
	Offset int64    `json:"offset"`
	Size   int64    `json:"size"`
	File   fileNode `json:"file"`
}

type fileNode struct {
	Driver   string `json:"driver"`
	Filename string `json:"filename"`
}

// filename is the "json:" pseudo-filename that opens the region as an image
// whose format the command gives with -f. A qcow2 is opened with its
// backing chain cut, so that even a header changed after the check names
// nothing qemu-img would follow.
func (r Region) filename(abs, format string) (string, error) {
	node := map[string]any{"file": r.node(abs)}
	if format == FormatQCOW2 {
		node["backing"] = nil
	}
	b, err := json.Marshal(node)
	if err != nil {
		return "", err
	}
	return "json:" + string(b), nil
}

func (r Region) node(abs string) rawNode {
	return rawNode{Driver: "raw", Offset: r.Offset, Size: r.regionSize(), File: fileNode{Driver: "file", Filename: abs}}
}

// regionFormat refuses formats a region cannot be read as.
func regionFormat(format string) error {
	switch format {
	case FormatRaw, FormatQCOW2, FormatVMDK, FormatVPC, FormatVHDX:
		return nil
	case "":
		return errors.New("no image format given")
	}
	return fmt.Errorf("unsupported image format %q", format)
}

// CheckRegionSelfContained is CheckSelfContained for an image stored in a
// region: it returns an error wrapping ErrExternalReference when the image
// names a backing file, an external data file or a VMDK extent other than
// itself. The header is checked from the region's bytes before qemu-img
// opens it; qemu-img info then confirms.
func CheckRegionSelfContained(ctx context.Context, r Region, format string) error {
	if err := checkRegionSelfContained(ctx, r, format); err != nil {
		return fmt.Errorf("check the image at %d in %s is self-contained: %w", r.Offset, r.Path, err)
	}
	return nil
}

func checkRegionSelfContained(ctx context.Context, r Region, format string) error {
	if err := regionFormat(format); err != nil {
		return err
	}
	abs, err := r.check()
	if err != nil {
		return err
	}
	if err := regionHeaderReferences(abs, r, format); err != nil {
		return err
	}
	if format == FormatRaw {
		return nil
	}
	info, err := RegionInfo(ctx, r, format)
	if err != nil {
		return err
	}
	var refs []error
	if info.BackingFile != "" {
		refs = append(refs, fmt.Errorf("%w: backing file %q", ErrExternalReference, info.BackingFile))
	}
	if info.DataFile != "" {
		refs = append(refs, fmt.Errorf("%w: external data file %q", ErrExternalReference, info.DataFile))
	}
	for _, e := range info.Extents {
		if !r.isSelf(abs, e.Filename) {
			refs = append(refs, fmt.Errorf("%w: VMDK extent %q", ErrExternalReference, e.Filename))
		}
	}
	return errors.Join(refs...)
}

// isSelf tells whether an extent file name reported by qemu-img is the
// region's own raw node.
func (r Region) isSelf(abs, name string) bool {
	rest, ok := strings.CutPrefix(name, "json:")
	if !ok {
		return false
	}
	var got rawNode
	dec := json.NewDecoder(strings.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		return false
	}
	return got == r.node(abs)
}

// regionHeaderReferences runs the header check of format on the region.
func regionHeaderReferences(abs string, r Region, format string) error {
	var check func(io.ReaderAt) error
	switch format {
	case FormatQCOW2:
		check = qcow2References
	case FormatVMDK:
		check = vmdkReferences
	default:
		return nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return err
	}
	defer f.Close()
	return check(io.NewSectionReader(f, r.Offset, r.Size))
}

// RegionInfo runs qemu-img info on the image in a region, read as format.
// Like Info it does not follow a backing chain; check untrusted images with
// CheckRegionSelfContained first.
func RegionInfo(ctx context.Context, r Region, format string) (ImageInfo, error) {
	if err := regionFormat(format); err != nil {
		return ImageInfo{}, err
	}
	abs, err := r.check()
	if err != nil {
		return ImageInfo{}, err
	}
	name, err := r.filename(abs, format)
	if err != nil {
		return ImageInfo{}, err
	}
	out, err := run(ctx, "info", "--output=json", "-f", format, name)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("inspect the image at %d in %s: %w", r.Offset, r.Path, err)
	}
	return parseInfo(out)
}

// ConvertRegion is Convert for a source image stored in a region: it is
// read in place, as srcFormat, and written to dst in dstFormat. Check
// untrusted images with CheckRegionSelfContained first.
func ConvertRegion(ctx context.Context, src Region, srcFormat, dst, dstFormat string, progress func(pct float64)) error {
	if err := convertRegion(ctx, src, srcFormat, dst, dstFormat, progress); err != nil {
		return fmt.Errorf("convert the image at %d in %s (%s) to %s (%s): %w", src.Offset, src.Path, srcFormat, dst, dstFormat, err)
	}
	return nil
}

func convertRegion(ctx context.Context, src Region, srcFormat, dst, dstFormat string, progress func(float64)) error {
	if err := regionFormat(srcFormat); err != nil {
		return err
	}
	if err := checkFormat(dstFormat); err != nil {
		return err
	}
	abs, err := src.check()
	if err != nil {
		return err
	}
	name, err := src.filename(abs, srcFormat)
	if err != nil {
		return err
	}
	absDst, err := absPath(dst)
	if err != nil {
		return err
	}
	args := []string{"convert", "-p", "-f", srcFormat, "-O", dstFormat}
	if dstFormat == FormatVMDK {
		args = append(args, "-o", "subformat=streamOptimized")
	}
	args = append(args, name, absDst)
	return runWithProgress(ctx, args, progress)
}
