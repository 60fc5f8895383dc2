// Package hostimage checks the disk images on this host that a request
// names with a file:// imageLocation: the path the location names and
// what the file holds. What it refuses is a bad request whose message says
// why.
package hostimage

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"

	"cimid/agent/errdefs"
	"cimid/hypervisor/qemuimg"
)

// FilePath returns the absolute path on this host that u, the file://
// imageLocation given as loc, names.
func FilePath(loc string, u *url.URL) (string, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", errdefs.Invalidf("imageLocation %q names another host; file:// must name a path on this host", loc)
	}
	if !filepath.IsAbs(u.Path) {
		return "", errdefs.Invalidf("imageLocation %q must name an absolute path", loc)
	}
	return filepath.Clean(u.Path), nil
}

// Inspect detects the format of the image file at path and refuses an
// image that references other files.
func Inspect(ctx context.Context, path string) (format string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errdefs.Invalidf("image file %s does not exist", path)
		}
		return "", errdefs.Invalidf("image file %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", errdefs.Invalidf("image file %s is not a regular file", path)
	}
	format, err = qemuimg.DetectFormat(path)
	if err != nil {
		return "", errdefs.Invalidf("image file %s: %v", path, err)
	}
	if err := qemuimg.CheckSelfContained(ctx, path, format); err != nil {
		if errors.Is(err, qemuimg.ErrExternalReference) {
			return "", errdefs.Invalidf("image %s is refused: %v", path, err)
		}
		return "", errdefs.Invalidf("image %s cannot be read as %s: %v", path, format, err)
	}
	return format, nil
}
