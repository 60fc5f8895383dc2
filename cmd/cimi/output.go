package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"cimid/cmd/cimi/internal/cimiclient"
)

// printDocument reads href and prints it: XML as received with --xml,
// otherwise indented JSON.
func (a *app) printDocument(ctx context.Context, href string) error {
	if a.opts.xml {
		body, err := a.client.GetRaw(ctx, href, cimiclient.MediaXML)
		if err != nil {
			return err
		}
		return writeRaw(a.stdout, body)
	}
	body, err := a.client.GetRaw(ctx, href, cimiclient.MediaJSON)
	if err != nil {
		return err
	}
	return writeJSON(a.stdout, body)
}

// wantTable reports whether a command whose default is defaultFormat
// should print a table.
func (a *app) wantTable(defaultFormat string) bool {
	if a.opts.xml {
		return false
	}
	format := a.opts.output
	if format == "" {
		format = defaultFormat
	}
	return format == "table"
}

func writeRaw(w io.Writer, body []byte) error {
	if len(body) > 0 && body[len(body)-1] != '\n' {
		body = append(body, '\n')
	}
	_, err := w.Write(body)
	return err
}

func writeJSON(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("server sent invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// view carries what rendering needs to know about the server.
type view struct {
	// base is the server's base URI; hrefs under it are shown relative.
	base string
}

func (a *app) view(ctx context.Context) (view, error) {
	base, err := a.client.BaseURI(ctx)
	if err != nil {
		return view{}, err
	}
	return view{base: base}, nil
}

// short renders an href relative to the base URI when it lies under it.
func (v view) short(href string) string {
	if href == "" {
		return ""
	}
	if v.base != "" && strings.HasPrefix(href, v.base) && len(href) > len(v.base) {
		return strings.TrimPrefix(href, v.base)
	}
	return cimiclient.LastSegment(href)
}

// writeTable prints rows under the columns' headers.
func writeTable(w io.Writer, cols []column, rows []cimiclient.Resource, v view) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	cells := make([]string, len(cols))
	for i := range rows {
		for j, c := range cols {
			cells[j] = cell(c.value(&rows[i], v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	return nil
}

// cell makes a value fit on one table line.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
