package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"cimid/hypervisor/testguest"
)

// streamEvents follows the daemon's event stream for one resource and
// delivers each event's JSON document.
func (d *daemon) streamEvents(ctx context.Context, resource string) <-chan map[string]any {
	d.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/cimi/events/stream?resource="+resource, nil)
	client := &http.Client{Transport: d.client.Transport}
	resp, err := client.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		d.t.Fatalf("event stream: %d %v", resp.StatusCode, resp.Header)
	}
	out := make(chan map[string]any, 64)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				if json.Unmarshal([]byte(data), &m) == nil {
					out <- m
				}
			}
		}
	}()
	return out
}

// waitEvent reads the stream until an event's content satisfies match.
func waitEvent(t *testing.T, ch <-chan map[string]any, what string, match func(content map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before %s", what)
			}
			if c, _ := e["content"].(map[string]any); c != nil && match(c) {
				return e
			}
		case <-timeout:
			t.Fatalf("no event for %s within 60 s", what)
		}
	}
}

func TestEventLogAndStream(t *testing.T) {
	guest := testguest.Build(t)
	d := machineDaemon(t, newStateDir(t))
	m := d.createMachine(d.tinyConfig(), d.registerImage(guest.Disk), "STOPPED")
	path := strings.TrimPrefix(m, "http://localhost/cimi/")
	domain := "cimid-" + d.instance() + "-" + lastSegment(m)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := d.streamEvents(ctx, path)
	d.action(m, "start", nil)
	waitEvent(t, stream, "the start", func(c map[string]any) bool { return c["state"] == "STARTED" })

	// a change made outside the API is recorded and streamed as such
	if out, err := virsh("destroy", domain); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}
	e := waitEvent(t, stream, "the outside power-off", func(c map[string]any) bool { return c["state"] == "STOPPED" })
	if c := e["content"].(map[string]any); !strings.Contains(c["detail"].(string), "outside") || (c["previous"] != "STARTED" && c["previous"] != "STOPPING") || e["severity"] != "medium" {
		t.Fatalf("outside change event: %v", e)
	}

	log := d.get("eventLogs/" + strings.ReplaceAll(path, "/", ".")).JSON(t)
	if log["targetResource"].(map[string]any)["href"] != m {
		t.Fatalf("EventLog: %v", log)
	}
	evs := d.get(log["events"].(map[string]any)["href"].(string)).JSON(t)
	var kinds []string
	for _, ev := range evs["events"].([]any) {
		kinds = append(kinds, lastSegment(ev.(map[string]any)["type"].(string)))
	}
	joined := strings.Join(kinds, ",")
	if !strings.Contains(joined, "model") || !strings.Contains(joined, "state") || !strings.Contains(joined, "access") {
		t.Fatalf("event types recorded: %s", joined)
	}
	if x := d.get(log["events"].(map[string]any)["href"].(string), "Accept", "application/xml"); !strings.Contains(string(x.Body), "<Event>") {
		t.Fatalf("XML events: %s", x.Body)
	}
}
