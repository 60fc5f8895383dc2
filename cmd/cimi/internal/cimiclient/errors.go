package cimiclient

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// APIError is a 4xx or 5xx answer. CIMI servers describe the failure in a
// Job-shaped body whose statusMessage is kept in Message.
type APIError struct {
	Method     string
	URL        string
	StatusCode int
	// Status is the HTTP status line text, e.g. "404 Not Found".
	Status  string
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return e.Status
	}
	return e.Status + ": " + e.Message
}

func newAPIError(method, href string, resp *http.Response, body []byte) *APIError {
	status := resp.Status
	if status == "" {
		status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return &APIError{
		Method:     method,
		URL:        href,
		StatusCode: resp.StatusCode,
		Status:     status,
		Message:    errorMessage(resp.Header.Get("Content-Type"), body),
	}
}

// errorMessage extracts the statusMessage of an error body, whichever
// representation it came in; for other bodies it returns their first line.
func errorMessage(contentType string, body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	media, _, _ := mime.ParseMediaType(contentType)
	var doc struct {
		StatusMessage string `json:"statusMessage" xml:"statusMessage"`
	}
	switch {
	case strings.HasSuffix(media, "json") || body[0] == '{':
		if json.Unmarshal(body, &doc) == nil {
			return doc.StatusMessage
		}
	case strings.HasSuffix(media, "xml") || body[0] == '<':
		if xml.Unmarshal(body, &doc) == nil {
			return doc.StatusMessage
		}
	}
	if strings.HasPrefix(media, "text/") || media == "" {
		return firstLine(string(body), 200)
	}
	return ""
}

func firstLine(s string, limit int) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + "…"
	}
	return s
}

// UnavailableError reports an operation that the resource does not offer
// in its current state.
type UnavailableError struct {
	Op        string
	Resource  string
	State     string
	Available []string
}

func (e *UnavailableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q is not available for %s", e.Op, e.Resource)
	if e.State != "" {
		fmt.Fprintf(&b, " in state %s", e.State)
	}
	if len(e.Available) == 0 {
		b.WriteString("; it offers no operations now")
	} else {
		fmt.Fprintf(&b, "; available now: %s", strings.Join(e.Available, ", "))
	}
	return b.String()
}
