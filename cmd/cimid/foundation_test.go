package main

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestEntryPointJSONAndXML(t *testing.T) {
	d := startDaemon(t, newStateDir(t))

	r := d.get("cloudEntryPoint")
	if r.Status != 200 || r.Header.Get("CIMI-Specification-Version") != "1.1.0" {
		t.Fatalf("GET entry point: %d %v", r.Status, r.Header)
	}
	cep := r.JSON(t)
	if cep["resourceURI"] != "http://schemas.dmtf.org/cimi/1/CloudEntryPoint" || cep["baseURI"] != "http://localhost/cimi/" {
		t.Fatalf("entry point: %v", cep)
	}
	for _, key := range []string{"jobs", "resourceMetadata"} {
		ref, _ := cep[key].(map[string]any)
		if ref == nil || ref["href"] != "http://localhost/cimi/"+key {
			t.Fatalf("entry point lacks %s: %v", key, cep)
		}
		if c := d.get(ref["href"].(string)); c.Status != 200 {
			t.Fatalf("GET %s: %d", key, c.Status)
		}
	}

	for _, x := range []response{d.get("cloudEntryPoint", "Accept", "application/xml"), d.get("cloudEntryPoint?$format=xml")} {
		if x.Status != 200 || !strings.HasPrefix(x.Header.Get("Content-Type"), "application/xml") {
			t.Fatalf("XML entry point: %d %v", x.Status, x.Header)
		}
		var doc struct {
			XMLName xml.Name
			BaseURI string `xml:"baseURI"`
			Jobs    struct {
				Href string `xml:"href,attr"`
			} `xml:"jobs"`
		}
		if err := xml.Unmarshal(x.Body, &doc); err != nil {
			t.Fatalf("XML entry point does not parse: %v\n%s", err, x.Body)
		}
		if doc.XMLName.Space != "http://schemas.dmtf.org/cimi/1" || doc.XMLName.Local != "CloudEntryPoint" ||
			doc.BaseURI != "http://localhost/cimi/" || doc.Jobs.Href != "http://localhost/cimi/jobs" {
			t.Fatalf("XML entry point: %+v\n%s", doc, x.Body)
		}
	}
}

func TestJobSurvivesKill(t *testing.T) {
	dir := newStateDir(t)
	d := startDaemon(t, dir)
	r := d.postJSON("test/sleep", map[string]any{"seconds": 60})
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST sleep: %d %s", r.Status, r.Body)
	}
	jobURI := r.Header.Get("CIMI-Job-URI")
	if !strings.HasPrefix(jobURI, "http://localhost/cimi/jobs/") || r.Header.Get("Location") == "" {
		t.Fatalf("headers: %v", r.Header)
	}
	// wait until it runs, then kill the agent mid-job
	deadline := time.Now().Add(10 * time.Second)
	for d.get(jobURI).JSON(t)["state"] != "RUNNING" {
		if time.Now().After(deadline) {
			t.Fatal("job never ran")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.kill()

	d2 := startDaemon(t, dir)
	j := d2.waitJob(jobURI, 10*time.Second)
	if j["state"] != "FAILED" || !strings.Contains(j["statusMessage"].(string), "restart") || j["progress"].(float64) != 100 {
		t.Fatalf("job after restart: %v", j)
	}
	// the job is listed, and a finished job offers delete, not stop
	list := d2.get("jobs?$filter=" + url.QueryEscape("name='sleep'")).JSON(t)
	if list["count"].(float64) != 1 {
		t.Fatalf("jobs: %v", list)
	}
	ops := j["operations"].([]any)
	if len(ops) != 1 || ops[0].(map[string]any)["rel"] != "delete" {
		t.Fatalf("operations of a failed job: %v", ops)
	}
}

func TestJobStopOperation(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	r := d.postJSON("test/sleep", map[string]any{"seconds": 60})
	jobURI := r.Header.Get("CIMI-Job-URI")
	var stopHref string
	deadline := time.Now().Add(10 * time.Second)
	for stopHref == "" {
		for _, op := range d.get(jobURI).JSON(t)["operations"].([]any) {
			if m := op.(map[string]any); m["rel"] == "http://schemas.dmtf.org/cimi/1/action/stop" {
				stopHref = m["href"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("running job offers no stop operation")
		}
	}
	s := d.postJSON(stopHref, map[string]any{"resourceURI": "http://schemas.dmtf.org/cimi/1/Action", "action": "http://schemas.dmtf.org/cimi/1/action/stop"})
	if s.Status != http.StatusAccepted {
		t.Fatalf("stop: %d %s", s.Status, s.Body)
	}
	if j := d.waitJob(jobURI, 10*time.Second); j["state"] != "STOPPED" {
		t.Fatalf("stopped job: %v", j)
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	d := startDaemon(t, newStateDir(t))
	r := d.postJSON("test/sleep", map[string]any{"seconds": 30})
	stop := strings.TrimPrefix(r.Header.Get("CIMI-Job-URI"), "http://localhost/cimi/") + "/stop"

	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		header      []string
		status      int
		message     string
	}{
		{"malformed JSON", "POST", stop, "application/json", []byte(`{"action":`), nil, 400, "malformed JSON"},
		{"malformed XML", "POST", stop, "application/xml", []byte(`<Action><action>x</Action>`), nil, 400, "malformed XML"},
		{"unknown attribute", "POST", stop, "application/json", []byte(`{"action":"stop","color":"red"}`), nil, 400, "unknown attribute"},
		{"wrong content type", "POST", stop, "text/plain", []byte(`stop`), nil, 415, "Content-Type"},
		{"unknown path", "GET", "nowhere/at/all", "", nil, nil, 404, "no resource"},
		{"unknown job", "GET", "jobs/0000", "", nil, nil, 404, "does not exist"},
		{"wrong verb", "PUT", "jobs", "", nil, nil, 405, "not allowed"},
		{"oversized body", "POST", stop, "application/json", append([]byte(`{"action":"`), bytes.Repeat([]byte("a"), 2<<20)...), nil, 413, "exceeds"},
		{"unacceptable", "GET", "jobs", "", nil, []string{"Accept", "text/html"}, 406, "Accept"},
		{"unserved version", "GET", "jobs", "", nil, []string{"CIMI-Specification-Version", "2.0.0"}, 400, "1.1.0"},
	}
	for _, c := range cases {
		resp := d.do(c.method, c.path, c.contentType, c.body, c.header...)
		if resp.Status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.Status, c.status, resp.Body)
			continue
		}
		j := resp.JSON(t)
		if j["state"] != "FAILED" || !strings.Contains(j["statusMessage"].(string), c.message) {
			t.Errorf("%s: error body %v should mention %q", c.name, j, c.message)
		}
	}
	// XML error bodies when XML is asked for
	x := d.get("jobs/0000", "Accept", "application/xml")
	if x.Status != 404 || !bytes.Contains(x.Body, []byte("<statusMessage>")) {
		t.Errorf("XML error: %d %s", x.Status, x.Body)
	}
	// the daemon still serves, and the job is untouched by the bad requests
	if j := d.get(r.Header.Get("CIMI-Job-URI")).JSON(t); j["state"] != "RUNNING" {
		t.Fatalf("job after bad requests: %v", j)
	}
}

func TestStaleSocketIsReplacedAndLiveOneRefused(t *testing.T) {
	dir := newStateDir(t)
	d := startDaemon(t, dir)
	d.kill() // leaves the socket file behind
	d2 := startDaemon(t, dir)
	if r := d2.get("cloudEntryPoint"); r.Status != 200 {
		t.Fatalf("restarted daemon: %d", r.Status)
	}
	// a second agent on the same live socket must refuse to start
	other := newStateDir(t)
	removeStateDirObjectsAtCleanup(t, other)
	cmd := exec.Command(cimidBinary(t), "--state-dir", other, "--socket", d2.socket)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another process") {
		t.Fatalf("second agent on a live socket: err=%v\n%s", err, out)
	}
}

// TestListenRefusesBadAddress: TCP listeners (HTTPS, authenticated; see
// daemon_test.go) take IP addresses, so that what is exposed is explicit.
func TestListenRefusesBadAddress(t *testing.T) {
	dir := newStateDir(t)
	removeStateDirObjectsAtCleanup(t, dir)
	cmd := exec.Command(cimidBinary(t), "--state-dir", dir, "--socket", dir+"/s.sock", "--listen", "example.com:18443")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must be an IP address") {
		t.Fatalf("listen on a host name: err=%v\n%s", err, out)
	}
}
