package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"

	"cimid/agent/cimi"
	"cimid/agent/errdefs"
)

// etagOf is a strong validator of one representation: a hash of the bytes
// sent, tagged with their format.
func etagOf(f cimi.Format, body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + f.String() + "-" + hex.EncodeToString(sum[:12]) + `"`
}

// etagListMatches implements the comparison of If-Match / If-None-Match.
func etagListMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		c := strings.TrimSpace(candidate)
		if c == "*" || strings.TrimPrefix(c, "W/") == etag {
			return true
		}
	}
	return false
}

// checkIfMatch compares If-Match with the current ETag of the resource the
// request acts on: the path itself, or for an action the resource it
// belongs to. On success it returns with the resource's write lock held.
func (s *Server) checkIfMatch(r *http.Request, ifMatch string) (unlock func(), err error) {
	target := r.URL.Path
	current, ok := s.currentETag(r, target)
	if !ok && r.Method == http.MethodPost {
		target = path.Dir(target)
		current, ok = s.currentETag(r, target)
	}
	if !ok {
		return nil, errdefs.New(errdefs.PreconditionFailed, "If-Match: %s has no current representation to compare with", r.URL.Path)
	}
	unlock = s.preconditions.lock(target)
	// read again under the lock: the tag compared is the one the change meets
	current, ok = s.currentETag(r, target)
	if !ok || !etagListMatches(ifMatch, current) {
		unlock()
		return nil, errdefs.New(errdefs.PreconditionFailed, "If-Match %s does not match the current ETag %s of %s: it changed since it was read", ifMatch, current, target)
	}
	return unlock, nil
}

// currentETag renders the resource at p as a GET would.
func (s *Server) currentETag(orig *http.Request, p string) (string, bool) {
	// the tag to compare is the one of the representation this client reads
	f, err := cimi.Negotiate(orig.URL.Query().Get("$format"), orig.Header.Get("Accept"))
	if err != nil {
		f = cimi.JSON
	}
	rec := s.internalGet(orig, p, f)
	if rec.Code != http.StatusOK {
		return "", false
	}
	tag := rec.Header().Get("ETag")
	return tag, tag != ""
}

// keyedMutex is a set of mutexes by key, created on demand and dropped
// when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu    sync.Mutex
	users int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.users++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// internalGet serves a GET of path inside the agent, on behalf of orig,
// in format f.
func (s *Server) internalGet(orig *http.Request, p string, f cimi.Format) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, p, nil).WithContext(orig.Context())
	req.Host = orig.Host
	req.TLS = orig.TLS
	req.Header.Set("Accept", f.ContentType())
	rec := httptest.NewRecorder()
	s.router.ServeHTTP(rec, req)
	return rec
}
