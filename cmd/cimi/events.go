package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

// eventLine is what one event shows on a terminal.
type eventLine struct {
	Timestamp time.Time `json:"timestamp"`
	Type      string    `json:"type"`
	Severity  string    `json:"severity"`
	Outcome   string    `json:"outcome"`
	Content   struct {
		ResName  string `json:"resName"`
		ResType  string `json:"resType"`
		Resource struct {
			Href string `json:"href"`
		} `json:"resource"`
		State    string `json:"state"`
		Previous string `json:"previous"`
		Change   string `json:"change"`
		Detail   string `json:"detail"`
	} `json:"content"`
}

func (e eventLine) String() string {
	what := e.Content.Change
	if e.Content.State != "" {
		what = e.Content.Previous + " -> " + e.Content.State
	}
	res := e.Content.Resource.Href
	if i := strings.Index(res, "/cimi/"); i >= 0 {
		res = res[i+len("/cimi/"):]
	}
	typ := e.Type[strings.LastIndex(e.Type, "/")+1:]
	return strings.TrimSpace(fmt.Sprintf("%s %-6s %-6s %s %s %s", e.Timestamp.Local().Format("15:04:05"), typ, e.Severity, res, what, e.Content.Detail))
}

func (a *app) eventsCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "events [RESOURCE]",
		Short: "Show the event history of a resource, or follow new events",
		Long: `Without --follow, print the EventLog of RESOURCE (a path such as
machines/ID, or a URL). With --follow, print new events as they happen, of
RESOURCE only or of every resource; stop with Ctrl-C.`,
		Args: maxArgs(1, "one RESOURCE"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			resource := ""
			if len(args) == 1 {
				resource = strings.Trim(strings.TrimPrefix(args[0], "/"), "/")
				if i := strings.Index(resource, "/cimi/"); i >= 0 {
					resource = resource[i+len("/cimi/"):]
				}
			}
			if follow {
				href := "events/stream"
				if resource != "" {
					href += "?resource=" + url.QueryEscape(resource)
				}
				return a.client.Stream(ctx, href, func(ev cimiclient.StreamEvent) error {
					return a.printEvent([]byte(ev.Data))
				})
			}
			if resource == "" {
				return usagef("name a RESOURCE, or use --follow")
			}
			raw, err := a.client.GetRaw(ctx, "eventLogs/"+strings.ReplaceAll(resource, "/", ".")+"/events", cimiclient.MediaJSON)
			if err != nil {
				return err
			}
			var coll struct {
				Events []json.RawMessage `json:"events"`
			}
			if err := json.Unmarshal(raw, &coll); err != nil {
				return fmt.Errorf("reading the events: %w", err)
			}
			for _, e := range coll.Events {
				if err := a.printEvent(e); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print new events as they happen")
	return cmd
}

func (a *app) printEvent(data []byte) error {
	if a.opts.output == "json" {
		_, err := fmt.Fprintln(a.stdout, string(data))
		return err
	}
	var e eventLine
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("reading an event: %w", err)
	}
	_, err := fmt.Fprintln(a.stdout, e.String())
	return err
}
