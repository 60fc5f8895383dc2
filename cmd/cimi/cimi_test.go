package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	for _, v := range []string{"CIMI_SOCKET", "CIMI_URL", "CIMI_TOKEN"} {
		os.Unsetenv(v)
	}
	os.Exit(m.Run())
}

// result is what one run of the CLI produced.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the CLI against the fake server at url.
func cli(t *testing.T, url string, args ...string) result {
	t.Helper()
	return runArgs(t, append([]string{"--url", url, "--poll-interval", "5ms"}, args...)...)
}

func runArgs(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	res := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("cimi %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, res.stdout, res.stderr)
	return res
}

func startFake(t *testing.T) (*fakeServer, string) {
	t.Helper()
	f := newFakeServer()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code = %d, want %d (stderr: %q)", r.code, code, r.stderr)
	}
}

func TestGetEntryPoint(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "get")
	wantCode(t, r, 0)
	var cep map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &cep); err != nil {
		t.Fatalf("stdout is not JSON: %v", err)
	}
	if cep["baseURI"] != url+"/cimi/" {
		t.Errorf("baseURI = %v, want %s/cimi/", cep["baseURI"], url)
	}
	if !strings.Contains(r.stdout, "\n  \"baseURI\"") {
		t.Errorf("output is not indented:\n%s", r.stdout)
	}
}

func TestGetRelativePathAndURL(t *testing.T) {
	_, url := startFake(t)
	for _, arg := range []string{"machines/m1", url + "/cimi/machines/m1", "/cimi/machines/m1"} {
		r := cli(t, url, "get", arg)
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, `"name": "web-1"`) {
			t.Errorf("get %s: missing machine name in\n%s", arg, r.stdout)
		}
	}
}

func TestGetXML(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "--xml", "get", "machines/m1")
	wantCode(t, r, 0)
	want := `<Resource xmlns="` + prefix + `"><id>` + url + `/cimi/machines/m1</id></Resource>` + "\n"
	if r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
}

// fields splits table output into rows of cells separated by two or more
// spaces.
func fields(out string) [][]string {
	sep := regexp.MustCompile(`\s{2,}`)
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, sep.Split(strings.TrimSpace(line), -1))
	}
	return rows
}

func TestListTables(t *testing.T) {
	_, url := startFake(t)
	tests := []struct {
		args []string
		want [][]string
	}{
		{[]string{"list", "machines"}, [][]string{
			{"ID", "NAME", "STATE", "CPU", "MEMORY"},
			{"m1", "web-1", "STARTED", "2", "4 GiB"},
			{"m2", "db-1", "STOPPED", "4", "8 GiB"},
		}},
		{[]string{"machine", "list"}, [][]string{
			{"ID", "NAME", "STATE", "CPU", "MEMORY"},
			{"m1", "web-1", "STARTED", "2", "4 GiB"},
			{"m2", "db-1", "STOPPED", "4", "8 GiB"},
		}},
		{[]string{"list", "jobs"}, [][]string{
			{"ID", "NAME", "STATE", "ACTION", "TARGET", "PROGRESS", "STATUS MESSAGE"},
			{"j-fail", "import image", "RUNNING", "add", "machineImages", "30%", "converting"},
			{"j-run", "stop web-1", "RUNNING", "stop", "machines/m1", "10%", "waiting for guest shutdown"},
			{"j-done", "start db-1", "SUCCESS", "start", "machines/m2", "100%", "-"},
		}},
		{[]string{"config", "list"}, [][]string{
			{"ID", "NAME", "CPU", "MEMORY", "DISK"},
			{"small", "small", "1", "1 GiB", "10 GiB"},
		}},
		{[]string{"image", "list"}, [][]string{
			{"ID", "NAME", "STATE", "TYPE", "LOCATION"},
			{"debian-12", "debian-12", "AVAILABLE", "IMAGE", "file:///var/lib/cimid/images/debian-12.qcow2"},
		}},
		{[]string{"template", "list"}, [][]string{
			{"ID", "NAME", "CONFIG", "IMAGE", "INITIAL STATE"},
			{"small-debian", "small-debian", "machineConfigs/small", "machineImages/debian-12", "STARTED"},
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := cli(t, url, tt.args...)
			wantCode(t, r, 0)
			if got := fields(r.stdout); !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("table =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestListPassesQueryOptions(t *testing.T) {
	f := newFakeServer()
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cimi/machines" {
			query = r.URL.RawQuery
		}
		f.ServeHTTP(w, r)
	}))
	defer srv.Close()
	r := cli(t, srv.URL, "list", "machines", "--filter", "state='STARTED'", "--orderby", "name:desc", "--first", "2", "--last", "5")
	wantCode(t, r, 0)
	want := "%24filter=state%3D%27STARTED%27&%24first=2&%24last=5&%24orderby=name%3Adesc"
	if query != want {
		t.Errorf("query = %q, want %q", query, want)
	}
}

func TestListJSON(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "-o", "json", "list", "machines")
	wantCode(t, r, 0)
	var coll struct {
		Count    int              `json:"count"`
		Machines []map[string]any `json:"machines"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &coll); err != nil {
		t.Fatal(err)
	}
	if coll.Count != 2 || len(coll.Machines) != 2 {
		t.Errorf("count = %d with %d machines, want 2", coll.Count, len(coll.Machines))
	}
}

func TestListUnknownCollection(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "list", "gizmos")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `no "gizmos" collection`) || !strings.Contains(r.stderr, "machineImages") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestMachineCreateFromTemplateWaits(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "machine", "create", "--name", "app-1", "--description", "app server",
		"--template", "small-debian", "--property", "tier=app")
	wantCode(t, r, 0)
	if want := url + "/cimi/machines/m3\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	for _, want := range []string{"QUEUED 0%", "RUNNING 60%: defining domain", "SUCCESS 100%: machine started"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	body := f.body("/cimi/machines")
	want := map[string]any{
		"resourceURI":     prefix + "/MachineCreate",
		"name":            "app-1",
		"description":     "app server",
		"properties":      map[string]any{"tier": "app"},
		"machineTemplate": map[string]any{"href": url + "/cimi/machineTemplates/small-debian"},
	}
	assertJSONEqual(t, body, want)
}

func TestMachineCreateByValue(t *testing.T) {
	f, url := startFake(t)
	userData := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(userData, []byte("#cloud-config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, url, "machine", "create", "--name", "scratch", "--config", "small",
		"--image", "machineImages/debian-12", "--initial-state", "stopped", "--user-data-file", userData)
	wantCode(t, r, 0)
	want := map[string]any{
		"resourceURI": prefix + "/MachineCreate",
		"name":        "scratch",
		"machineTemplate": map[string]any{
			"machineConfig": map[string]any{"href": url + "/cimi/machineConfigs/small"},
			"machineImage":  map[string]any{"href": url + "/cimi/machineImages/debian-12"},
			"initialState":  "STOPPED",
			"userData":      base64.StdEncoding.EncodeToString([]byte("#cloud-config\n")),
		},
	}
	assertJSONEqual(t, f.body("/cimi/machines"), want)
}

func assertJSONEqual(t *testing.T, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("body =\n%s\nwant\n%s", g, w)
	}
}

func TestMachineActionWaits(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "machine", "stop", "m1", "--force")
	wantCode(t, r, 0)
	assertJSONEqual(t, f.body("/cimi/machines/m1/stop"), map[string]any{
		"action": prefix + "/action/stop", "force": true, "resourceURI": prefix + "/Action",
	})
	if !strings.Contains(r.stderr, "SUCCESS 100%") {
		t.Errorf("stderr lacks SUCCESS: %q", r.stderr)
	}
	r = cli(t, url, "machine", "show", "m1", "-o", "table")
	wantCode(t, r, 0)
	if got := fields(r.stdout); len(got) != 2 || got[1][2] != "STOPPED" {
		t.Errorf("machine after stop:\n%s", r.stdout)
	}
}

func TestMachineActionNotOffered(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "machine", "start", "m1")
	wantCode(t, r, 1)
	want := `cimi: "start" is not available for m1 (web-1) in state STARTED; available now: stop, restart, pause, suspend` + "\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	for _, req := range f.requestLog() {
		if strings.HasPrefix(req, "POST") {
			t.Errorf("unexpected request %s", req)
		}
	}
}

func TestNoWaitPrintsJobURL(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "machine", "pause", "m1", "--no-wait")
	wantCode(t, r, 0)
	if want := url + "/cimi/jobs/j1\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	if n := f.jobReads("j1"); n != 0 {
		t.Errorf("job was read %d times, want 0", n)
	}
}

func TestJobWaitFailed(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "job", "wait", "j-fail")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "job j-fail (import image): RUNNING 30%: converting\n") {
		t.Errorf("progress missing from stderr: %q", r.stderr)
	}
	if !strings.HasSuffix(r.stderr, "cimi: job j-fail (import image) FAILED: qemu-img: disk full\n") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJobWaitByURL(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "job", "wait", url+"/cimi/jobs/j-done")
	wantCode(t, r, 0)
}

func TestJobWaitTimeout(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "--timeout", "100ms", "job", "wait", "j-run")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "timed out waiting for job j-run (RUNNING, 10%)") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestJobStop(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "job", "stop", "j-run")
	wantCode(t, r, 0)
	if f.body("/cimi/jobs/j-run/stop")["action"] != prefix+"/action/stop" {
		t.Errorf("stop body = %v", f.body("/cimi/jobs/j-run/stop"))
	}
	if !strings.Contains(r.stderr, "STOPPED 100%") {
		t.Errorf("stderr = %q", r.stderr)
	}
	r = cli(t, url, "job", "stop", "j-done")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `"stop" is not available for j-done (start db-1) in state SUCCESS; available now: delete`) {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestErrorBodyIsPrinted(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "machine", "show", "nope")
	wantCode(t, r, 1)
	if want := "cimi: 404 Not Found: machine \"nope\" not found\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	r = cli(t, url, "machine", "delete", "m2")
	wantCode(t, r, 0)
	r = cli(t, url, "machine", "delete", "m1")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `"delete" is not available for m1 (web-1) in state STARTED`) {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestImageCreate(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "image", "create", "--name", "alpine", "--location", "/srv/images/alpine.qcow2")
	wantCode(t, r, 0)
	if want := url + "/cimi/machineImages/img1\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	assertJSONEqual(t, f.body("/cimi/machineImages"), map[string]any{
		"imageLocation": "file:///srv/images/alpine.qcow2", "name": "alpine",
		"resourceURI": prefix + "/MachineImageCreate",
	})
}

func TestTemplateCreateSynchronous(t *testing.T) {
	f, url := startFake(t)
	r := cli(t, url, "template", "create", "--name", "tiny", "--config", "small", "--image", "debian-12",
		"--initial-state", "STARTED")
	wantCode(t, r, 0)
	if want := url + "/cimi/machineTemplates/t1\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	assertJSONEqual(t, f.body("/cimi/machineTemplates"), map[string]any{
		"resourceURI": prefix + "/MachineTemplateCreate",
		"name":        "tiny",
		"machineTemplate": map[string]any{
			"machineConfig": map[string]any{"href": url + "/cimi/machineConfigs/small"},
			"machineImage":  map[string]any{"href": url + "/cimi/machineImages/debian-12"},
			"initialState":  "STARTED",
		},
	})
}

func TestUsageErrors(t *testing.T) {
	_, url := startFake(t)
	tests := [][]string{
		{"bogus"},
		{"machine"},
		{"machine", "bogus"},
		{"machine", "stop"},
		{"machine", "stop", "m1", "--bogus"},
		{"machine", "create", "--template", "t"},
		{"machine", "create", "--name", "x"},
		{"machine", "create", "--name", "x", "--template", "t", "--image", "i"},
		{"machine", "create", "--name", "x", "--config", "c"},
		{"machine", "create", "--name", "x", "--template", "t", "--initial-state", "PAUSED"},
		{"image", "create", "--name", "x", "--location", "ftp://h/x"},
		{"list"},
		{"-o", "yaml", "list", "machines"},
	}
	for _, args := range tests {
		r := cli(t, url, args...)
		if r.code != 2 {
			t.Errorf("cimi %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, "cimi: ") || !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("cimi %s: stderr = %q", strings.Join(args, " "), r.stderr)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	f := newFakeServer()
	sock := filepath.Join(t.TempDir(), "cimid.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	r := runArgs(t, "--socket", sock, "--poll-interval", "5ms", "machine", "create", "--name", "via-socket",
		"--config", "small", "--image", "debian-12")
	wantCode(t, r, 0)
	if want := "http://localhost/cimi/machines/m3\n"; r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	t.Setenv("CIMI_SOCKET", sock)
	r = runArgs(t, "list", "machines")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "via-socket") {
		t.Errorf("new machine missing from list:\n%s", r.stdout)
	}
}

func TestSocketMissing(t *testing.T) {
	r := runArgs(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "get")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "is cimid running?") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestTLSWithToken(t *testing.T) {
	f := newFakeServer()
	f.token = "s3cret"
	srv := httptest.NewTLSServer(f)
	defer srv.Close()

	r := runArgs(t, "--url", srv.URL, "--insecure", "--token", "s3cret", "list", "machines")
	wantCode(t, r, 0)
	r = runArgs(t, "--url", srv.URL, "--insecure", "--token", "wrong", "list", "machines")
	wantCode(t, r, 1)
	if want := "cimi: 401 Unauthorized: missing or wrong token\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	r = runArgs(t, "--url", srv.URL, "--token", "s3cret", "list", "machines")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "certificate") {
		t.Errorf("stderr = %q, want a certificate error", r.stderr)
	}
	r = runArgs(t, "--url", "http://127.0.0.1:1/", "--token", "s3cret", "get")
	wantCode(t, r, 2)
	if !strings.Contains(r.stderr, "refusing to send a token over plain http") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestRefusesForeignHrefs(t *testing.T) {
	_, url := startFake(t)
	r := cli(t, url, "get", "http://example.invalid/cimi/machines")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "refusing to follow") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

func TestVersion(t *testing.T) {
	r := runArgs(t, "version")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "cimi ") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestHumanKiB(t *testing.T) {
	for kib, want := range map[int64]string{
		0: "0 KiB", 512: "512 KiB", 1024: "1 MiB", 1048576: "1 GiB",
		1572864: "1.5 GiB", 4194304: "4 GiB", 10485760: "10 GiB", 1 << 30: "1 TiB",
	} {
		if got := humanKiB(kib); got != want {
			t.Errorf("humanKiB(%d) = %q, want %q", kib, got, want)
		}
	}
}
