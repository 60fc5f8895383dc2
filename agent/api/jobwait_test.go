package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cimid/agent/job"
	"cimid/store"
)

// startRunner runs a Job runner with kinds over a fresh store until the
// test ends, when it calls release first, to let blocked Jobs end.
func startRunner(t *testing.T, kinds map[string]job.Kind, release func()) (*job.Runner, *slog.Logger) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	runner := job.NewRunner(db, log, job.Options{})
	for name, k := range kinds {
		runner.Register(name, k)
	}
	if err := runner.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		runner.Shutdown(ctx)
	})
	return runner, log
}

func TestJobWaitPreference(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(release) }) }
	runner, log := startRunner(t, map[string]job.Kind{"block": {Resumable: true, Run: func(ctx context.Context, x *job.Exec) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}}, end)
	core := &Core{Name: "t", Jobs: runner}
	s := NewServer(log, core.Routes())
	rec, err := runner.Submit(job.Record{Kind: "block", Target: "things/1", Locks: []string{"things/1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := "/cimi/jobs/" + rec.ID
	state := func(body []byte) any {
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("job document: %v: %s", err, body)
		}
		return doc["state"]
	}

	// Without the preference, the Job is read as it is.
	if r := serve(s, "GET", path, ""); r.Code != 200 || state(r.Body.Bytes()) != job.Running || r.Header().Get("Preference-Applied") != "" {
		t.Fatalf("plain GET: %d %s %v", r.Code, r.Body, r.Header())
	}
	// A wait that runs out answers with the Job as it is then.
	start := time.Now()
	r := serve(s, "GET", path, "", "Prefer", "respond-async, wait=1")
	if took := time.Since(start); r.Code != 200 || state(r.Body.Bytes()) != job.Running || took < time.Second || took > 5*time.Second {
		t.Fatalf("a wait of 1 s on a running Job: %d %s after %v", r.Code, r.Body, took)
	}
	if got := r.Header().Get("Preference-Applied"); got != "wait=1" {
		t.Fatalf("Preference-Applied: %q", got)
	}
	// A wait answers as soon as the Job ends.
	done := make(chan []byte)
	go func() { done <- serve(s, "GET", path, "", "Prefer", "wait=30").Body.Bytes() }()
	select {
	case b := <-done:
		t.Fatalf("the wait answered before the Job ended: %s", b)
	case <-time.After(100 * time.Millisecond):
	}
	end()
	select {
	case b := <-done:
		if state(b) != job.Success {
			t.Fatalf("the wait answered %s", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not answer when the Job ended")
	}
	// On an ended Job, and with a wait it cannot read, it answers at once.
	for _, prefer := range []string{"wait=30", "wait=soon", "wait"} {
		start := time.Now()
		if r := serve(s, "GET", path, "", "Prefer", prefer); r.Code != 200 || state(r.Body.Bytes()) != job.Success || time.Since(start) > time.Second {
			t.Fatalf("Prefer: %s on an ended Job: %d %s after %v", prefer, r.Code, r.Body, time.Since(start))
		}
	}
	if r := serve(s, "GET", "/cimi/jobs/nothing", "", "Prefer", "wait=30"); r.Code != 404 {
		t.Fatalf("a wait on a Job that does not exist: %d", r.Code)
	}
}

func TestPreferredWait(t *testing.T) {
	cases := []struct {
		values []string
		want   time.Duration
		ok     bool
	}{
		{nil, 0, false},
		{[]string{"respond-async"}, 0, false},
		{[]string{"wait=10"}, 10 * time.Second, true},
		{[]string{"return=minimal, Wait = 3"}, 3 * time.Second, true},
		{[]string{`wait="7"; foo=bar`}, 7 * time.Second, true},
		{[]string{"handling=lenient", "wait=2"}, 2 * time.Second, true},
		{[]string{"wait=-1", "wait=x"}, 0, false},
	}
	for _, c := range cases {
		got, ok := preferredWait(c.values)
		if got != c.want || ok != c.ok {
			t.Errorf("preferredWait(%q) = %v %v, want %v %v", c.values, got, ok, c.want, c.ok)
		}
	}
}
