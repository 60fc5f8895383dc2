package qemuimg

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
)

// Create makes a new image of sizeBytes at path in format. qcow2 images are
// sparse; raw ones are sparse files where the file system allows.
func Create(ctx context.Context, path, format string, sizeBytes int64) error {
	if err := create(ctx, path, format, sizeBytes); err != nil {
		return fmt.Errorf("create %s image %s: %w", format, path, err)
	}
	return nil
}

func create(ctx context.Context, path, format string, sizeBytes int64) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	abs, err := absPath(path)
	if err != nil {
		return err
	}
	size, err := sizeArg(sizeBytes)
	if err != nil {
		return err
	}
	_, err = run(ctx, "create", "-q", "-f", format, abs, size)
	return err
}

// CreateOverlay makes a qcow2 image at path whose backing file is backing,
// recording backingFormat in it so that the backing file is never probed.
// backing must be an absolute path. A sizeBytes of 0 gives the overlay the
// size of its backing file.
func CreateOverlay(ctx context.Context, path, backing, backingFormat string, sizeBytes int64) error {
	if err := createOverlay(ctx, path, backing, backingFormat, sizeBytes); err != nil {
		return fmt.Errorf("create overlay %s on %s: %w", path, backing, err)
	}
	return nil
}

func createOverlay(ctx context.Context, path, backing, backingFormat string, sizeBytes int64) error {
	if err := checkFormat(backingFormat); err != nil {
		return fmt.Errorf("backing file: %w", err)
	}
	if !filepath.IsAbs(backing) {
		return errors.New("backing file path is not absolute")
	}
	abs, err := absPath(path)
	if err != nil {
		return err
	}
	args := []string{"create", "-q", "-f", FormatQCOW2, "-o", "compat=1.1",
		"-b", backing, "-F", backingFormat, abs}
	if sizeBytes != 0 {
		size, err := sizeArg(sizeBytes)
		if err != nil {
			return err
		}
		args = append(args, size)
	}
	_, err = run(ctx, args...)
	return err
}

// Resize grows the image at path, read as format, to sizeBytes. Shrinking
// is refused by qemu-img, as it would cut off guest data.
func Resize(ctx context.Context, path, format string, sizeBytes int64) error {
	if err := resize(ctx, path, format, sizeBytes); err != nil {
		return fmt.Errorf("resize %s to %d bytes: %w", path, sizeBytes, err)
	}
	return nil
}

func resize(ctx context.Context, path, format string, sizeBytes int64) error {
	if err := checkFormat(format); err != nil {
		return err
	}
	abs, err := absPath(path)
	if err != nil {
		return err
	}
	size, err := sizeArg(sizeBytes)
	if err != nil {
		return err
	}
	_, err = run(ctx, "resize", "-q", "-f", format, abs, size)
	return err
}
