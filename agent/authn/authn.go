// Package authn decides who is calling the agent and whether they may:
// the peer credentials of a unix socket connection (SO_PEERCRED: root, the
// agent's own user, or a member of the socket's group), a trusted client
// certificate on TLS, or a bearer token on TLS. It keeps the trusted
// certificates and the hashed tokens in files of the state directory,
// slows down clients that fail repeatedly, and writes the audit trail of
// refusals and state-changing requests.
package authn

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cimid/agent/api"
)

// Identity is an authenticated caller.
type Identity struct {
	Method string // "unix", "cert" or "token"
	Name   string // user name, client name or token name
	UID    int    // unix peers only; -1 otherwise
	ID     string // certificate fingerprint or token id
}

// String renders the identity for logs, e.g. "unix:alice(1000)".
func (i Identity) String() string {
	switch i.Method {
	case "unix":
		return fmt.Sprintf("unix:%s(%d)", i.Name, i.UID)
	case "cert":
		return "cert:" + i.Name
	case "token":
		return "token:" + i.Name + "(" + i.ID + ")"
	}
	return "anonymous"
}

type ctxKey int

const (
	identityKey ctxKey = iota
	connKey
)

// IdentityFrom returns the caller of an authenticated request.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey).(Identity)
	return id, ok
}

// connInfo is what the listener knows about a connection.
type connInfo struct {
	transport string // "unix", "tls" or "tcp"
	cred      *syscall.Ucred
	credErr   error
}

// ConnContext is the http.Server hook that records the transport of each
// connection and, on a unix socket, the peer's credentials as the kernel
// saw them at connect time.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	info := connInfo{transport: "tcp"}
	switch conn := c.(type) {
	case *net.UnixConn:
		info.transport = "unix"
		info.cred, info.credErr = peerCred(conn)
	case *tls.Conn:
		info.transport = "tls"
	}
	return context.WithValue(ctx, connKey, info)
}

func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}

// Options configure an Authenticator.
type Options struct {
	// Dir holds clients.json and tokens.json.
	Dir string
	// SocketGID is the group allowed on the unix socket; -1 when none.
	SocketGID int
	Audit     *Audit
	Limiter   *Limiter
	Now       func() time.Time
}

// Authenticator authenticates and authorizes requests.
type Authenticator struct {
	clients   *Clients
	tokens    *Tokens
	audit     *Audit
	limiter   *Limiter
	now       func() time.Time
	socketGID int
	selfUID   int
}

// New returns an Authenticator over the files in opts.Dir.
func New(opts Options) *Authenticator {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Limiter == nil {
		opts.Limiter = NewLimiter()
	}
	return &Authenticator{
		clients: OpenClients(opts.Dir), tokens: OpenTokens(opts.Dir), audit: opts.Audit, limiter: opts.Limiter,
		now: opts.Now, socketGID: opts.SocketGID, selfUID: os.Geteuid(),
	}
}

// refusal is why a request is turned away: what the client is told and
// what the log keeps.
type refusal struct {
	status int
	public string
	reason string
}

// Middleware authenticates every request before next sees it, answers
// 401 (TCP) or 403 (unix socket) otherwise, and audit-logs refusals and
// every state-changing request with its outcome and Job.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ref := a.identify(r)
		if ref != nil {
			a.refuse(w, r, ref)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey, id))
		if !changes(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		a.audit.Log(r.Context(), AuditRecord{
			Event: "request", Who: id.String(), UID: id.UID, Method: r.Method, Path: r.URL.Path, Status: rec.code(),
			Job: w.Header().Get("CIMI-Job-URI"), Location: w.Header().Get("Location"), Remote: r.RemoteAddr,
		})
	})
}

func changes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func (a *Authenticator) identify(r *http.Request) (Identity, *refusal) {
	info, _ := r.Context().Value(connKey).(connInfo)
	switch info.transport {
	case "unix":
		return a.identifyPeer(info)
	case "tls":
		if r.TLS == nil {
			return Identity{}, &refusal{status: http.StatusUnauthorized, public: "TLS required", reason: "TLS connection without TLS state"}
		}
		return a.identifyTLS(r)
	}
	return Identity{}, &refusal{status: http.StatusUnauthorized, public: "authentication required: use HTTPS", reason: "request on a connection that is neither TLS nor the unix socket"}
}

func (a *Authenticator) identifyPeer(info connInfo) (Identity, *refusal) {
	if info.cred == nil {
		return Identity{}, &refusal{status: http.StatusForbidden, public: "cannot determine who is connected to the socket",
			reason: fmt.Sprintf("no peer credentials: %v", info.credErr)}
	}
	uid := int(info.cred.Uid)
	id := Identity{Method: "unix", Name: userName(uid), UID: uid}
	if uid == 0 || uid == a.selfUID {
		return id, nil
	}
	if a.socketGID >= 0 && (int(info.cred.Gid) == a.socketGID || inGroup(int(info.cred.Pid), a.socketGID)) {
		return id, nil
	}
	return id, &refusal{status: http.StatusForbidden, public: fmt.Sprintf("user %s (uid %d) is not allowed to use this socket; ask for membership of the socket's group", id.Name, uid),
		reason: fmt.Sprintf("uid %d is neither root nor in group %d", uid, a.socketGID)}
}

func (a *Authenticator) identifyTLS(r *http.Request) (Identity, *refusal) {
	unauthorized := func(reason string) (Identity, *refusal) {
		return Identity{UID: -1}, &refusal{status: http.StatusUnauthorized,
			public: "authentication required: present a trusted client certificate or a valid bearer token", reason: reason}
	}
	if certs := r.TLS.PeerCertificates; len(certs) > 0 {
		fp := Fingerprint(certs[0].Raw)
		cl, ok, err := a.clients.Lookup(fp)
		if err != nil {
			return unauthorized("trusted clients unreadable: " + err.Error())
		}
		if !ok {
			return unauthorized("client certificate " + fp + " is no longer trusted")
		}
		return Identity{Method: "cert", Name: cl.Name, UID: -1, ID: fp}, nil
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return unauthorized("no client certificate and no Authorization header")
	}
	scheme, secret, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return unauthorized("Authorization header is not a bearer token")
	}
	tok, err := a.tokens.Verify(strings.TrimSpace(secret), a.now())
	if err != nil {
		return unauthorized(err.Error())
	}
	return Identity{Method: "token", Name: tok.Name, UID: -1, ID: tok.ID}, nil
}

func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	var delay time.Duration
	if ref.status == http.StatusUnauthorized {
		delay = a.limiter.Fail(hostOf(r.RemoteAddr))
	}
	a.audit.Log(r.Context(), AuditRecord{Event: "refused", Method: r.Method, Path: r.URL.Path, Status: ref.status,
		Remote: r.RemoteAddr, Reason: ref.reason, Delay: delay, UID: peerUID(r)})
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if ref.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cimid"`)
	}
	_ = api.WriteError(w, r, ref.status, ref.public)
}

func peerUID(r *http.Request) int {
	if info, ok := r.Context().Value(connKey).(connInfo); ok && info.cred != nil {
		return int(info.cred.Uid)
	}
	return -1
}

func userName(uid int) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return strconv.Itoa(uid)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.Itoa(uid)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) > 2 && fields[2] == want {
			return fields[0]
		}
	}
	return want
}

// inGroup reads the supplementary groups of the connected process. The
// process may be gone by now; then only its primary group counted.
func inGroup(pid, gid int) bool {
	if pid <= 0 {
		return false
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(rest) {
			if n, err := strconv.Atoi(g); err == nil && n == gid {
				return true
			}
		}
		return false
	}
	return false
}

// statusRecorder remembers the status a handler wrote and passes
// streaming through.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
