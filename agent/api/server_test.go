package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cimid/agent/cimi"
)

// noteService serves one editable resource, enough to exercise the
// server's generic behaviour.
type noteService struct{ name string }

func (n *noteService) Collections() []string             { return nil }
func (n *noteService) Metadata() []cimi.ResourceMetadata { return nil }
func (n *noteService) Routes() []Route {
	return []Route{
		{Method: http.MethodGet, Path: "/notes/1", Handler: func(rq *Request) (Reply, error) {
			return Reply{Body: &cimi.MachineImage{Common: cimi.Common{ResourceURI: cimi.TypeURI("MachineImage"), ID: rq.URLs.Abs("notes/1"), Name: n.name}}}, nil
		}},
		{Method: http.MethodPut, Path: "/notes/1", Handler: func(rq *Request) (Reply, error) {
			var body cimi.MachineImage
			if err := rq.Decode(&body, "MachineImage"); err != nil {
				return Reply{}, err
			}
			if body.Name == "panic" {
				panic("a handler fault")
			}
			n.name = body.Name
			return Reply{}, nil
		}},
		{Method: http.MethodPost, Path: "/notes/1/touch", Handler: func(rq *Request) (Reply, error) {
			n.name += "!"
			return Reply{Status: http.StatusAccepted}, nil
		}},
	}
}

func newTestServer() *Server {
	return NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), (&noteService{name: "a"}).Routes())
}

func serve(s *Server, method, path, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

func TestETagAndIfMatch(t *testing.T) {
	s := newTestServer()
	first := serve(s, "GET", "/cimi/notes/1", "")
	tag := first.Header().Get("ETag")
	if first.Code != 200 || tag == "" {
		t.Fatalf("GET: %d, ETag %q", first.Code, tag)
	}
	xtag := serve(s, "GET", "/cimi/notes/1?$format=xml", "").Header().Get("ETag")
	if xtag == "" || xtag == tag {
		t.Fatalf("XML and JSON representations share the ETag %q", tag)
	}
	if again := serve(s, "GET", "/cimi/notes/1", "").Header().Get("ETag"); again != tag {
		t.Fatal("the ETag of an unchanged resource changed")
	}
	if r := serve(s, "GET", "/cimi/notes/1", "", "If-None-Match", tag); r.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current tag: %d", r.Code)
	}
	if r := serve(s, "PUT", "/cimi/notes/1", `{"name":"b"}`, "If-Match", `"stale"`); r.Code != http.StatusPreconditionFailed {
		t.Fatalf("PUT with a stale If-Match: %d %s", r.Code, r.Body)
	}
	if r := serve(s, "PUT", "/cimi/notes/1", `{"name":"x"}`, "If-Match", xtag, "Accept", "application/xml"); r.Code != 200 {
		t.Fatalf("PUT with the current XML tag, reading XML: %d %s", r.Code, r.Body)
	}
	tag = serve(s, "GET", "/cimi/notes/1", "").Header().Get("ETag")
	if r := serve(s, "PUT", "/cimi/notes/1", `{"name":"b"}`, "If-Match", tag); r.Code != 200 {
		t.Fatalf("PUT with the current If-Match: %d %s", r.Code, r.Body)
	}
	// the first writer changed it: the second, holding the old tag, is refused
	if r := serve(s, "PUT", "/cimi/notes/1", `{"name":"c"}`, "If-Match", tag); r.Code != http.StatusPreconditionFailed {
		t.Fatalf("second writer with the old tag: %d", r.Code)
	}
	// an action is checked against the resource it belongs to
	newTag := serve(s, "GET", "/cimi/notes/1", "").Header().Get("ETag")
	if r := serve(s, "POST", "/cimi/notes/1/touch", "", "If-Match", tag); r.Code != http.StatusPreconditionFailed {
		t.Fatalf("action with an old tag: %d", r.Code)
	}
	if r := serve(s, "POST", "/cimi/notes/1/touch", "", "If-Match", newTag); r.Code != http.StatusAccepted {
		t.Fatalf("action with the current tag: %d %s", r.Code, r.Body)
	}
}

func TestURLsPath(t *testing.T) {
	u := URLs{base: "http://localhost/cimi/"}
	cases := map[string]string{
		"http://localhost/cimi/machines/1":   "machines/1",
		"https://other:8443/cimi/machines/1": "machines/1",
		"machines/1":                         "machines/1",
		"/cimi/machines/1/":                  "machines/1",
		" machines/1 ":                       "machines/1",
	}
	for in, want := range cases {
		if got, ok := u.Path(in); !ok || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := u.Path("http://elsewhere/api/machines/1"); ok {
		t.Error("an href outside /cimi/ was accepted")
	}
}

// A handler that panics while it holds a resource's If-Match lock lets it
// go: the next conditional write is served.
func TestIfMatchLockSurvivesPanic(t *testing.T) {
	s := newTestServer()
	tag := serve(s, "GET", "/cimi/notes/1", "").Header().Get("ETag")
	func() {
		defer func() { recover() }() // as net/http does for a connection
		serve(s, "PUT", "/cimi/notes/1", `{"name":"panic"}`, "If-Match", tag)
	}()
	done := make(chan int)
	go func() { done <- serve(s, "PUT", "/cimi/notes/1", `{"name":"after"}`, "If-Match", tag).Code }()
	select {
	case code := <-done:
		if code != http.StatusOK {
			t.Fatalf("conditional write after a panic: %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the conditional write after a panic waits for the lock the panic held")
	}
}

func TestNameRoutes(t *testing.T) {
	s := newTestServer()
	var named []string
	s.NameRoutesWith(func(r *http.Request, template string) { named = append(named, r.Method+" "+template) })
	serve(s, "GET", "/cimi/notes/1", "")
	serve(s, "POST", "/cimi/notes/1/touch", "")
	serve(s, "GET", "/cimi/nothing/here", "")
	if want := []string{"GET /cimi/notes/1", "POST /cimi/notes/1/touch"}; strings.Join(named, ",") != strings.Join(want, ",") {
		t.Errorf("named %q, want %q (a request no route matched is not named)", named, want)
	}
}
