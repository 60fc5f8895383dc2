package ovf

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"io"
	"path"
	"strings"
	"time"
)

// OVA describes an archive to write: the descriptor, then its manifest,
// then the files in order.
type OVA struct {
	// DescriptorName is the descriptor's member name, e.g. "web.ovf"; the
	// manifest is named after it ("web.mf").
	DescriptorName string
	Descriptor     []byte
	Files          []OVAFile
	// ModTime is the modification time of every member; zero means the
	// Unix epoch, which makes archives reproducible.
	ModTime time.Time
}

// OVAFile is a file stored after the manifest.
type OVAFile struct {
	Name string
	// Size is the exact number of bytes Open yields.
	Size int64
	// Open returns the file's bytes. Without SHA256 it is called twice:
	// once to compute the digest for the manifest, once to store the file.
	Open func() (io.ReadCloser, error)
	// SHA256 is the file's digest when already known. The digest of the
	// stored bytes is checked against it.
	SHA256 []byte
}

// ustarMaxSize is the largest member size a ustar header can express.
const ustarMaxSize = 1<<33 - 1

// memberHeader returns the tar header of a member: ustar, or GNU with a
// base-256 size field for members of 8 GiB and more.
func memberHeader(name string, size int64, mtime time.Time) *tar.Header {
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  mtime,
		Format:   tar.FormatUSTAR,
	}
	if size > ustarMaxSize {
		h.Format = tar.FormatGNU
	}
	return h
}

// Write writes the archive to w: the descriptor, a manifest with the
// SHA256 of the descriptor and of every file, then the files streamed
// from their readers.
func (o OVA) Write(ctx context.Context, w io.Writer) error {
	if _, err := memberName(o.DescriptorName); err != nil || !strings.HasSuffix(o.DescriptorName, ".ovf") {
		return fmt.Errorf("ovf: descriptor name %q must be a relative name ending in .ovf", o.DescriptorName)
	}
	mtime := o.ModTime
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	names := map[string]bool{o.DescriptorName: true}
	mfName := strings.TrimSuffix(o.DescriptorName, ".ovf") + ".mf"
	names[mfName] = true
	var mf ManifestWriter
	mf.Add(path.Base(o.DescriptorName), sha256Sum(o.Descriptor))
	digests := make([][]byte, len(o.Files))
	for i, f := range o.Files {
		if clean, err := CleanHref(f.Name); err != nil || clean != f.Name {
			return fmt.Errorf("ovf: file name %q is not a plain relative name", f.Name)
		}
		if names[f.Name] {
			return fmt.Errorf("ovf: %q is stored twice", f.Name)
		}
		names[f.Name] = true
		if f.Size < 0 {
			return fmt.Errorf("ovf: %q has negative size", f.Name)
		}
		digests[i] = f.SHA256
		if digests[i] == nil {
			sum, err := hashFile(ctx, f)
			if err != nil {
				return err
			}
			digests[i] = sum
		}
		mf.Add(f.Name, digests[i])
	}
	tw := tar.NewWriter(w)
	if err := writeMember(tw, memberHeader(o.DescriptorName, int64(len(o.Descriptor)), mtime), o.Descriptor); err != nil {
		return err
	}
	manifest := mf.Bytes()
	if err := writeMember(tw, memberHeader(mfName, int64(len(manifest)), mtime), manifest); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i, f := range o.Files {
		if err := tw.WriteHeader(memberHeader(f.Name, f.Size, mtime)); err != nil {
			return fmt.Errorf("ovf: write header of %q: %w", f.Name, err)
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("ovf: open %q: %w", f.Name, err)
		}
		h := sha256.New()
		err = copyExact(ctx, io.MultiWriter(tw, h), rc, f, buf)
		rc.Close()
		if err != nil {
			return err
		}
		if got := h.Sum(nil); string(got) != string(digests[i]) {
			return fmt.Errorf("ovf: %q changed while being written (SHA256 %x, expected %x)", f.Name, got, digests[i])
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ovf: finish archive: %w", err)
	}
	return nil
}

func writeMember(tw *tar.Writer, h *tar.Header, data []byte) error {
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("ovf: write header of %q: %w", h.Name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("ovf: write %q: %w", h.Name, err)
	}
	return nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func hashFile(ctx context.Context, f OVAFile) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("ovf: open %q: %w", f.Name, err)
	}
	defer rc.Close()
	h := sha256.New()
	if err := copyExact(ctx, h, rc, f, make([]byte, 1<<20)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// copyExact copies exactly f.Size bytes and fails if the reader holds
// fewer or more.
func copyExact(ctx context.Context, dst io.Writer, src io.Reader, f OVAFile, buf []byte) error {
	n, err := copyContext(ctx, dst, io.LimitReader(src, f.Size), buf)
	if err != nil {
		return fmt.Errorf("ovf: copy %q: %w", f.Name, err)
	}
	if n != f.Size {
		return fmt.Errorf("ovf: %q yielded %d bytes, expected %d", f.Name, n, f.Size)
	}
	var one [1]byte
	if k, err := io.ReadFull(src, one[:]); k > 0 {
		return fmt.Errorf("ovf: %q is larger than its declared %d bytes", f.Name, f.Size)
	} else if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("ovf: read %q: %w", f.Name, err)
	}
	return nil
}
