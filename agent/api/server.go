// Package api serves CIMI over HTTP: routes, content negotiation, request
// decoding and error mapping. Handlers are thin: they decode, validate,
// check the resource's state, and hand every change to a Job; reads are
// answered from the store. Nothing here calls the hypervisor.
package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"cimid/agent/cimi"
	"cimid/agent/cimi/query"
	"cimid/agent/errdefs"
	"cimid/agent/job"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// Route is one endpoint contributed by a service.
type Route struct {
	Method  string
	Path    string // below /cimi, gorilla/mux syntax, e.g. "/machines/{id}"
	Handler HandlerFunc
	// Stream, instead of Handler, serves a long-lived response (such as a
	// Server-Sent Events stream) directly.
	Stream http.Handler
}

// HandlerFunc answers one request.
type HandlerFunc func(rq *Request) (Reply, error)

// Reply is what a handler answers.
type Reply struct {
	Status   int    // default 200
	Body     any    // a cimi document, or nil for an empty body
	Location string // resource path (relative to the base URI) for the Location header
	JobID    string // set for state-changing requests: the CIMI-Job-URI header
	// ActsOnJob is set when JobID names the Job the request acts on (a
	// stop of a Job), not one it started: such an answer is never made
	// synchronous, since that Job's end is not the request's.
	ActsOnJob bool
	ETag      string
	// PreferenceApplied names the preferences of the Prefer header that
	// were honoured (RFC 7240).
	PreferenceApplied string
}

// Server is the HTTP side of the agent.
type Server struct {
	router *mux.Router
	log    *slog.Logger
	// preconditions serialises conditional writes per resource so that the
	// If-Match check and the change it guards happen as one step.
	preconditions keyedMutex
	jobs          JobWaiter
	nameRoute     func(r *http.Request, template string)
}

// NameRoutesWith has f told the template of the route that matched each
// request this server answers, for measurements.
func (s *Server) NameRoutesWith(f func(r *http.Request, template string)) { s.nameRoute = f }

// JobWaiter waits for a Job to end, or for ctx to end first.
type JobWaiter interface {
	Wait(ctx context.Context, id string) (job.Record, error)
}

// AnswerWhenDone lets a change sent with Prefer: wait=N (RFC 7240) be
// answered synchronously: when its Job succeeds within N seconds, the
// answer is 201 Created with the new resource, or 200 OK, instead of 202
// Accepted. A Job that fails, or runs longer, gets the usual 202, and the
// Job tells the rest.
func (s *Server) AnswerWhenDone(jobs JobWaiter) { s.jobs = jobs }

// NewServer builds the router from the routes every service contributes.
func NewServer(log *slog.Logger, routes ...[]Route) *Server {
	s := &Server{router: mux.NewRouter(), log: log}
	s.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errdefs.NotFoundf("no resource at %s", r.URL.Path))
	})
	s.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errdefs.New(errdefs.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	for _, list := range routes {
		for _, rt := range list {
			h := rt.Stream
			if h == nil {
				h = s.wrap(rt.Handler)
			}
			s.router.Handle("/cimi"+rt.Path, h).Methods(rt.Method)
		}
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("CIMI-Specification-Version", cimi.SpecVersion)
	if err := checkSpecVersion(r.Header.Get("CIMI-Specification-Version")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.router.ServeHTTP(w, r)
}

// checkSpecVersion accepts requests that name no version or at least one
// 1.x version; others get 400 listing what is served.
func checkSpecVersion(header string) error {
	if strings.TrimSpace(header) == "" {
		return nil
	}
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimSpace(v)
		if v == "1" || strings.HasPrefix(v, "1.0") || strings.HasPrefix(v, "1.1") {
			return nil
		}
	}
	return errdefs.Invalidf("CIMI-Specification-Version %q is not served; this provider serves 1.1.0 (and accepts 1.0.x requests)", header)
}

func (s *Server) wrap(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.nameRoute != nil {
			if route := mux.CurrentRoute(r); route != nil {
				if t, err := route.GetPathTemplate(); err == nil {
					s.nameRoute(r, t)
				}
			}
		}
		format, err := cimi.Negotiate(r.URL.Query().Get("$format"), r.Header.Get("Accept"))
		if err != nil {
			s.fail(w, r, errdefs.Wrap(errdefs.NotAcceptable, err))
			return
		}
		rq := &Request{Request: r, Vars: mux.Vars(r), Format: format, URLs: URLsFor(r)}
		var q *query.Query
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if q, err = query.Parse(r.URL.Query()); err != nil {
				s.fail(w, r, errdefs.Wrap(errdefs.Invalid, err))
				return
			}
		}
		rq.jsonMembers = format == cimi.JSON && !q.Reshapes()
		unlock := func() {}
		if ifMatch := r.Header.Get("If-Match"); ifMatch != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			held, err := s.checkIfMatch(r, ifMatch)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			unlock = sync.OnceFunc(held)
			defer unlock() // also when the handler panics
		}
		reply, err := h(rq)
		unlock() // the change is submitted: what it waits for is its Job
		if err == nil && reply.Status == http.StatusAccepted && !reply.ActsOnJob && r.Method != http.MethodGet {
			if wait, ok := preferredWait(r.Header.Values("Prefer")); ok && s.jobs != nil && reply.JobID != "" {
				if s.awaitJob(w, rq, &reply, min(wait, MaxJobWait)) {
					return
				}
			}
		}
		if err == nil && !q.Empty() {
			err = s.applyQuery(rq, q, &reply)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.write(w, rq, reply)
	})
}

// awaitJob waits up to wait for the Job of a change. When it succeeded, the
// reply becomes the synchronous one: a create answers 201 with the new
// resource as it is now, anything else 200 without a body. It reports
// whether it wrote the answer itself.
func (s *Server) awaitJob(w http.ResponseWriter, rq *Request, reply *Reply, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(rq.Context(), wait)
	defer cancel()
	rec, err := s.jobs.Wait(ctx, reply.JobID)
	reply.PreferenceApplied = "wait=" + strconv.Itoa(int(wait/time.Second))
	if err != nil || rec.State != job.Success {
		return false
	}
	if reply.Body == nil {
		reply.Status = http.StatusOK
		return false
	}
	reply.Status, reply.Body = http.StatusCreated, nil
	if reply.Location == "" {
		return false
	}
	current := s.read(rq, reply.Location)
	if current.status != http.StatusOK {
		return false // gone again already: the 201 says what was made
	}
	h := w.Header()
	for _, name := range []string{"Content-Type", "Content-Length", "ETag"} {
		if v := current.header.Get(name); v != "" {
			h.Set(name, v)
		}
	}
	h.Set("Location", rq.URLs.Abs(reply.Location))
	h.Set("CIMI-Job-URI", rq.URLs.Abs("jobs/"+reply.JobID))
	h.Set("Preference-Applied", reply.PreferenceApplied)
	w.WriteHeader(http.StatusCreated)
	if _, err := w.Write(current.body.Bytes()); err != nil {
		s.log.Debug("write response", "path", rq.URL.Path, "err", err)
	}
	return true
}

// read serves a GET of path (relative to the base URI) in the format of
// rq, for the answer to rq.
func (s *Server) read(rq *Request, path string) *recordedResponse {
	get := rq.Request.Clone(rq.Context())
	get.Method, get.Body, get.ContentLength = http.MethodGet, http.NoBody, 0
	get.URL.Path, get.URL.RawPath = "/cimi/"+strings.TrimPrefix(path, "/"), ""
	// The query options that shape a representation apply to the one
	// answered.
	kept := url.Values{}
	for _, name := range []string{"$format", "$select", "$expand"} {
		if v, ok := rq.URL.Query()[name]; ok {
			kept[name] = v
		}
	}
	get.URL.RawQuery = kept.Encode()
	for _, name := range []string{"If-Match", "If-None-Match", "Prefer", "Content-Type"} {
		get.Header.Del(name)
	}
	rec := &recordedResponse{header: http.Header{}}
	s.router.ServeHTTP(rec, get)
	return rec
}

// recordedResponse keeps a response in memory.
type recordedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recordedResponse) Header() http.Header { return r.header }

func (r *recordedResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recordedResponse) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

func (s *Server) write(w http.ResponseWriter, rq *Request, reply Reply) {
	h := w.Header()
	if reply.Location != "" {
		h.Set("Location", rq.URLs.Abs(reply.Location))
	}
	if reply.JobID != "" {
		h.Set("CIMI-Job-URI", rq.URLs.Abs("jobs/"+reply.JobID))
	}
	if reply.PreferenceApplied != "" {
		h.Set("Preference-Applied", reply.PreferenceApplied)
	}
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	var body bytes.Buffer
	if sized, ok := reply.Body.(interface{ SizeHint() int }); ok && rq.Format == cimi.JSON {
		body.Grow(sized.SizeHint())
	}
	if reply.Body != nil {
		if err := cimi.Encode(&body, rq.Format, reply.Body); err != nil {
			s.log.Error("encode response", "path", rq.URL.Path, "err", err)
			s.fail(w, rq.Request, fmt.Errorf("encode response: %w", err))
			return
		}
		if reply.ETag == "" && status == http.StatusOK && (rq.Method == http.MethodGet || rq.Method == http.MethodHead) {
			reply.ETag = etagOf(rq.Format, body.Bytes())
		}
	}
	if reply.ETag != "" {
		h.Set("ETag", reply.ETag)
		if inm := rq.Header.Get("If-None-Match"); inm != "" && etagListMatches(inm, reply.ETag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if reply.Body == nil {
		h.Set("Content-Length", "0")
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", rq.Format.ContentType())
	h.Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(status)
	if rq.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(body.Bytes()); err != nil {
		s.log.Debug("write response", "path", rq.URL.Path, "err", err)
	}
}

// fail answers with the CIMI error document: a failed Job describing what
// was wrong.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := errdefs.HTTPStatus(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if werr := WriteError(w, r, status, msg); werr != nil {
		s.log.Error("write error response", "err", werr)
	}
}

// WriteError answers with the CIMI error document, a failed Job saying
// what was wrong, in the format the client asked for (JSON when it asked
// for one this agent does not speak).
func WriteError(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	format, nerr := cimi.Negotiate(r.URL.Query().Get("$format"), r.Header.Get("Accept"))
	if nerr != nil {
		format = cimi.JSON // a 406 still needs a readable body
	}
	urls := URLsFor(r)
	body := &cimi.Job{
		Common:         cimi.Common{ResourceURI: cimi.TypeURI("Job")},
		State:          cimi.JobFailed,
		Action:         actionOf(r),
		ReturnCode:     status,
		Progress:       100,
		StatusMessage:  msg,
		TargetResource: cimi.NewRef(urls.Base() + strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/cimi"), "/")),
	}
	w.Header().Set("Content-Type", format.ContentType())
	w.Header().Set("CIMI-Specification-Version", cimi.SpecVersion)
	w.WriteHeader(status)
	return cimi.Encode(w, format, body)
}

func actionOf(r *http.Request) string {
	switch r.Method {
	case http.MethodPost:
		return cimi.RelAdd
	case http.MethodPut:
		return cimi.RelEdit
	case http.MethodDelete:
		return cimi.RelDelete
	}
	return ""
}

// Request is a decoded HTTP request as handlers see it.
type Request struct {
	*http.Request
	Vars   map[string]string
	Format cimi.Format
	URLs   URLs

	jsonMembers bool
}

// JSONMembers tells whether a collection reply may carry its members as
// JSON documents alone (cimi.Collection.MemberJSON, without Members): the
// reply is JSON, and no query parameter reshapes the members ($filter,
// $orderby and paging only choose and order them).
func (rq *Request) JSONMembers() bool { return rq.jsonMembers }

// Body reads the request body within MaxBodyBytes.
func (rq *Request) Body() ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, rq.Request.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errdefs.New(errdefs.TooLarge, "request body exceeds %d bytes", MaxBodyBytes)
		}
		return nil, errdefs.Invalidf("read request body: %v", err)
	}
	return b, nil
}

// Decode reads and parses the body into v, accepting the given document
// types (XML root element or JSON resourceURI).
func (rq *Request) Decode(v any, types ...string) error {
	body, err := rq.Body()
	if err != nil {
		return err
	}
	f, err := cimi.BodyFormat(rq.Header.Get("Content-Type"), body)
	if err != nil {
		return errdefs.Wrap(errdefs.UnsupportedMedia, err)
	}
	if err := cimi.DecodeRequest(body, f, v, types...); err != nil {
		return errdefs.Wrap(errdefs.Invalid, err)
	}
	return nil
}

// DecodeAction reads an Action body and checks that it names want (the
// action URI; a short name is accepted too, surrounding space ignored).
func (rq *Request) DecodeAction(want string) (cimi.Action, error) {
	var a cimi.Action
	if err := rq.Decode(&a, "Action"); err != nil {
		return a, err
	}
	got := strings.TrimSpace(a.Action)
	if got != "" && got != cimi.ActionURI(want) && got != want {
		return a, errdefs.Invalidf("action %q was sent to the %s operation; expected %s", got, want, cimi.ActionURI(want))
	}
	return a, nil
}

// URLs turns resource paths into absolute URIs for one request.
type URLs struct{ base string }

// URLsFor derives the base URI from the request: scheme, Host, "/cimi/".
func URLsFor(r *http.Request) URLs {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return URLs{base: fmt.Sprintf("%s://%s/cimi/", scheme, host)}
}

// Base is the CloudEntryPoint's baseURI.
func (u URLs) Base() string { return u.base }

// Abs returns the absolute URI of a resource path such as "jobs/1".
func (u URLs) Abs(path string) string {
	if path == "" {
		return ""
	}
	return u.base + strings.TrimPrefix(path, "/")
}

// Path turns an href from a request (absolute, or relative to the base URI)
// into a resource path such as "machineImages/abc"; ok is false when the
// href does not point into this provider.
func (u URLs) Path(href string) (string, bool) {
	href = strings.TrimSpace(href)
	if href == "" {
		return "", false
	}
	if i := strings.Index(href, "://"); i >= 0 {
		rest := href[i+3:]
		j := strings.Index(rest, "/cimi/")
		if j < 0 {
			return "", false
		}
		return strings.Trim(rest[j+len("/cimi/"):], "/"), true
	}
	href = strings.TrimPrefix(href, "/")
	href = strings.TrimPrefix(href, "cimi/")
	return strings.Trim(href, "/"), true
}
