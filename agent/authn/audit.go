package authn

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"cimid/agent/logctx"
)

// AuditRecord is one entry of the audit trail.
type AuditRecord struct {
	Event     string // "request", "refused", "tls-refused"
	Who       string
	UID       int // unix peer uid, -1 when not a unix peer
	Method    string
	Path      string
	Status    int
	Job       string // CIMI-Job-URI of the response
	Location  string
	Remote    string
	Reason    string
	Delay     time.Duration
	RequestID string
}

// Audit writes the audit trail to the main log and, when configured, to a
// file of JSON lines of its own.
type Audit struct {
	main *slog.Logger
	mu   sync.Mutex
	f    *os.File
	file *slog.Logger
}

// OpenAudit opens (appending, 0600) the audit file at path; path "" sends
// the trail to the main log only.
func OpenAudit(path string, main *slog.Logger) (*Audit, error) {
	a := &Audit{main: main}
	if path == "" {
		return a, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create audit log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a.f = f
	a.file = slog.New(slog.NewJSONHandler(f, nil))
	return a, nil
}

// Close closes the audit file.
func (a *Audit) Close() error {
	if a == nil || a.f == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// Log records rec; ctx (may be nil) supplies the request's logger and id.
func (a *Audit) Log(ctx context.Context, rec AuditRecord) {
	if a == nil {
		return
	}
	log := a.main
	if ctx != nil {
		log = logctx.Logger(ctx, a.main)
		if rec.RequestID == "" {
			rec.RequestID = logctx.RequestID(ctx)
		}
	}
	attrs := []any{"event", rec.Event}
	add := func(k string, v any, present bool) {
		if present {
			attrs = append(attrs, k, v)
		}
	}
	add("who", rec.Who, rec.Who != "")
	add("uid", rec.UID, rec.UID >= 0 && (rec.Who != "" || rec.Event == "refused"))
	add("method", rec.Method, rec.Method != "")
	add("path", rec.Path, rec.Path != "")
	add("status", rec.Status, rec.Status != 0)
	add("job", rec.Job, rec.Job != "")
	add("location", rec.Location, rec.Location != "")
	add("remote", rec.Remote, rec.Remote != "" && rec.Remote != "@")
	add("reason", rec.Reason, rec.Reason != "")
	add("delay", rec.Delay, rec.Delay > 0)
	level := slog.LevelInfo
	if rec.Event != "request" {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "audit", attrs...)
	if a.file != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		if rec.RequestID != "" {
			attrs = append(attrs, "request_id", rec.RequestID)
		}
		a.file.Log(context.Background(), level, "audit", attrs...)
	}
}
