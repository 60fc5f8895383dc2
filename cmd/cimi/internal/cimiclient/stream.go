package cimiclient

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
)

// StreamEvent is one Server-Sent Event.
type StreamEvent struct {
	ID   string
	Type string
	Data string
}

// Stream follows a Server-Sent Events resource (relative to the base URI,
// or absolute) and hands each event to fn until ctx ends, the server closes
// the stream, or fn returns an error.
func (c *Client) Stream(ctx context.Context, href string, fn func(StreamEvent) error) error {
	href, err := c.Resolve(ctx, href)
	if err != nil {
		return err
	}
	u, err := c.checkHref(href)
	if err != nil {
		return err
	}
	req, err := c.newRequest(ctx, http.MethodGet, u, "text/event-stream", nil)
	if err != nil {
		return err
	}
	streaming := *c.hc
	streaming.Timeout = 0 // a stream lasts as long as it is followed
	resp, err := streaming.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s%s: %w", href, c.via, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", href, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev StreamEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Data != "" {
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev = StreamEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Type = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data += strings.TrimPrefix(line, "data: ")
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
