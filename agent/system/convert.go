package system

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor/qemuimg"
	"cimid/ovf"
)

// progress turns units of work done into a Job's percentage, between
// from and to (a phase of the Job; 0 and 99 when both are 0).
type progress struct {
	x        *job.Exec
	from, to int
	mu       sync.Mutex
	total    int64
	done     int64
}

// expect adds n units to the work to do.
func (p *progress) expect(n int64) {
	p.mu.Lock()
	p.total += n
	p.mu.Unlock()
}

// add records n more units as done.
func (p *progress) add(n int64) {
	p.mu.Lock()
	p.done += n
	p.mu.Unlock()
	p.report(0)
}

// report shows the units done plus extra units of a step in progress.
func (p *progress) report(extra int64) {
	p.mu.Lock()
	total, done := p.total, p.done
	p.mu.Unlock()
	if total <= 0 || p.x == nil {
		return
	}
	from, to := p.from, p.to
	if to == 0 {
		to = 99
	}
	p.x.Progress(from + int(int64(to-from)*min(done+extra, total)/total))
}

// step returns the reporter of a qemu-img run worth weight units.
func (p *progress) step(weight int64) func(pct float64) {
	return func(pct float64) { p.report(int64(pct / 100 * float64(weight))) }
}

// converter turns the disk files of one package into qcow2 images.
type converter struct {
	pkg *pkg
	// tmp names temporary files in the pool: tmp(n) is the n-th.
	tmp      func(n int) string
	progress *progress
	warnf    func(format string, args ...any)
	seq      int
}

// qemuFormat is the qemu-img driver of a detected image format.
func qemuFormat(info ovf.ImageInfo) (string, error) {
	switch info.Format {
	case "raw", "iso":
		return qemuimg.FormatRaw, nil
	case "qcow2":
		return qemuimg.FormatQCOW2, nil
	case "vmdk/streamOptimized", "vmdk/monolithicSparse":
		return qemuimg.FormatVMDK, nil
	case "vhd":
		return qemuimg.FormatVPC, nil
	case "vhdx":
		return qemuimg.FormatVHDX, nil
	}
	return "", errdefs.Invalidf("image format %s cannot be imported", info.Format)
}

// inPlace returns the region holding a file's stored bytes when qemu-img
// can read them where they are: one piece, in the OVA or beside the
// descriptor, with room for qemu's sector rounding.
func (c *converter) inPlace(f ovf.File) (qemuimg.Region, bool, error) {
	if f.ChunkSize > 0 {
		return qemuimg.Region{}, false, nil
	}
	var r qemuimg.Region
	var fileSize int64
	switch c.pkg.kind {
	case kindOVA:
		members, err := c.pkg.Sections(f)
		if err != nil {
			return r, false, packageError(err)
		}
		if len(members) != 1 {
			return r, false, nil
		}
		fi, err := c.pkg.file.Stat()
		if err != nil {
			return r, false, err
		}
		r, fileSize = qemuimg.Region{Path: c.pkg.path, Offset: members[0].Offset, Size: members[0].Size}, fi.Size()
	default:
		clean, err := ovf.CleanHref(f.Href)
		if err != nil {
			return r, false, packageError(err)
		}
		name := filepath.ToSlash(filepath.Join(filepath.Dir(c.pkg.DescriptorName), clean))
		p, err := c.pkg.filePath(name)
		if err != nil {
			return r, false, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return r, false, err
		}
		r, fileSize = qemuimg.Region{Path: p, Offset: 0, Size: fi.Size()}, fi.Size()
	}
	if r.Size <= 0 || r.Offset%512 != 0 || r.Offset+(r.Size+511)&^511 > fileSize {
		return r, false, nil
	}
	return r, true, nil
}

// detect identifies the image in a region and refuses unsafe ones.
func detect(r qemuimg.Region) (ovf.ImageInfo, error) {
	f, err := os.Open(r.Path)
	if err != nil {
		return ovf.ImageInfo{}, err
	}
	defer f.Close()
	info, err := ovf.DetectImage(io.NewSectionReader(f, r.Offset, r.Size), r.Size)
	if err != nil {
		return info, packageError(err)
	}
	return info, nil
}

// precheck refuses, without converting anything, a disk file whose image
// is unsafe or of a format that cannot be imported. Only files readable in
// place are looked at; the others are checked when they are extracted.
func (c *converter) precheck(f ovf.File) error {
	r, ok, err := c.inPlace(f)
	if err != nil || !ok {
		return err
	}
	info, err := detect(r)
	if err != nil {
		return fmt.Errorf("File %q (%s): %w", f.ID, f.Href, err)
	}
	if info.Format == "gzip" {
		return nil
	}
	if _, err := qemuFormat(info); err != nil {
		return fmt.Errorf("File %q (%s): %w", f.ID, f.Href, err)
	}
	return nil
}

// convert writes the image of disk d as a qcow2 file at dst: read in
// place when it can be, else extracted (gunzipped, chunks joined) to a
// temporary file of the pool first. The image is identified from its
// content and checked to name no other file before qemu-img reads it; the
// manifest digest of the stored bytes is checked as they are read.
func (c *converter) convert(ctx context.Context, d diskPlan, dst string) error {
	f := *d.file
	weight := max(f.Size, 1)
	region, inPlace, err := c.inPlace(f)
	if err != nil {
		return err
	}
	var info ovf.ImageInfo
	if inPlace {
		if info, err = detect(region); err != nil {
			return err
		}
		inPlace = info.Format != "gzip"
	}
	if !inPlace {
		c.seq++
		tmp := c.tmp(c.seq)
		defer os.Remove(tmp)
		size, err := c.extract(ctx, f, d.capacity, tmp, weight/2)
		if err != nil {
			return err
		}
		region = qemuimg.Region{Path: tmp, Offset: 0, Size: size}
		if info, err = detect(region); err != nil {
			return err
		}
		if info.Format == "gzip" {
			return errdefs.Invalidf("the image is compressed twice (gzip inside gzip)")
		}
		c.progress.add(weight / 2)
		weight -= weight / 2
	}
	if w := ovf.CompareFormat(d.format, info); w != "" {
		c.warnf("disk %q: %s", d.diskID, w)
	}
	format, err := qemuFormat(info)
	if err != nil {
		return err
	}
	if info.Format == "iso" {
		c.warnf("disk %q holds an ISO 9660 image; it is imported as a disk", d.diskID)
	}
	if err := qemuimg.CheckRegionSelfContained(ctx, region, format); err != nil {
		if errors.Is(err, qemuimg.ErrExternalReference) {
			return errdefs.Wrap(errdefs.Invalid, fmt.Errorf("unsafe image refused: %w", err))
		}
		return err
	}
	convert := func(ctx context.Context) error {
		return qemuimg.ConvertRegion(ctx, region, format, dst, qemuimg.FormatQCOW2, c.progress.step(weight))
	}
	if inPlace && c.pkg.Manifest != nil {
		err = c.convertVerified(ctx, f, convert)
	} else {
		err = convert(ctx)
	}
	if err != nil {
		return err
	}
	c.progress.add(weight)
	return nil
}

// convertVerified runs convert while the stored bytes of f are read
// against the manifest; a mismatch fails the conversion.
func (c *converter) convertVerified(ctx context.Context, f ovf.File, convert func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	verified := make(chan error, 1)
	go func() {
		err := c.verify(ctx, f)
		if err != nil {
			cancel()
		}
		verified <- err
	}()
	convErr := convert(ctx)
	if convErr != nil {
		cancel()
	}
	verr := <-verified
	if verr != nil && !errors.Is(verr, context.Canceled) {
		return verr
	}
	return convErr
}

// verify reads the stored bytes of f through the package, which checks
// their size and manifest digest.
func (c *converter) verify(ctx context.Context, f ovf.File) error {
	rc, err := c.pkg.Open(f)
	if err != nil {
		return packageError(err)
	}
	defer rc.Close()
	if _, err := copyProgress(ctx, io.Discard, rc, nil); err != nil {
		return packageError(fmt.Errorf("File %q (%s): %w", f.ID, f.Href, err))
	}
	return nil
}

// extract writes the content of f (its chunks joined, gunzipped when it is
// compressed) to tmp, checking its digest on the way, and pads the file to
// a whole sector for qemu. weight units of progress follow the stored
// bytes read. It returns the content's size.
func (c *converter) extract(ctx context.Context, f ovf.File, capacity int64, tmp string, weight int64) (int64, error) {
	rc, err := c.pkg.Open(f)
	if err != nil {
		return 0, packageError(err)
	}
	defer rc.Close()
	var read int64
	counted := &countingReader{r: rc, n: func(n int) {
		read += int64(n)
		c.progress.report(weight * read / max(f.Size, 1))
	}}
	limit, err := extractLimit(filepath.Dir(tmp), capacity)
	if err != nil {
		return 0, err
	}
	content, err := ovf.Decompress(counted, limit)
	if err != nil {
		return 0, packageError(fmt.Errorf("File %q (%s): %w", f.ID, f.Href, err))
	}
	defer content.Close()
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := copyProgress(ctx, out, content, nil)
	if err == nil && n%512 != 0 {
		err = out.Truncate((n + 511) &^ 511)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, packageError(fmt.Errorf("File %q (%s): %w", f.ID, f.Href, err))
	}
	if n == 0 {
		return 0, errdefs.Invalidf("File %q (%s) is empty", f.ID, f.Href)
	}
	return n, nil
}

// extractLimit bounds the content of a compressed file: a little more
// than the disk's declared capacity, and never more than the pool's free
// space.
func extractLimit(dir string, capacity int64) (int64, error) {
	free, err := freeBytes(dir)
	if err != nil {
		return 0, err
	}
	if capacity > 0 {
		return min(free, capacity+capacity/8+64<<20), nil
	}
	return free, nil
}

// freeBytes is the space left to unprivileged users of dir's file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

type countingReader struct {
	r io.Reader
	n func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n(n)
	}
	return n, err
}
