package resource

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/store"
)

func putRequest(t *testing.T, query string) *api.Request {
	t.Helper()
	return &api.Request{Request: httptest.NewRequest(http.MethodPut, "/cimi/things/1"+query, nil)}
}

func TestSelected(t *testing.T) {
	for _, c := range []struct {
		query   string
		names   []string
		present bool
	}{
		{"", nil, false},
		{"?$select=", nil, true},
		{"?$select=name,%20description&$select=properties", []string{"name", "description", "properties"}, true},
	} {
		names, present := Selected(putRequest(t, c.query))
		if strings.Join(names, ",") != strings.Join(c.names, ",") || (names == nil) != (c.names == nil) || present != c.present {
			t.Errorf("%q: got %q %v, want %q %v", c.query, names, present, c.names, c.present)
		}
	}
}

func TestCheckSelected(t *testing.T) {
	if err := CheckSelected([]string{"name", "capacity"}, "capacity"); err != nil {
		t.Fatalf("an extra writable attribute: %v", err)
	}
	err := CheckSelected([]string{"name", "state"})
	want := `$select names "state", which cannot be updated (writable: name, description, properties)`
	if !errdefs.Is(err, errdefs.Invalid) || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// Every PUT reads its $select by one rule: none is a full update; any,
// even one naming nothing, a partial update of what it names; a name that
// cannot be updated is refused before anything is read.
func TestUpdateSelection(t *testing.T) {
	for _, c := range []struct {
		query string
		want  []string // nil: a full update
		bad   bool
	}{
		{"", nil, false},
		{"?$select=", []string{}, false},
		{"?$select=name,properties", []string{"name", "properties"}, false},
		{"?$select=capacity", nil, true},
		{"?$select=name,state", nil, true},
	} {
		got, err := UpdateSelection(putRequest(t, c.query))
		if c.bad {
			if !errdefs.Is(err, errdefs.Invalid) {
				t.Errorf("%q: got %q %v, want it refused", c.query, got, err)
			}
			continue
		}
		if err != nil || (got == nil) != (c.want == nil) || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%q: got %q %v, want %q", c.query, got, err, c.want)
		}
	}
	if got, err := UpdateSelection(putRequest(t, "?$select=capacity"), "capacity"); err != nil || len(got) != 1 {
		t.Errorf("an extra writable attribute: %q %v", got, err)
	}
}

func TestApplyUpdate(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	old := Meta{ID: "1", Name: "old", Description: "was", Properties: map[string]string{"a": "b"}}

	m := old
	if err := ApplyUpdate(&m, cimi.Common{Name: "new"}, nil, now); err != nil {
		t.Fatal(err)
	}
	if m.Name != "new" || m.Description != "" || m.Properties != nil || !m.Updated.Equal(now) {
		t.Fatalf("a full update gave %+v", m)
	}

	m = old
	if err := ApplyUpdate(&m, cimi.Common{Description: "now"}, []string{"description"}, now); err != nil {
		t.Fatal(err)
	}
	if m.Name != "old" || m.Description != "now" || m.Properties["a"] != "b" {
		t.Fatalf("a partial update gave %+v", m)
	}

	m = old
	err := ApplyUpdate(&m, cimi.Common{Name: "new"}, []string{}, now)
	if !errdefs.Is(err, errdefs.Invalid) || m.Name != "old" {
		t.Fatalf("a body carrying an attribute $select does not name: %v, %+v", err, m)
	}

	// a $select naming nothing changes nothing
	m = old
	if err := ApplyUpdate(&m, cimi.Common{}, []string{}, now); err != nil || m.Name != "old" || m.Description != "was" || m.Properties["a"] != "b" {
		t.Fatalf("an empty $select: %v, %+v", err, m)
	}

	// a name is kept without the space around it, as on create
	for _, selected := range [][]string{nil, {"name"}} {
		m = old
		if err := ApplyUpdate(&m, cimi.Common{Name: "  spaced \t"}, selected, now); err != nil || m.Name != "spaced" {
			t.Fatalf("a name with spaces (selected %q): %v, %q", selected, err, m.Name)
		}
	}
}

// thing is a record of the test kind.
type thing struct {
	Meta
	User  string `json:"user"`
	InUse bool   `json:"inUse,omitempty"`
}

func TestKind(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	k := Kind[thing, cimi.Credential]{
		Backend: Backend{DB: db, Jobs: job.NewRunner(db, log, job.Options{}), Now: func() time.Time { return now }},
		Kind:    "credentials", Type: "Credential", MemberKey: "credentials",
		Doc: func(u api.URLs, c thing) *cimi.Credential {
			return &cimi.Credential{Common: CommonDoc(u, "Credential", "credentials/"+c.ID, c.Meta), UserName: c.User}
		},
		Meta: func(c *thing) *Meta { return &c.Meta },
		InUse: func(_ *store.Tx, c thing) error {
			if c.InUse {
				return errdefs.Conflictf("Credential %s is in use", c.ID)
			}
			return nil
		},
	}
	if err := k.Seed([]thing{{Meta: Meta{ID: "given", Name: "given"}, InUse: true}}); err != nil {
		t.Fatal(err)
	}
	create := func(rq *api.Request) (api.Reply, error) {
		return k.Create(rq, func(_ *store.Tx, id string) (thing, error) {
			return thing{Meta: NewMeta(id, " made ", "", nil, now), User: "u"}, nil
		})
	}
	srv := api.NewServer(log, k.Routes(create, k.Delete))
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		var doc map[string]any
		if w.Body.Len() > 0 {
			if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
			}
		}
		return w.Code, doc
	}

	code, doc := do(http.MethodPost, "/cimi/credentials", `{"resourceURI": "http://schemas.dmtf.org/cimi/1/CredentialCreate"}`)
	if code != http.StatusCreated || doc["name"] != "made" || doc["userName"] != "u" {
		t.Fatalf("create: %d %v", code, doc)
	}
	id := doc["id"].(string)[strings.LastIndex(doc["id"].(string), "/")+1:]

	code, doc = do(http.MethodGet, "/cimi/credentials", "")
	if code != http.StatusOK || doc["count"] != float64(2) {
		t.Fatalf("list: %d %v", code, doc)
	}

	code, _ = do(http.MethodPut, "/cimi/credentials/"+id+"?$select=description",
		`{"resourceURI": "http://schemas.dmtf.org/cimi/1/Credential", "description": "edited"}`)
	if code != http.StatusOK {
		t.Fatalf("update: %d", code)
	}
	rec, err := records.View[thing](db, "credentials", id, "Credential")
	if err != nil || rec.Name != "made" || rec.Description != "edited" {
		t.Fatalf("after the update: %+v, %v", rec, err)
	}
	if code, _ = do(http.MethodPut, "/cimi/credentials/"+id+"?$select=user", `{"resourceURI": "http://schemas.dmtf.org/cimi/1/Credential"}`); code != http.StatusBadRequest {
		t.Fatalf("update of an attribute that is not writable: %d", code)
	}

	if code, _ = do(http.MethodDelete, "/cimi/credentials/given", ""); code != http.StatusConflict {
		t.Fatalf("delete of a record in use: %d", code)
	}
	if code, _ = do(http.MethodDelete, "/cimi/credentials/"+id, ""); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	if _, err := records.View[thing](db, "credentials", id, "Credential"); !errdefs.Is(err, errdefs.NotFound) {
		t.Fatalf("the record outlived its delete: %v", err)
	}
	if code, _ = do(http.MethodGet, "/cimi/credentials/"+id, ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
}

func TestLookup(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	urls := api.URLsFor(httptest.NewRequest(http.MethodGet, "/cimi/", nil))
	err = db.Update(func(tx *store.Tx) error {
		if err := records.Put(tx, "things", "a", thing{Meta: Meta{ID: "a"}}); err != nil {
			return err
		}
		if got, err := Lookup[thing](tx, urls, urls.Abs("things/a"), "things", "Thing"); err != nil || got.ID != "a" {
			return errors.Join(errors.New("a stored record"), err)
		}
		if _, err := Lookup[thing](tx, urls, urls.Abs("things/b"), "things", "Thing"); !errdefs.Is(err, errdefs.Invalid) {
			return errors.Join(errors.New("a record that does not exist is a bad request"), err)
		}
		if _, err := Lookup[thing](tx, urls, urls.Abs("others/a"), "things", "Thing"); !errdefs.Is(err, errdefs.Invalid) {
			return errors.Join(errors.New("an href into another collection is a bad request"), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
