package ovf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Package is an OVF package opened for reading: its descriptor parsed, its
// manifest read, and every referenced file found inside the package with
// its declared size. File contents are read only through Open, which
// verifies them, or located with Sections for reading in place.
type Package struct {
	Envelope *Envelope
	// DescriptorName is the descriptor's path inside the package.
	DescriptorName string
	// Descriptor holds the descriptor bytes as stored.
	Descriptor []byte
	// Manifest is nil when the package has none.
	Manifest     *Manifest
	ManifestName string
	// Certificate is the name of the .cert file, if any. Its signature is
	// not checked.
	Certificate string
	// Warnings are the envelope's warnings followed by the package's.
	Warnings []string

	store   store
	archive *Archive
	// stored maps each name a File is stored under (chunks included) to
	// its size.
	stored map[string]int64
}

// store is where the files of a package live.
type store interface {
	// stat returns the size of a regular file, fs.ErrNotExist if there is
	// none, or an error for links and other non-regular files.
	stat(name string) (int64, error)
	open(name string) (io.ReadCloser, error)
}

// OpenOVA opens an OVA: an uncompressed tar of the given size whose first
// member is the descriptor. Nothing is extracted.
func OpenOVA(r io.ReaderAt, size int64, opts Options) (*Package, error) {
	a, err := IndexArchive(r, size)
	if err != nil {
		return nil, err
	}
	var descriptors []Member
	for _, m := range a.members {
		if isAppleDouble(m.Name) {
			continue
		}
		if strings.EqualFold(path.Ext(m.Name), ".ovf") {
			descriptors = append(descriptors, m)
		}
	}
	switch {
	case len(descriptors) == 0:
		return nil, invalidf(0, "archive holds no .ovf descriptor")
	case len(descriptors) > 1:
		var names []string
		for _, d := range descriptors {
			names = append(names, d.Name)
		}
		return nil, invalidf(0, "archive holds %d descriptors (%s); an OVA has exactly one", len(descriptors), strings.Join(names, ", "))
	}
	desc := descriptors[0]
	if desc.Index != 0 {
		return nil, invalidf(0, "descriptor %q is not the first member of the archive (it follows %q); an OVA must start with its descriptor", desc.Name, a.members[0].Name)
	}
	p := &Package{archive: a, store: archiveStore{a}, DescriptorName: desc.Name}
	p.Warnings = append(p.Warnings, a.Warnings...)
	if err := p.load(opts); err != nil {
		return nil, err
	}
	p.checkOrder()
	return p, nil
}

// OpenDir opens a package in directory form: the descriptor at the given
// path of fsys, with its files beside it. When fsys can report symbolic
// links (fs.ReadLinkFS, as os.DirFS and os.Root.FS do), links are refused.
func OpenDir(fsys fs.FS, descriptor string, opts Options) (*Package, error) {
	name, err := memberName(descriptor)
	if err != nil || name == "" || !fs.ValidPath(name) {
		return nil, invalidf(0, "descriptor path %q is not a path inside the package", descriptor)
	}
	p := &Package{store: dirStore{fsys}, DescriptorName: name}
	if err := p.load(opts); err != nil {
		return nil, err
	}
	return p, nil
}

func isAppleDouble(name string) bool {
	return strings.HasPrefix(path.Base(name), "._") || strings.HasPrefix(name, "__MACOSX/")
}

// load reads and parses the descriptor, reads the manifest and checks
// every referenced file.
func (p *Package) load(opts Options) error {
	lim := opts.Limits.withDefaults()
	size, err := p.store.stat(p.DescriptorName)
	if err != nil {
		return fmt.Errorf("descriptor %q: %w", p.DescriptorName, err)
	}
	if size > lim.MaxDescriptorBytes {
		return unsafef(0, "descriptor %q is larger than %d bytes", p.DescriptorName, lim.MaxDescriptorBytes)
	}
	rc, err := p.store.open(p.DescriptorName)
	if err != nil {
		return fmt.Errorf("descriptor %q: %w", p.DescriptorName, err)
	}
	p.Descriptor, err = readLimited(rc, lim.MaxDescriptorBytes)
	rc.Close()
	if err != nil {
		return err
	}
	env, err := Parse(p.Descriptor, opts)
	if err != nil {
		return fmt.Errorf("descriptor %s: %w", path.Base(p.DescriptorName), err)
	}
	p.Envelope = env
	p.Warnings = append(append([]string{}, env.Warnings...), p.Warnings...)

	if err := p.findManifest(); err != nil {
		return err
	}
	if err := p.locateFiles(); err != nil {
		return err
	}
	return p.checkManifest()
}

// sibling returns the name of a file beside the descriptor.
func (p *Package) sibling(name string) string {
	return path.Join(path.Dir(p.DescriptorName), name)
}

// resolve returns the name under which an href is stored.
func (p *Package) resolve(href string) (string, error) {
	clean, err := CleanHref(href)
	if err != nil {
		return "", err
	}
	return p.sibling(clean), nil
}

func (p *Package) findManifest() error {
	base := strings.TrimSuffix(path.Base(p.DescriptorName), path.Ext(p.DescriptorName))
	mf := p.sibling(base + ".mf")
	if _, err := p.store.stat(mf); err == nil {
		p.ManifestName = mf
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("manifest %q: %w", mf, err)
	} else if p.archive != nil {
		var others []string
		for _, m := range p.archive.members {
			if strings.EqualFold(path.Ext(m.Name), ".mf") && !isAppleDouble(m.Name) {
				others = append(others, m.Name)
			}
		}
		switch len(others) {
		case 0:
		case 1:
			p.ManifestName = others[0]
			p.warnf("manifest %q is not named after the descriptor %q", others[0], p.DescriptorName)
		default:
			return invalidf(0, "archive holds %d manifests (%s) and none is named after the descriptor", len(others), strings.Join(others, ", "))
		}
	}
	cert := p.sibling(base + ".cert")
	if _, err := p.store.stat(cert); err == nil {
		p.Certificate = cert
		p.warnf("package is signed (%s) but the signature was not checked", path.Base(cert))
	}
	if p.ManifestName == "" {
		p.warnf("package has no manifest: its files cannot be verified")
		return nil
	}
	rc, err := p.store.open(p.ManifestName)
	if err != nil {
		return fmt.Errorf("manifest %q: %w", p.ManifestName, err)
	}
	defer rc.Close()
	m, err := ParseManifest(rc)
	if err != nil {
		return err
	}
	p.Manifest = m
	for _, w := range m.Warnings {
		p.warnf("%s", w)
	}
	return nil
}

func (p *Package) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !slices.Contains(p.Warnings, msg) {
		p.Warnings = append(p.Warnings, msg)
	}
}

// locateFiles checks that every File is stored in the package, as a
// regular file (or its chunks), with its declared size.
func (p *Package) locateFiles() error {
	p.stored = map[string]int64{}
	for _, f := range p.Envelope.Files {
		name, err := p.resolve(f.Href)
		if err != nil {
			return fmt.Errorf("File %q: %w", f.ID, err)
		}
		if f.ChunkSize <= 0 {
			size, err := p.stat(f, name)
			if err != nil {
				return err
			}
			if f.SizeKnown && size != f.Size {
				return integrityf("%q holds %d bytes but its File %q declares ovf:size %d", f.Href, size, f.ID, f.Size)
			}
			p.stored[name] = size
			continue
		}
		var total int64
		for i, chunk := range f.ChunkNames() {
			cname := p.sibling(path.Clean(chunk))
			size, err := p.stat(f, cname)
			if err != nil {
				return err
			}
			if want := f.ChunkLength(i); size != want {
				return integrityf("chunk %q of File %q holds %d bytes, expected %d", chunk, f.ID, size, want)
			}
			total += size
			p.stored[cname] = size
		}
		extra := p.sibling(path.Clean(chunkName(f.Href, len(f.ChunkNames()))))
		if _, err := p.store.stat(extra); err == nil {
			return integrityf("File %q has more chunks than its ovf:size %d allows (%q)", f.ID, f.Size, extra)
		}
		if total != f.Size {
			return integrityf("chunks of File %q hold %d bytes, expected %d", f.ID, total, f.Size)
		}
	}
	return nil
}

func (p *Package) stat(f File, name string) (int64, error) {
	size, err := p.store.stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, integrityf("File %q (%s) is not in the package", f.ID, name)
	}
	if err != nil {
		return 0, fmt.Errorf("File %q: %w", f.ID, err)
	}
	return size, nil
}

// checkManifest verifies the descriptor's digest and checks that the
// manifest covers the files the package uses.
func (p *Package) checkManifest() error {
	m := p.Manifest
	if m == nil {
		return nil
	}
	descName := path.Base(p.DescriptorName)
	self := map[string]bool{path.Base(p.ManifestName): true}
	if p.Certificate != "" {
		self[path.Base(p.Certificate)] = true
	}
	listed := map[string]bool{}
	for _, e := range m.Entries {
		if self[e.Name] {
			continue
		}
		listed[e.Name] = true
		if e.Name == descName {
			continue
		}
		name, err := p.resolve(e.Name)
		if err != nil {
			p.warnf("manifest line %d names %q, which cannot be in the package", e.Line, e.Name)
			continue
		}
		if _, ok := p.stored[name]; !ok {
			if _, err := p.store.stat(name); err != nil {
				p.warnf("manifest lists %q, which is not in the package", e.Name)
			}
		}
	}
	e, ok := m.Lookup(descName)
	if !ok {
		return integrityf("manifest %s does not list the descriptor %s", path.Base(p.ManifestName), descName)
	}
	v, err := newVerifier(bytes.NewReader(p.Descriptor), descName, &e, int64(len(p.Descriptor)))
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	disks := map[string]bool{}
	for _, d := range p.Envelope.Disks {
		disks[d.FileRef] = true
	}
	for _, f := range p.Envelope.Files {
		for _, chunk := range f.ChunkNames() {
			rel := path.Clean(chunk)
			e, ok := m.Lookup(rel)
			if !ok {
				if disks[f.ID] {
					return integrityf("manifest does not list %q, a disk of the package", rel)
				}
				p.warnf("manifest does not list %q; it is not verified", rel)
				continue
			}
			if _, err := newVerifier(nil, rel, &e, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOrder warns when an OVA does not follow the canonical order:
// descriptor, manifest and certificate, then files in References order
// (the manifest and certificate may also come last).
func (p *Package) checkOrder() {
	idx := func(name string) int {
		m, ok := p.archive.Member(name)
		if !ok {
			return -1
		}
		return m.Index
	}
	last := len(p.archive.members) - 1
	for _, name := range []string{p.ManifestName, p.Certificate} {
		if name == "" {
			continue
		}
		if i := idx(name); i > 2 && i < last-1 {
			p.warnf("%s is neither right after the descriptor nor at the end of the archive", name)
		}
	}
	prev := -1
	for _, f := range p.Envelope.Files {
		for _, chunk := range f.ChunkNames() {
			i := idx(p.sibling(path.Clean(chunk)))
			if i >= 0 && i < prev {
				p.warnf("archive members are not in References order (%s comes too early)", chunk)
				return
			}
			prev = max(prev, i)
		}
	}
	used := map[string]bool{p.DescriptorName: true, p.ManifestName: true, p.Certificate: true}
	for name := range p.stored {
		used[name] = true
	}
	for _, m := range p.archive.members {
		if !used[m.Name] {
			p.warnf("archive member %q is not referenced by the descriptor", m.Name)
		}
	}
}

// Archive returns the index of an OVA, or nil for a directory package.
func (p *Package) Archive() *Archive { return p.archive }

// Sections returns the archive members holding the stored bytes of a
// File, in order (several for a chunked file). It fails for directory
// packages.
func (p *Package) Sections(f File) ([]Member, error) {
	if p.archive == nil {
		return nil, fmt.Errorf("package %s is not an archive", p.DescriptorName)
	}
	var out []Member
	for _, chunk := range f.ChunkNames() {
		name, err := p.resolve(chunk)
		if err != nil {
			return nil, err
		}
		m, ok := p.archive.Member(name)
		if !ok {
			return nil, integrityf("File %q (%s) is not in the package", f.ID, name)
		}
		out = append(out, m)
	}
	return out, nil
}

// Open returns the stored bytes of a File (compressed if it is; chunks
// concatenated). The reader checks the declared sizes and, when the
// package has a manifest, the digests: the Read that reaches the end
// returns an Error of class ErrIntegrity on any mismatch, so a caller
// must read to EOF and check the error before trusting the data.
func (p *Package) Open(f File) (io.ReadCloser, error) {
	var readers []io.Reader
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	for i, chunk := range f.ChunkNames() {
		name, err := p.resolve(chunk)
		if err != nil {
			closeAll()
			return nil, err
		}
		size, ok := p.stored[name]
		if !ok {
			closeAll()
			return nil, integrityf("File %q (%s) is not in the package", f.ID, name)
		}
		rc, err := p.store.open(name)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("File %q: %w", f.ID, err)
		}
		closers = append(closers, rc)
		var entry *ManifestEntry
		if p.Manifest != nil {
			if e, ok := p.Manifest.Lookup(path.Clean(chunk)); ok {
				entry = &e
			}
		}
		want := size
		if f.ChunkSize > 0 {
			want = f.ChunkLength(i)
		}
		v, err := newVerifier(rc, path.Clean(chunk), entry, want)
		if err != nil {
			closeAll()
			return nil, err
		}
		readers = append(readers, v)
	}
	return &multiReadCloser{Reader: io.MultiReader(readers...), closers: closers}, nil
}

type multiReadCloser struct {
	io.Reader
	closers []io.Closer
}

func (m *multiReadCloser) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Verify reads every File of the package and checks its size and, when
// there is a manifest, its digest.
func (p *Package) Verify(ctx context.Context) error {
	buf := make([]byte, 1<<20)
	for _, f := range p.Envelope.Files {
		rc, err := p.Open(f)
		if err != nil {
			return err
		}
		_, err = copyContext(ctx, io.Discard, rc, buf)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// copyContext copies until EOF, stopping when ctx is done.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Summary returns the summary of the package's envelope with the
// package's warnings and the manifest algorithm.
func (p *Package) Summary() Summary {
	s := Summarize(p.Envelope)
	s.Warnings = append([]string{}, p.Warnings...)
	if p.Manifest != nil {
		s.Manifest = p.Manifest.Algorithm()
	}
	return s
}

type archiveStore struct{ a *Archive }

func (s archiveStore) stat(name string) (int64, error) {
	if m, ok := s.a.Member(name); ok {
		return m.Size, nil
	}
	if kind, ok := s.a.others[name]; ok {
		return 0, unsafef(0, "archive member %q is a %s, not a regular file", name, kind)
	}
	return 0, fs.ErrNotExist
}

func (s archiveStore) open(name string) (io.ReadCloser, error) {
	m, ok := s.a.Member(name)
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(s.a.Section(m)), nil
}

type dirStore struct{ fsys fs.FS }

func (s dirStore) stat(name string) (int64, error) {
	var info fs.FileInfo
	var err error
	if l, ok := s.fsys.(fs.ReadLinkFS); ok {
		info, err = l.Lstat(name)
	} else {
		info, err = fs.Stat(s.fsys, name)
	}
	if err != nil {
		return 0, err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		return 0, unsafef(0, "%q is a symbolic link; package files must be regular files", name)
	}
	if !info.Mode().IsRegular() {
		return 0, unsafef(0, "%q is not a regular file", name)
	}
	return info.Size(), nil
}

func (s dirStore) open(name string) (io.ReadCloser, error) {
	if _, err := s.stat(name); err != nil {
		return nil, err
	}
	return s.fsys.Open(name)
}
