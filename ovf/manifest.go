package ovf

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strings"
)

// Manifest is a parsed .mf file.
type Manifest struct {
	Entries []ManifestEntry
	// Warnings lists lines that were not understood.
	Warnings []string
}

// ManifestEntry is one "ALGO(name)= hex" line. Algorithm is normalised to
// SHA1, SHA256 or SHA512, or kept as written when unknown; Digest is
// lower-case hex.
type ManifestEntry struct {
	Algorithm string
	Name      string
	Digest    string
	Line      int
}

var manifestLine = regexp.MustCompile(`^\s*([A-Za-z0-9-]+)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$`)

// maxManifestBytes caps the size of a manifest.
const maxManifestBytes = 4 << 20

// ParseManifest reads a manifest. It accepts the variants met in real
// packages: spaces around '(' and '=', CRLF line ends, upper-case hex,
// blank lines and the SHA2-256 / SHA-256 spellings. Lines it cannot
// parse become warnings; the same file listed twice with different
// digests is an error.
func ParseManifest(r io.Reader) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(data) > maxManifestBytes {
		return nil, unsafef(0, "manifest is larger than %d bytes", maxManifestBytes)
	}
	m := &Manifest{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxManifestBytes)
	seen := map[string]ManifestEntry{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		g := manifestLine.FindStringSubmatch(line)
		if g == nil {
			m.Warnings = append(m.Warnings, fmt.Sprintf("manifest line %d is not of the form ALGO(name)= digest; ignored", n))
			continue
		}
		e := ManifestEntry{Algorithm: normaliseAlgorithm(g[1]), Name: strings.TrimSpace(g[2]), Digest: strings.ToLower(g[3]), Line: n}
		if prev, dup := seen[e.Name]; dup {
			if prev.Algorithm == e.Algorithm && prev.Digest == e.Digest {
				continue
			}
			if prev.Algorithm == e.Algorithm {
				return nil, invalidf(0, "manifest lists %q twice with different digests (lines %d and %d)", e.Name, prev.Line, n)
			}
		}
		seen[e.Name] = e
		m.Entries = append(m.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, invalidf(0, "manifest: %v", err)
	}
	return m, nil
}

func normaliseAlgorithm(a string) string {
	switch strings.ToUpper(a) {
	case "SHA1", "SHA-1":
		return "SHA1"
	case "SHA256", "SHA-256", "SHA2-256":
		return "SHA256"
	case "SHA512", "SHA-512", "SHA2-512":
		return "SHA512"
	}
	return a
}

// newHash returns the hash of a normalised algorithm name.
func newHash(alg string) (hash.Hash, bool) {
	switch alg {
	case "SHA1":
		return sha1.New(), true
	case "SHA256":
		return sha256.New(), true
	case "SHA512":
		return sha512.New(), true
	}
	return nil, false
}

// Lookup returns the strongest entry for a file name.
func (m *Manifest) Lookup(name string) (ManifestEntry, bool) {
	var best ManifestEntry
	found := false
	rank := map[string]int{"SHA512": 3, "SHA256": 2, "SHA1": 1}
	for _, e := range m.Entries {
		if e.Name == name && (!found || rank[e.Algorithm] > rank[best.Algorithm]) {
			best, found = e, true
		}
	}
	return best, found
}

// Algorithm returns the algorithm of the manifest's entries, or "mixed".
func (m *Manifest) Algorithm() string {
	alg := ""
	for _, e := range m.Entries {
		if alg != "" && e.Algorithm != alg {
			return "mixed"
		}
		alg = e.Algorithm
	}
	return alg
}

// check verifies a digest computed by a verifier against an entry.
func (e ManifestEntry) check(name string, sum []byte) error {
	actual := hex.EncodeToString(sum)
	if actual != e.Digest {
		return integrityf("%s of %q does not match the manifest (line %d): expected %s, got %s", e.Algorithm, name, e.Line, e.Digest, actual)
	}
	return nil
}

// verifier hashes data as it is read and, at EOF, checks the digest and
// the number of bytes.
type verifier struct {
	r     io.Reader
	name  string
	entry *ManifestEntry
	h     hash.Hash
	want  int64
	n     int64
	done  bool
}

// newVerifier wraps r. entry may be nil (nothing to check but the size);
// want < 0 means the size is not known.
func newVerifier(r io.Reader, name string, entry *ManifestEntry, want int64) (*verifier, error) {
	v := &verifier{r: r, name: name, entry: entry, want: want}
	if entry != nil {
		h, ok := newHash(entry.Algorithm)
		if !ok {
			return nil, unsupportedf(0, "manifest line %d uses unknown algorithm %q for %q", entry.Line, entry.Algorithm, name)
		}
		if len(entry.Digest) != h.Size()*2 {
			return nil, invalidf(0, "manifest line %d: %s digest of %q has %d hex digits, expected %d", entry.Line, entry.Algorithm, name, len(entry.Digest), h.Size()*2)
		}
		v.h = h
	}
	return v, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.done {
		return 0, io.EOF
	}
	if v.want >= 0 && int64(len(p)) > v.want-v.n+1 {
		p = p[:v.want-v.n+1]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if v.want >= 0 && v.n > v.want {
		return n, integrityf("%q is larger than its declared %d bytes", v.name, v.want)
	}
	if err == io.EOF {
		v.done = true
		if v.want >= 0 && v.n != v.want {
			return n, integrityf("%q has %d bytes, expected %d", v.name, v.n, v.want)
		}
		if v.h != nil {
			if cerr := v.entry.check(v.name, v.h.Sum(nil)); cerr != nil {
				return n, cerr
			}
		}
	}
	return n, err
}

// ManifestWriter accumulates SHA256 digests and writes a manifest in the
// canonical "SHA256(name)= hex" form.
type ManifestWriter struct {
	lines []ManifestEntry
}

// Add records the digest of a file.
func (w *ManifestWriter) Add(name string, sha256sum []byte) {
	w.lines = append(w.lines, ManifestEntry{Algorithm: "SHA256", Name: name, Digest: hex.EncodeToString(sha256sum)})
}

// Bytes returns the manifest, one line per file in the order added.
func (w *ManifestWriter) Bytes() []byte {
	var b bytes.Buffer
	for _, e := range w.lines {
		fmt.Fprintf(&b, "%s(%s)= %s\n", e.Algorithm, e.Name, e.Digest)
	}
	return b.Bytes()
}
