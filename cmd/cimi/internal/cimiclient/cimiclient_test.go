package cimiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCollectionMembers(t *testing.T) {
	tests := []struct {
		name, doc string
		key       string
		ids       []string
		wantErr   string
	}{
		{
			name: "configurations",
			doc: `{"resourceURI":"x/MachineConfigurationCollection","id":"c","count":1,
				"machineConfigurations":[{"id":"http://h/cimi/machineConfigs/small","cpu":2}],
				"operations":[{"rel":"add","href":"http://h/cimi/machineConfigs"}]}`,
			key: "machineConfigurations",
			ids: []string{"http://h/cimi/machineConfigs/small"},
		},
		{
			name: "empty",
			doc:  `{"resourceURI":"x/JobCollection","id":"j","count":0}`,
		},
		{
			name:    "ambiguous",
			doc:     `{"id":"j","a":[],"b":[]}`,
			wantErr: "several member arrays: a, b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Collection
			err := json.Unmarshal([]byte(tt.doc), &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MemberKey != tt.key || len(c.Members) != len(tt.ids) {
				t.Fatalf("key %q with %d members, want %q with %d", c.MemberKey, len(c.Members), tt.key, len(tt.ids))
			}
			for i, id := range tt.ids {
				if c.Members[i].ID != id {
					t.Errorf("member %d id = %q, want %q", i, c.Members[i].ID, id)
				}
			}
		})
	}
}

func TestResourceAttributes(t *testing.T) {
	var r Resource
	doc := `{"id":"http://h/cimi/machines/m1","state":"STARTED","memory":4194304,
		"machineConfig":{"href":"http://h/cimi/machineConfigs/small"},
		"operations":[{"rel":"edit","href":"e"},{"rel":"http://schemas.dmtf.org/cimi/1/action/stop","href":"s"}]}`
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	if n, ok := r.Int("memory"); !ok || n != 4194304 {
		t.Errorf("memory = %d, %v", n, ok)
	}
	if got := r.Href("machineConfig"); got != "http://h/cimi/machineConfigs/small" {
		t.Errorf("machineConfig href = %q", got)
	}
	if op, ok := r.Operations.Find("stop"); !ok || op.Href != "s" {
		t.Errorf("Find(stop) = %v, %v", op, ok)
	}
	if _, ok := r.Operations.Find("start"); ok {
		t.Error("Find(start) found an operation")
	}
	if got := strings.Join(r.Operations.Names(), ","); got != "stop" {
		t.Errorf("Names = %q", got)
	}
	if string(r.Raw) != doc {
		t.Error("Raw does not hold the document")
	}
}

func TestEndpointURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://h:8443":                      "https://h:8443/cimi/cloudEntryPoint",
		"https://h:8443/":                     "https://h:8443/cimi/cloudEntryPoint",
		"https://h:8443/cimi/":                "https://h:8443/cimi/cloudEntryPoint",
		"https://h:8443/cimi/cloudEntryPoint": "https://h:8443/cimi/cloudEntryPoint",
		"https://h/agent/":                    "https://h/agent/cimi/cloudEntryPoint",
	} {
		u, err := endpointURL(in)
		if err != nil || u.String() != want {
			t.Errorf("endpointURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"h:8443", "ftp://h/", "https:///x"} {
		if _, err := endpointURL(bad); err == nil {
			t.Errorf("endpointURL(%q) succeeded", bad)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct{ ct, body, want string }{
		{"application/json", `{"state":"FAILED","statusMessage":"no such machine"}`, "no such machine"},
		{"application/xml", `<Job xmlns="http://schemas.dmtf.org/cimi/1"><statusMessage>bad filter</statusMessage></Job>`, "bad filter"},
		{"text/plain; charset=utf-8", "404 page not found\nmore", "404 page not found"},
		{"application/json", `not json`, ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := errorMessage(tt.ct, []byte(tt.body)); got != tt.want {
			t.Errorf("errorMessage(%q, %q) = %q, want %q", tt.ct, tt.body, got, tt.want)
		}
	}
}

func TestOriginCheck(t *testing.T) {
	c, err := New(Config{URL: "https://h.example:443/"})
	if err != nil {
		t.Fatal(err)
	}
	for href, ok := range map[string]bool{
		"https://h.example/cimi/jobs":      true,
		"https://H.EXAMPLE:443/cimi/jobs":  true,
		"http://h.example/cimi/jobs":       false,
		"https://h.example:8443/cimi/jobs": false,
		"https://evil.example/cimi/jobs":   false,
	} {
		if _, err := c.checkHref(href); (err == nil) != ok {
			t.Errorf("checkHref(%q) error = %v, want ok=%v", href, err, ok)
		}
	}
}

func TestPrefixOf(t *testing.T) {
	for in, want := range map[string]string{
		"http://schemas.dmtf.org/cimi/2/Machine": "http://schemas.dmtf.org/cimi/2",
		"http://schemas.dmtf.org/cimi/1/Job":     "http://schemas.dmtf.org/cimi/1",
		"":                                       DefaultPrefix,
	} {
		if got := PrefixOf(in); got != want {
			t.Errorf("PrefixOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// WaitJob asks the agent to hold each reading until the Job ends; when the
// agent does, the next reading follows at once rather than after the
// polling interval.
func TestWaitJobUsesPreferWait(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := gets.Add(1)
		if r.Header.Get("Prefer") != "wait=1" {
			t.Errorf("GET %d asked Prefer %q", n, r.Header.Get("Prefer"))
		}
		state := "RUNNING"
		if n == 3 {
			state = "SUCCESS"
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Preference-Applied", "wait=1")
		fmt.Fprintf(w, `{"resourceURI":"http://schemas.dmtf.org/cimi/1/Job","id":"%s/cimi/jobs/1","state":%q,"progress":%d}`, "http://"+r.Host, state, 40*n)
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seen []int
	j, err := c.WaitJob(ctx, srv.URL+"/cimi/jobs/1", time.Hour, func(j *Job) { seen = append(seen, j.Progress) })
	if err != nil || j.State != "SUCCESS" || len(seen) != 3 {
		t.Fatalf("job %+v after readings %v: %v", j, seen, err)
	}
}
