// Package job runs the agent's asynchronous operations as persistent Jobs.
//
// A Job is written to the store together with the intent it acts on, in one
// transaction, before anything is done. It then runs on its own goroutine
// once it holds the locks of every resource it touches, reports progress,
// keeps an undo list, and ends as SUCCESS, FAILED or STOPPED; a handler may
// store its last change in the transaction that ends the Job. Its end is
// stored before anyone waiting for it is told. After an agent restart, Jobs
// that had not finished are handled by an explicit rule per kind: resumed
// (the handler is written to be re-run) or ended by a cleanup.
package job

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"
)

// Job states, as CIMI names them.
const (
	Queued   = "QUEUED"
	Running  = "RUNNING"
	Success  = "SUCCESS"
	Failed   = "FAILED"
	Stopping = "STOPPING"
	Stopped  = "STOPPED"
)

// Bucket is the store kind holding Job records.
const Bucket = "jobs"

// Record is a Job as stored.
type Record struct {
	ID                 string          `json:"id"`
	Kind               string          `json:"kind"`   // handler name, e.g. "machine.stop"
	Action             string          `json:"action"` // CIMI action URI, or add/edit/delete
	Name               string          `json:"name,omitempty"`
	Target             string          `json:"target"` // path of the target resource, e.g. "machines/<id>"
	Affected           []string        `json:"affected,omitempty"`
	Locks              []string        `json:"locks,omitempty"` // resource paths held while running
	State              string          `json:"state"`
	Progress           int             `json:"progress"`
	ReturnCode         int             `json:"returnCode"`
	StatusMessage      string          `json:"statusMessage,omitempty"`
	Params             json.RawMessage `json:"params,omitempty"`
	Checkpoint         json.RawMessage `json:"checkpoint,omitempty"`
	Resumed            int             `json:"resumed,omitempty"` // times resumed after a restart
	Created            time.Time       `json:"created"`
	Updated            time.Time       `json:"updated"`
	TimeOfStatusChange time.Time       `json:"timeOfStatusChange"`
}

// Final reports whether the Job has ended.
func (r *Record) Final() bool {
	return r.State == Success || r.State == Failed || r.State == Stopped
}

// Return codes recorded on finished Jobs (CIMI leaves them to the provider).
const (
	CodeOK          = 0
	CodeFailed      = 1
	CodeCancelled   = 2
	CodeInterrupted = 3
)

// Handler performs one kind of Job. It must honour ctx, and when the kind
// is resumable it must be safe to run again from the start after a crash
// at any point (each step checks what is already done).
type Handler func(ctx context.Context, x *Exec) error

// Kind describes how Jobs of one kind are run and recovered.
type Kind struct {
	Run Handler
	// Resumable kinds are run again after an agent restart; others are
	// ended by Cleanup and marked FAILED.
	Resumable bool
	// Cancellable kinds accept the CIMI stop operation while running.
	Cancellable bool
	// Cleanup, when set, undoes what an interrupted or cancelled run may
	// have left, using only the stored record (the in-memory undo list is
	// gone after a restart).
	Cleanup func(ctx context.Context, rec Record) error
}

// NewID returns a random UUID (version 4).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
