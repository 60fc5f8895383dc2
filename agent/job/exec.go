package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cimid/store"
)

// Exec is a handler's view of its running Job.
type Exec struct {
	runner *Runner
	log    *slog.Logger

	mu        sync.Mutex
	rec       Record
	undos     []undo
	message   string
	lastWrite time.Time
	dirty     bool
	// final is the Job as Succeed stored it.
	final *Record
}

type undo struct {
	what string
	fn   func(ctx context.Context) error
}

// Record returns a copy of the Job as the handler last changed it.
func (x *Exec) Record() Record {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rec
}

// Log is the Job's logger.
func (x *Exec) Log() *slog.Logger { return x.log }

// Resumed tells whether this run continues one interrupted by a restart.
func (x *Exec) Resumed() bool { return x.Record().Resumed > 0 }

// Params decodes the Job's parameters into v.
func (x *Exec) Params(v any) error {
	rec := x.Record()
	if len(rec.Params) == 0 {
		return nil
	}
	if err := json.Unmarshal(rec.Params, v); err != nil {
		return fmt.Errorf("decode job parameters: %w", err)
	}
	return nil
}

// Progress records the completed percentage (0-99 while running). Writes
// to the store are rate-limited; the last value is always kept.
func (x *Exec) Progress(pct int) {
	if pct < 0 {
		pct = 0
	}
	if pct > 99 {
		pct = 99
	}
	x.mu.Lock()
	if pct == x.rec.Progress {
		x.mu.Unlock()
		return
	}
	x.rec.Progress = pct
	x.dirty = true
	due := time.Since(x.lastWrite) >= x.runner.progressIv
	x.mu.Unlock()
	if due {
		x.flush()
	}
}

// Affect adds a resource path to the Job's affected resources.
func (x *Exec) Affect(path string) {
	x.mu.Lock()
	for _, p := range x.rec.Affected {
		if p == path {
			x.mu.Unlock()
			return
		}
	}
	x.rec.Affected = append(x.rec.Affected, path)
	x.dirty = true
	x.mu.Unlock()
	x.flush()
}

// SetMessage sets the status message the Job ends with on success.
func (x *Exec) SetMessage(msg string) {
	x.mu.Lock()
	x.message = msg
	x.mu.Unlock()
}

// SetCheckpoint stores v as the Job's resumption marker, durably, before
// returning.
func (x *Exec) SetCheckpoint(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	x.mu.Lock()
	x.rec.Checkpoint = b
	x.dirty = true
	x.mu.Unlock()
	return x.flush()
}

// Checkpoint decodes the stored resumption marker into v; it reports false
// when there is none.
func (x *Exec) Checkpoint(v any) (bool, error) {
	rec := x.Record()
	if len(rec.Checkpoint) == 0 {
		return false, nil
	}
	return true, json.Unmarshal(rec.Checkpoint, v)
}

// OnUndo registers the inverse of a step just done. If the Job fails or is
// stopped, the undo steps run in reverse order.
func (x *Exec) OnUndo(what string, fn func(ctx context.Context) error) {
	x.mu.Lock()
	x.undos = append(x.undos, undo{what: what, fn: fn})
	x.mu.Unlock()
}

// Commit forgets the undo list: the steps done so far are to stay.
func (x *Exec) Commit() {
	x.mu.Lock()
	x.undos = nil
	x.mu.Unlock()
}

// Succeed ends the Job as SUCCESS in the transaction that writes apply's
// change, the last of the handler: the change is never stored without the
// Job's end, nor the Job seen done without the change. The undo list is
// forgotten, and the handler returns nil right after. When apply fails,
// nothing is stored and its error is returned, for the handler to return.
func (x *Exec) Succeed(apply func(tx *store.Tx) error) error {
	rec, err := x.runner.storeEnd(x.Record().ID, Success, CodeOK, successMessage(x), x, apply)
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.rec, x.final, x.undos, x.dirty = rec, &rec, nil, false
	x.mu.Unlock()
	return nil
}

// succeeded returns the Job as Succeed stored it.
func (x *Exec) succeeded() (Record, bool) {
	if x == nil {
		return Record{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.final == nil {
		return Record{}, false
	}
	return *x.final, true
}

func (x *Exec) hasSucceeded() bool {
	_, ok := x.succeeded()
	return ok
}

func (x *Exec) undo(ctx context.Context) error {
	x.mu.Lock()
	list := x.undos
	x.undos = nil
	x.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].fn(ctx); err != nil {
			x.log.Error("undo step failed", "step", list[i].what, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", list[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// flush writes the handler's changes (progress, affected, checkpoint).
func (x *Exec) flush() error {
	x.mu.Lock()
	if !x.dirty {
		x.mu.Unlock()
		return nil
	}
	snap := x.rec
	x.dirty = false
	x.lastWrite = time.Now()
	x.mu.Unlock()
	_, err := x.runner.update(snap.ID, func(rec *Record) {
		if rec.Final() {
			return
		}
		rec.Progress = snap.Progress
		rec.Affected = snap.Affected
		rec.Checkpoint = snap.Checkpoint
		rec.Updated = x.runner.now()
	})
	if err != nil {
		x.log.Error("record job progress", "err", err)
	}
	return err
}
