package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"cimid/agent/errdefs"
	"cimid/ovf"
)

// sourceKind tells how a package is laid out.
type sourceKind int

const (
	kindOVA sourceKind = iota // one tar file
	kindDir                   // a descriptor with its files beside it
)

// source is where a package comes from, as an import names it.
type source struct {
	raw string
	// Local sources have a path; remote ones a URL.
	path string
	url  *url.URL
	kind sourceKind
}

func (src source) remote() bool { return src.url != nil }

// parseSource checks a source URI: file:// with an absolute path on this
// host, or http(s)://. The layout is told by the name (.ova, .ovf) and,
// for a local file, by its content.
func parseSource(raw string) (source, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return source{}, errdefs.Invalidf("source is required: a file:// path on this host or an http(s):// URL of an .ova or .ovf package")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return source{}, errdefs.Invalidf("source %q is not a URI: %v", raw, err)
	}
	src := source{raw: raw}
	switch strings.ToLower(u.Scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return source{}, errdefs.Invalidf("source %q names host %q; a file:// source must be on this host (file:///path)", raw, u.Host)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return source{}, errdefs.Invalidf("source %q: a file:// source takes no query or fragment", raw)
		}
		p := u.Path
		if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return source{}, errdefs.Invalidf("source %q: the path must be absolute and clean", raw)
		}
		src.path = p
		kind, err := localKind(p)
		if err != nil {
			return source{}, err
		}
		src.kind = kind
	case "http", "https":
		if u.Host == "" {
			return source{}, errdefs.Invalidf("source %q has no host", raw)
		}
		u.Fragment = ""
		src.url = u
		switch strings.ToLower(path.Ext(u.Path)) {
		case ".ova":
			src.kind = kindOVA
		case ".ovf":
			src.kind = kindDir
		default:
			return source{}, errdefs.Invalidf("source %q: the URL's path must end in .ova or .ovf", raw)
		}
	default:
		return source{}, errdefs.Invalidf("source %q: scheme %q is not supported (file, http, https)", raw, u.Scheme)
	}
	return src, nil
}

// localKind tells an OVA from a descriptor by content, checking the file
// is a regular file this agent can read.
func localKind(p string) (sourceKind, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, errdefs.Invalidf("source %s does not exist on this host", p)
	}
	if err != nil {
		return 0, errdefs.Invalidf("source %s: %v", p, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, errdefs.Invalidf("source %s is not a regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, errdefs.Invalidf("source %s cannot be read: %v", p, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch ext := strings.ToLower(filepath.Ext(p)); {
	case ext == ".ovf":
		return kindDir, nil
	case ext == ".ova":
		return kindOVA, nil
	case n == 512 && bytes.Equal(head[257:262], []byte("ustar")):
		return kindOVA, nil
	case bytes.HasPrefix(bytes.TrimLeft(head, "\xef\xbb\xbf \t\r\n"), []byte("<")):
		return kindDir, nil
	}
	return 0, errdefs.Invalidf("source %s is neither an OVA (tar) nor an OVF descriptor (.ovf)", p)
}

// pkg is an opened package with what reading its files in place needs.
type pkg struct {
	*ovf.Package
	kind sourceKind
	// path is the OVA file, or the descriptor of a directory package.
	path string
	file *os.File // the OVA, open for reading
	root *os.Root // the directory of a directory package
}

func (p *pkg) Close() error {
	var errs []error
	if p.file != nil {
		errs = append(errs, p.file.Close())
	}
	if p.root != nil {
		errs = append(errs, p.root.Close())
	}
	return errors.Join(errs...)
}

// packageError classifies what the ovf package refuses as bad input.
func packageError(err error) error {
	for _, class := range []error{ovf.ErrInvalid, ovf.ErrUnsafe, ovf.ErrUnsupported, ovf.ErrIntegrity} {
		if errors.Is(err, class) {
			return errdefs.Wrap(errdefs.Invalid, err)
		}
	}
	return err
}

// openLocal opens a package on this host: its descriptor parsed, its
// manifest read, its files found with their declared sizes. File contents
// are not read.
func openLocal(p string, kind sourceKind) (*pkg, error) {
	out := &pkg{kind: kind, path: p}
	switch kind {
	case kindOVA:
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		op, err := ovf.OpenOVA(f, fi.Size(), ovf.Options{})
		if err != nil {
			f.Close()
			return nil, packageError(fmt.Errorf("%s: %w", filepath.Base(p), err))
		}
		out.Package, out.file = op, f
	default:
		root, err := os.OpenRoot(filepath.Dir(p))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", filepath.Dir(p), err)
		}
		op, err := ovf.OpenDir(root.FS(), filepath.Base(p), ovf.Options{})
		if err != nil {
			root.Close()
			return nil, packageError(err)
		}
		out.Package, out.root = op, root
	}
	return out, nil
}

// filePath returns the host path of a directory package's stored file
// name, refusing one that resolves outside the package's directory (a
// symbolic link on the way).
func (p *pkg) filePath(name string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p.path))
	if err != nil {
		return "", err
	}
	full, err := filepath.EvalSymlinks(filepath.Join(filepath.Dir(p.path), filepath.FromSlash(name)))
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(full, dir+string(filepath.Separator)) {
		return "", errdefs.Invalidf("%s resolves to %s, outside the package", name, full)
	}
	return full, nil
}

// defaultHTTPClient fetches sources: bounded connection, TLS and header
// waits, no overall deadline (a package may take long to download), and
// redirects only to http(s).
func defaultHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s refused", req.URL.Scheme)
			}
			return nil
		},
	}
}

// fetcher downloads the files of a remote package into a directory of the
// pool.
type fetcher struct {
	client *http.Client
	creds  credentials
	dir    string
	// progress follows the bytes expected and written.
	progress *progress
}

// errNotFound is a 404 answer, which a missing manifest may give.
var errNotFound = errors.New("not found")

// get fetches u into the file name below f.dir, refusing more than limit
// bytes (below 0: the pool's free space). It returns the number of bytes.
func (f *fetcher) get(ctx context.Context, u *url.URL, name string, limit int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if f.creds.user != "" || f.creds.password != "" {
		req.SetBasicAuth(f.creds.user, f.creds.password)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", redacted(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0, fmt.Errorf("GET %s: %s: %w", redacted(u), resp.Status, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", redacted(u), resp.Status)
	}
	free, err := freeBytes(f.dir)
	if err != nil {
		return 0, err
	}
	if limit < 0 || limit > free {
		limit = free
	}
	if resp.ContentLength > limit {
		return 0, fmt.Errorf("GET %s: %d bytes, more than the %d expected or free in the pool", redacted(u), resp.ContentLength, limit)
	}
	if f.progress != nil && resp.ContentLength > 0 {
		f.progress.expect(resp.ContentLength)
	}
	dst := filepath.Join(f.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	var report func(int64)
	if f.progress != nil {
		report = f.progress.add
	}
	n, err := copyProgress(ctx, out, io.LimitReader(resp.Body, limit+1), report)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", redacted(u), err)
	}
	if n > limit {
		return n, fmt.Errorf("GET %s: more than the %d bytes expected or free in the pool", redacted(u), limit)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("GET %s: %d bytes received of %d", redacted(u), n, resp.ContentLength)
	}
	return n, nil
}

// redacted hides the password of a URL's user information.
func redacted(u *url.URL) string { return u.Redacted() }

// copyProgress copies src to dst until EOF, stopping when ctx ends and
// reporting each write.
func copyProgress(ctx context.Context, dst io.Writer, src io.Reader, progress func(int64)) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, context.Cause(ctx)
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if progress != nil {
				progress(int64(w))
			}
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

// fileURL is the URL of a file beside a remote descriptor.
func fileURL(base *url.URL, name string) *url.URL {
	rel := &url.URL{Path: name}
	u := base.ResolveReference(rel)
	u.User = base.User
	return u
}

// fetch downloads a remote package into f.dir and returns the local path
// of the OVA or descriptor. A descriptor's files (and chunks) and its
// manifest are fetched beside it; their names are checked before.
func (f *fetcher) fetch(ctx context.Context, src source) (string, error) {
	name := path.Base(src.url.Path)
	if name == "" || name == "/" || name == "." || strings.ContainsAny(name, "\\\x00") {
		return "", errdefs.Invalidf("source %q does not name a file", src.raw)
	}
	if src.kind == kindOVA {
		if _, err := f.get(ctx, src.url, "package.ova", -1); err != nil {
			return "", err
		}
		return filepath.Join(f.dir, "package.ova"), nil
	}
	if _, err := f.get(ctx, src.url, name, ovf.DefaultLimits.MaxDescriptorBytes); err != nil {
		return "", err
	}
	desc := filepath.Join(f.dir, name)
	data, err := os.ReadFile(desc)
	if err != nil {
		return "", err
	}
	env, err := ovf.Parse(data, ovf.Options{})
	if err != nil {
		return "", packageError(fmt.Errorf("descriptor %s: %w", name, err))
	}
	mf := strings.TrimSuffix(name, path.Ext(name)) + ".mf"
	if _, err := f.get(ctx, fileURL(src.url, mf), mf, 1<<20); err != nil && !errors.Is(err, errNotFound) {
		return "", err
	}
	for _, file := range env.Files {
		if _, err := ovf.CleanHref(file.Href); err != nil {
			return "", packageError(fmt.Errorf("File %q: %w", file.ID, err))
		}
		for i, chunk := range file.ChunkNames() {
			clean, err := ovf.CleanHref(chunk)
			if err != nil {
				return "", packageError(fmt.Errorf("File %q: %w", file.ID, err))
			}
			limit := int64(-1)
			if file.SizeKnown {
				limit = file.ChunkLength(i)
			}
			if _, err := f.get(ctx, fileURL(src.url, clean), clean, limit); err != nil {
				if errors.Is(err, errNotFound) {
					return "", errdefs.Invalidf("File %q of the package: %v", file.ID, err)
				}
				return "", err
			}
		}
	}
	return desc, nil
}
