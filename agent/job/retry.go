package job

import (
	"context"
	"fmt"
	"time"
)

// OutagePolicy lets resumable Jobs ride out a temporary outage of what they
// drive (libvirtd restarting, typically) instead of failing: a run that
// ends with an error Transient recognises waits until Wait reports the
// dependency back, then runs again from the start, as it would after an
// agent restart. Its undo list is kept across attempts, so a run that
// finally fails still undoes the steps of every attempt.
type OutagePolicy struct {
	// Transient tells whether err means "the dependency went away" rather
	// than "the operation failed".
	Transient func(err error) bool
	// Wait blocks until the dependency answers again, or ctx ends.
	Wait func(ctx context.Context) error
	// MaxWait bounds one wait (default 2 minutes); a Job whose dependency
	// stays away longer fails with the original error.
	MaxWait time.Duration
	// MaxRetries bounds the reruns of one Job (default 3).
	MaxRetries int
}

// SetOutagePolicy installs p for resumable kinds; call it before Start.
func (r *Runner) SetOutagePolicy(p OutagePolicy) {
	if p.MaxWait <= 0 {
		p.MaxWait = 2 * time.Minute
	}
	if p.MaxRetries <= 0 {
		p.MaxRetries = 3
	}
	r.outage = &p
}

// runAttempts runs the handler, and runs it again after an outage while the
// policy allows it.
func (r *Runner) runAttempts(ctx context.Context, k Kind, x *Exec) error {
	err := safeRun(ctx, k.Run, x)
	p := r.outage
	if p == nil || !k.Resumable {
		return err
	}
	for attempt := 1; err != nil && attempt <= p.MaxRetries && ctx.Err() == nil && p.Transient(err) && !x.hasSucceeded(); attempt++ {
		rec := x.Record()
		x.log.Warn("job lost its hypervisor; waiting for it to come back", "err", err, "attempt", attempt)
		r.noteWaiting(rec.ID, fmt.Sprintf("waiting for the hypervisor to come back (%v)", err))
		waitCtx, cancel := context.WithTimeout(ctx, p.MaxWait)
		werr := p.Wait(waitCtx)
		cancel()
		if werr != nil {
			if ctx.Err() != nil {
				return err // stopping: the caller decides by the context's cause
			}
			return fmt.Errorf("%w (the hypervisor did not come back within %s)", err, p.MaxWait)
		}
		x.log.Info("hypervisor is back; running the job again", "attempt", attempt)
		x.mu.Lock()
		x.rec.Resumed++
		x.mu.Unlock()
		r.noteWaiting(rec.ID, "")
		err = safeRun(ctx, k.Run, x)
	}
	return err
}

// noteWaiting shows msg as the running Job's status message and counts the
// rerun it announces (an empty msg clears it).
func (r *Runner) noteWaiting(id, msg string) {
	_, err := r.update(id, func(rec *Record) {
		if rec.Final() {
			return
		}
		rec.StatusMessage = msg
		if msg == "" {
			rec.Resumed++
		}
		rec.Updated = r.now()
	})
	if err != nil {
		r.log.Error("record job status", "job", id, "err", err)
	}
}
