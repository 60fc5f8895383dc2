package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
)

// CheckSelfContained returns nil when the image at path, read as format,
// needs no file but itself, and an error wrapping ErrExternalReference when
// it names a backing file, an external data file or a VMDK extent in another
// file. Text-descriptor VMDKs are always refused; single-file sparse VMDKs
// (monolithicSparse, streamOptimized) are accepted. Raw images cannot refer
// to anything. Other formats are refused as unsupported.
//
// The header is checked before qemu-img runs, so that an image naming other
// files is refused without qemu-img opening them; qemu-img info then
// confirms.
func CheckSelfContained(ctx context.Context, path, format string) error {
	if err := checkSelfContained(ctx, path, format); err != nil {
		return fmt.Errorf("check %s is self-contained: %w", path, err)
	}
	return nil
}

func checkSelfContained(ctx context.Context, path, format string) error {
	switch format {
	case FormatRaw:
		return nil
	case FormatQCOW2, FormatVMDK:
	default:
		return fmt.Errorf("unsupported image format %q", format)
	}
	abs, err := absPath(path)
	if err != nil {
		return err
	}
	if err := headerReferences(abs, format); err != nil {
		return err
	}
	info, err := info(ctx, abs, format)
	if err != nil {
		return err
	}
	return infoReferences(abs, info)
}

// infoReferences reports the files other than path that info names.
func infoReferences(path string, info ImageInfo) error {
	var refs []error
	if info.BackingFile != "" {
		refs = append(refs, fmt.Errorf("%w: backing file %q", ErrExternalReference, info.BackingFile))
	}
	if info.DataFile != "" {
		refs = append(refs, fmt.Errorf("%w: external data file %q", ErrExternalReference, info.DataFile))
	}
	for _, e := range info.Extents {
		if filepath.Clean(e.Filename) != path {
			refs = append(refs, fmt.Errorf("%w: VMDK extent %q", ErrExternalReference, e.Filename))
		}
	}
	return errors.Join(refs...)
}

// Check verifies the consistency of the image at path, read as format, with
// qemu-img check. Leaked clusters (space wasted, data intact) pass; formats
// without consistency checks, such as raw, pass.
func Check(ctx context.Context, path, format string) error {
	if err := checkImage(ctx, path, format); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	return nil
}

// Exit codes of qemu-img check.
const (
	checkLeaks       = 3
	checkUnsupported = 63
)

func checkImage(ctx context.Context, path, format string) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	abs, err := absPath(path)
	if err != nil {
		return err
	}
	_, err = run(ctx, "check", "-f", format, abs)
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		switch exit.ExitCode() {
		case checkLeaks, checkUnsupported:
			return nil
		}
	}
	return err
}
