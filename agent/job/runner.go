package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"cimid/agent/errdefs"
	"cimid/store"
)

// Runner owns the Jobs of one agent.
type Runner struct {
	db     *store.DB
	log    *slog.Logger
	kinds  map[string]Kind
	locks  *lockTable
	onEnd  func(Record)
	endTx  func(tx *store.Tx, rec Record) (after func(), err error)
	hook   func(rec Record, state string, stored bool)
	now    func() time.Time
	retain time.Duration

	mu       sync.Mutex
	running  map[string]*active // by job id
	pending  map[string]int     // unfinished launched jobs per locked resource
	draining bool
	wg       sync.WaitGroup

	base       context.Context // cancelled with errShutdown when draining ends
	stopAll    context.CancelCauseFunc
	progressIv time.Duration
	outage     *OutagePolicy
}

type active struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	userStop bool
	// ended is closed when the Job's final state is stored (final holds
	// it) or when its run stops without one, at shutdown; Wait blocks on
	// it.
	ended     chan struct{}
	announced bool
	final     *Record
}

// errShutdown is the cancel cause when the agent itself is stopping.
var errShutdown = errors.New("agent shutting down")

// errUserStop is the cancel cause of the CIMI stop operation.
var errUserStop = errors.New("stopped on request")

// Options tune a Runner.
type Options struct {
	// Retention is how long finished Jobs are kept (default 24 h).
	Retention time.Duration
	// Now replaces the clock in tests.
	Now func() time.Time
	// OnEnd, when set, is told about every Job that ended.
	OnEnd func(Record)
	// EndTx, when set, writes what is recorded with a Job's end (its
	// event) in the transaction that stores the end; the function it
	// returns runs once that transaction has committed.
	EndTx func(tx *store.Tx, rec Record) (after func(), err error)
}

// NewRunner makes a Runner; register kinds, then call Start.
func NewRunner(db *store.DB, log *slog.Logger, opts Options) *Runner {
	if opts.Retention == 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	base, stop := context.WithCancelCause(context.Background())
	return &Runner{
		db: db, log: log, kinds: map[string]Kind{}, locks: newLockTable(),
		now: opts.Now, retain: opts.Retention, onEnd: opts.OnEnd, endTx: opts.EndTx, running: map[string]*active{}, pending: map[string]int{},
		base: base, stopAll: stop, progressIv: 250 * time.Millisecond,
	}
}

// SetTransitionHook has the Runner call fn right before (stored false)
// and right after (stored true) it stores a Job's move to RUNNING or to
// its final state. Test builds stop the agent there; call it before Start.
func (r *Runner) SetTransitionHook(fn func(rec Record, state string, stored bool)) { r.hook = fn }

func (r *Runner) transition(rec Record, state string, stored bool) {
	if r.hook != nil {
		r.hook(rec, state, stored)
	}
}

// Retention is how long finished Jobs are kept.
func (r *Runner) Retention() time.Duration { return r.retain }

// Register adds a kind. It must be called before Start.
func (r *Runner) Register(name string, k Kind) {
	if k.Run == nil {
		panic("job kind " + name + " has no handler")
	}
	r.kinds[name] = k
}

// Submit stores a new Job and, in the same transaction, whatever intent
// prepare writes; it then starts the Job. A prepare error aborts both.
//
// The Job takes its place for its locks here, so Jobs on a common
// resource run in the order they were submitted. A Job of a resumable
// kind whose locks are free takes them at once and is stored RUNNING: the
// restart rule treats a queued and a running resumable Job alike, so the
// move to RUNNING needs no store of its own. Other Jobs are stored QUEUED
// and move to RUNNING once they hold their locks.
func (r *Runner) Submit(rec Record, prepare func(tx *store.Tx) error) (Record, error) {
	k, ok := r.kinds[rec.Kind]
	if !ok {
		return Record{}, fmt.Errorf("submit job: unknown kind %q", rec.Kind)
	}
	r.mu.Lock()
	draining := r.draining
	r.mu.Unlock()
	if draining {
		return Record{}, errdefs.New(errdefs.Unavailable, "the agent is shutting down; try again when it is back")
	}
	now := r.now()
	if rec.ID == "" {
		rec.ID = NewID()
	}
	rec.State = Queued
	rec.Created, rec.Updated, rec.TimeOfStatusChange = now, now, now
	if len(rec.Affected) == 0 && rec.Target != "" {
		rec.Affected = []string{rec.Target}
	}
	ticket := r.locks.request(rec.Locks)
	var release func()
	if k.Resumable && ticket.held() {
		release = func() { r.locks.release(ticket) }
		rec.State = Running
	}
	// Registered before the store: a stop sent as soon as the Job is
	// visible finds it to cancel.
	a := r.register(rec)
	err := r.db.Update(func(tx *store.Tx) error {
		if prepare != nil {
			if err := prepare(tx); err != nil {
				return err
			}
		}
		if release != nil {
			r.transition(rec, Running, false)
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		r.unregister(rec)
		a.cancel(nil)
		r.locks.cancel(ticket)
		return Record{}, err
	}
	if release != nil {
		r.transition(rec, Running, true)
	}
	r.start(k, rec, a, ticket, release)
	return rec, nil
}

// Get returns a stored Job.
func (r *Runner) Get(id string) (Record, error) {
	b, err := r.db.Get(Bucket, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Record{}, errdefs.NotFoundf("job %s does not exist", id)
		}
		return Record{}, err
	}
	return decodeRecord(b)
}

// List returns every stored Job, oldest first.
func (r *Runner) List() ([]Record, error) {
	recs, err := r.db.List(Bucket)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(recs))
	for _, kv := range recs {
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			r.log.Error("skipping unreadable job record", "id", kv.ID, "err", err)
			continue
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Pending reports whether an unfinished Job of this agent holds or waits
// for the lock of resource path.
func (r *Runner) Pending(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending[path] > 0
}

// Cancellable reports whether the stop operation applies to rec now.
func (r *Runner) Cancellable(rec Record) bool {
	if rec.State == Queued {
		return true
	}
	return rec.State == Running && r.kinds[rec.Kind].Cancellable
}

// Stop cancels a queued or running Job. The Job ends as STOPPED once its
// handler has returned and its undo list has run.
func (r *Runner) Stop(id string) (Record, error) {
	rec, err := r.Get(id)
	if err != nil {
		return Record{}, err
	}
	if rec.Final() {
		return rec, errdefs.Conflictf("job %s has already ended (%s)", id, rec.State)
	}
	if rec.State == Stopping {
		return rec, nil
	}
	if !r.Cancellable(rec) {
		return rec, errdefs.Conflictf("job %s (%s) cannot be stopped while it runs", id, rec.Kind)
	}
	rec, err = r.update(id, func(rec *Record) {
		if !rec.Final() {
			r.setState(rec, Stopping, "stop requested")
		}
	})
	if err != nil {
		return Record{}, err
	}
	r.mu.Lock()
	if a := r.running[id]; a != nil {
		a.userStop = true
		a.cancel(errUserStop)
	}
	r.mu.Unlock()
	return rec, nil
}

// Start recovers unfinished Jobs by their kind's rule and prunes old ones.
// Call it once, after registering kinds and before serving requests.
func (r *Runner) Start(ctx context.Context) error {
	recs, err := r.List()
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	for _, rec := range recs {
		if rec.Final() {
			continue
		}
		if err := r.recover(ctx, rec); err != nil {
			return err
		}
	}
	r.prune()
	go func() {
		t := time.NewTicker(10 * time.Minute)
		defer t.Stop()
		for {
			select {
			case <-r.base.Done():
				return
			case <-t.C:
				r.prune()
			}
		}
	}()
	return nil
}

// recover applies the restart rule to one unfinished Job:
//
//	stored state  kind            action
//	QUEUED        any             run it (nothing had started)
//	RUNNING       resumable       run it again (handlers are re-entrant)
//	RUNNING       not resumable   Cleanup, then FAILED "interrupted"
//	STOPPING      any             Cleanup, then STOPPED
func (r *Runner) recover(ctx context.Context, rec Record) error {
	k, known := r.kinds[rec.Kind]
	switch {
	case !known:
		_, err := r.finish(rec.ID, Failed, CodeInterrupted, fmt.Sprintf("interrupted by an agent restart; this agent does not know job kind %q", rec.Kind), nil, nil)
		return err
	case rec.State == Queued || (rec.State == Running && k.Resumable):
		r.log.Info("resuming job after restart", "job", rec.ID, "kind", rec.Kind, "state", rec.State)
		updated, err := r.update(rec.ID, func(rec *Record) { rec.Resumed++ })
		if err != nil {
			return err
		}
		r.launch(updated)
		return nil
	default:
		state, code, msg := Failed, CodeInterrupted, "interrupted by an agent restart before it finished"
		if rec.State == Stopping {
			state, code, msg = Stopped, CodeCancelled, "stopped on request"
		}
		if k.Cleanup != nil {
			if err := k.Cleanup(ctx, rec); err != nil {
				msg += "; cleanup failed: " + err.Error()
			}
		}
		r.log.Info("ending interrupted job", "job", rec.ID, "kind", rec.Kind, "state", state)
		_, err := r.finish(rec.ID, state, code, msg, nil, nil)
		return err
	}
}

// Shutdown stops accepting Jobs and waits until running ones finish or ctx
// ends. Jobs still running then are interrupted without being marked: they
// are recovered by rule at the next start.
func (r *Runner) Shutdown(ctx context.Context) {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
		}
		r.stopAll(errShutdown)
	}()
	<-done
	r.stopAll(errShutdown) // also ends the pruning loop
}

// launch runs a stored Job on its own goroutine once it holds its locks.
func (r *Runner) launch(rec Record) {
	r.start(r.kinds[rec.Kind], rec, r.register(rec), r.locks.request(rec.Locks), nil)
}

// register makes rec a Job of this runner: stoppable, waited for, and
// counted as pending on the resources it locks.
func (r *Runner) register(rec Record) *active {
	ctx, cancel := context.WithCancelCause(r.base)
	a := &active{ctx: ctx, cancel: cancel, ended: make(chan struct{})}
	r.mu.Lock()
	r.running[rec.ID] = a
	for _, l := range rec.Locks {
		r.pending[l]++
	}
	r.mu.Unlock()
	return a
}

func (r *Runner) unregister(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.running[rec.ID]; a != nil && !a.announced {
		a.announced = true
		close(a.ended)
	}
	delete(r.running, rec.ID)
	for _, l := range rec.Locks {
		if r.pending[l]--; r.pending[l] <= 0 {
			delete(r.pending, l)
		}
	}
}

// announce wakes those waiting for the Job: its final state, rec, is
// stored.
func (r *Runner) announce(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.running[rec.ID]; a != nil && !a.announced {
		a.announced, a.final = true, &rec
		close(a.ended)
	}
}

// start runs a registered Job on its own goroutine once ticket holds its
// locks. With release set, it holds them already and is stored RUNNING.
func (r *Runner) start(k Kind, rec Record, a *active, ticket *lockTicket, release func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer a.cancel(nil)
		defer r.unregister(rec)
		r.run(a.ctx, k, rec, ticket, release)
	}()
}

func (r *Runner) run(ctx context.Context, k Kind, rec Record, ticket *lockTicket, release func()) {
	log := r.log.With("job", rec.ID, "kind", rec.Kind, "target", rec.Target)
	cur := rec
	if release == nil {
		var err error
		release, err = r.locks.wait(ctx, ticket)
		if err != nil {
			r.ended(ctx, log, rec, nil, err)
			return
		}
		r.transition(rec, Running, false)
		cur, err = r.update(rec.ID, func(rec *Record) {
			if rec.State == Queued {
				r.setState(rec, Running, "")
			}
		})
		r.transition(cur, Running, true)
		if err != nil {
			release()
			log.Error("job record unavailable", "err", err)
			return
		}
	}
	defer release()
	if cur.State == Stopping || errors.Is(context.Cause(ctx), errUserStop) {
		r.ended(ctx, log, cur, nil, errUserStop)
		return
	}
	x := &Exec{runner: r, rec: cur, log: log}
	err := r.runAttempts(ctx, k, x)
	r.ended(ctx, log, x.Record(), x, err)
}

// Wait returns the Job once it has ended, or as it is when ctx ends
// first. A Job that is not running returns at once.
func (r *Runner) Wait(ctx context.Context, id string) (Record, error) {
	r.mu.Lock()
	a := r.running[id]
	r.mu.Unlock()
	rec, err := r.Get(id)
	if err != nil || rec.Final() || a == nil {
		return rec, err
	}
	select {
	case <-a.ended:
		if a.final != nil {
			return *a.final, nil
		}
	case <-ctx.Done():
	}
	return r.Get(id)
}

func safeRun(ctx context.Context, h Handler, x *Exec) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return h(ctx, x)
}

// ended records the outcome of a run.
func (r *Runner) ended(ctx context.Context, log *slog.Logger, rec Record, x *Exec, err error) {
	r.mu.Lock()
	userStop := r.running[rec.ID] != nil && r.running[rec.ID].userStop
	r.mu.Unlock()
	if final, ok := x.succeeded(); ok {
		if err != nil {
			log.Error("job failed after it was stored as succeeded; it stays SUCCESS", "err", err)
		}
		if r.onEnd != nil {
			r.onEnd(final)
		}
		log.Info("job succeeded")
		return
	}
	if err != nil && !userStop && errors.Is(context.Cause(ctx), errShutdown) {
		// The agent is stopping: leave the Job as it is for recovery.
		log.Info("job interrupted by shutdown; it will be recovered at the next start", "err", err)
		return
	}
	if err == nil {
		if _, ferr := r.finish(rec.ID, Success, CodeOK, successMessage(x), x, nil); ferr != nil {
			log.Error("record job success", "err", ferr)
		}
		log.Info("job succeeded")
		return
	}
	undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var undoErr error
	if x != nil {
		undoErr = x.undo(undoCtx)
	}
	state, code, msg := Failed, CodeFailed, err.Error()
	if userStop || errors.Is(err, errUserStop) {
		state, code, msg = Stopped, CodeCancelled, "stopped on request"
		if k := r.kinds[rec.Kind]; k.Cleanup != nil && x == nil {
			undoErr = k.Cleanup(undoCtx, rec)
		}
	}
	if undoErr != nil {
		msg += "; undo incomplete: " + undoErr.Error()
	}
	if _, ferr := r.finish(rec.ID, state, code, msg, x, nil); ferr != nil {
		log.Error("record job end", "err", ferr)
	}
	log.Info("job ended", "state", state, "message", msg)
}

func successMessage(x *Exec) string {
	if x != nil {
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.message != "" {
			return x.message
		}
	}
	return "done"
}

// finish ends the Job and tells OnEnd.
func (r *Runner) finish(id, state string, code int, msg string, x *Exec, apply func(tx *store.Tx) error) (Record, error) {
	rec, err := r.storeEnd(id, state, code, msg, x, apply)
	if err == nil && r.onEnd != nil {
		r.onEnd(rec)
	}
	return rec, err
}

// storeEnd writes the Job's final state in one transaction with what the
// handler changed and has not stored yet (x, when given) and with apply's
// writes; those waiting for the Job are woken once it is stored.
func (r *Runner) storeEnd(id, state string, code int, msg string, x *Exec, apply func(tx *store.Tx) error) (Record, error) {
	r.transition(Record{ID: id}, state, false)
	var out Record
	var after func()
	err := r.db.Update(func(tx *store.Tx) error {
		if apply != nil {
			if err := apply(tx); err != nil {
				return err
			}
		}
		b, err := tx.Get(Bucket, id)
		if err != nil {
			return err
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return err
		}
		if x != nil {
			x.mu.Lock()
			rec.Affected, rec.Checkpoint = x.rec.Affected, x.rec.Checkpoint
			x.mu.Unlock()
		}
		r.setState(&rec, state, msg)
		rec.ReturnCode = code
		rec.Progress = 100
		out = rec
		if after, err = r.stageEnd(tx, rec); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		out = Record{}
	}
	r.transition(out, state, true)
	if err == nil {
		after()
		r.announce(out)
	}
	return out, err
}

func (r *Runner) setState(rec *Record, state, msg string) {
	now := r.now()
	rec.State = state
	rec.TimeOfStatusChange = now
	rec.Updated = now
	if msg != "" {
		rec.StatusMessage = msg
	}
}

// update applies fn to the stored record in one transaction.
func (r *Runner) update(id string, fn func(*Record)) (Record, error) {
	var out Record
	err := r.db.Update(func(tx *store.Tx) error {
		b, err := tx.Get(Bucket, id)
		if err != nil {
			return err
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return err
		}
		fn(&rec)
		out = rec
		return putRecord(tx, rec)
	})
	return out, err
}

// prune removes finished Jobs older than the retention.
func (r *Runner) prune() {
	cutoff := r.now().Add(-r.retain)
	recs, err := r.List()
	if err != nil {
		r.log.Error("prune jobs", "err", err)
		return
	}
	err = r.db.Update(func(tx *store.Tx) error {
		for _, rec := range recs {
			if rec.Final() && rec.TimeOfStatusChange.Before(cutoff) {
				if err := tx.Delete(Bucket, rec.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		r.log.Error("prune jobs", "err", err)
	}
}

func putRecord(tx *store.Tx, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	return tx.Put(Bucket, rec.ID, b)
}

func decodeRecord(b []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("decode job record: %w", err)
	}
	return rec, nil
}

// Delete removes a finished Job; a running one must be stopped first.
func (r *Runner) Delete(id string) error {
	return r.db.Update(func(tx *store.Tx) error {
		b, err := tx.Get(Bucket, id)
		if err != nil {
			return errdefs.NotFoundf("job %s does not exist", id)
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return err
		}
		if !rec.Final() {
			return errdefs.Conflictf("job %s is %s: stop it first", id, rec.State)
		}
		return tx.Delete(Bucket, id)
	})
}

// Done records a change made at once as an already finished Job: apply and
// the SUCCESS record are committed in one transaction.
func (r *Runner) Done(rec Record, apply func(tx *store.Tx) error) (Record, error) {
	now := r.now()
	if rec.ID == "" {
		rec.ID = NewID()
	}
	rec.State, rec.Progress, rec.ReturnCode = Success, 100, CodeOK
	if rec.StatusMessage == "" {
		rec.StatusMessage = "done"
	}
	rec.Created, rec.Updated, rec.TimeOfStatusChange = now, now, now
	if len(rec.Affected) == 0 && rec.Target != "" {
		rec.Affected = []string{rec.Target}
	}
	var after func()
	err := r.db.Update(func(tx *store.Tx) error {
		if apply != nil {
			if err := apply(tx); err != nil {
				return err
			}
		}
		var err error
		if after, err = r.stageEnd(tx, rec); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err == nil {
		after()
		if r.onEnd != nil {
			r.onEnd(rec)
		}
	}
	return rec, err
}

// stageEnd writes, in tx, what EndTx records with the end of rec, and
// returns what is to run once tx has committed.
func (r *Runner) stageEnd(tx *store.Tx, rec Record) (func(), error) {
	if r.endTx == nil {
		return func() {}, nil
	}
	after, err := r.endTx(tx, rec)
	if err != nil {
		return nil, err
	}
	if after == nil {
		after = func() {}
	}
	return after, nil
}
