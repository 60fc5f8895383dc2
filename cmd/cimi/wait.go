package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"

	"cimid/cmd/cimi/internal/cimiclient"
)

// waitJob follows the Job at href to its end and fails unless it
// succeeded.
func (a *app) waitJob(ctx context.Context, href string) (*cimiclient.Job, error) {
	job, err := a.watchJob(ctx, href)
	if err != nil {
		return nil, err
	}
	if !job.Succeeded() {
		return job, &jobError{job: job}
	}
	return job, nil
}

// watchJob polls the Job at href until it ends, showing its progress on
// stderr, and returns its final reading.
func (a *app) watchJob(ctx context.Context, href string) (*cimiclient.Job, error) {
	d := a.progressDisplay()
	job, err := a.client.WaitJob(ctx, href, a.opts.pollInterval, d.update)
	d.close(job)
	if err != nil && ctx.Err() != nil {
		return job, &abandonedError{href: href, job: job, cause: ctx.Err()}
	}
	return job, err
}

// jobError is a Job that ended in FAILED or STOPPED.
type jobError struct{ job *cimiclient.Job }

func (e *jobError) Error() string {
	if e.job.StatusMessage == "" {
		return fmt.Sprintf("%s ended %s", e.job.Label(), e.job.State)
	}
	return fmt.Sprintf("%s %s: %s", e.job.Label(), e.job.State, e.job.StatusMessage)
}

// abandonedError is a wait cut short by --timeout or an interrupt; the
// Job itself goes on.
type abandonedError struct {
	href  string
	job   *cimiclient.Job
	cause error
}

func (e *abandonedError) Error() string {
	why := "interrupted"
	if errors.Is(e.cause, context.DeadlineExceeded) {
		why = "timed out"
	}
	state := ""
	if e.job != nil {
		state = fmt.Sprintf(" (%s, %d%%)", e.job.State, e.job.Progress)
	}
	return fmt.Sprintf("%s waiting for job %s%s; it continues on the server: cimi job wait %s",
		why, cimiclient.LastSegment(e.href), state, e.href)
}

func (e *abandonedError) Unwrap() error { return e.cause }

// display shows the progress of a Job.
type display interface {
	update(*cimiclient.Job)
	// close ends the display; job is the last reading, possibly nil.
	close(job *cimiclient.Job)
}

func (a *app) progressDisplay() display {
	if isTerminal(a.stderr) && a.getenv("TERM") != "dumb" {
		return newBarDisplay(a.stderr)
	}
	return &lineDisplay{w: a.stderr}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// lineDisplay prints a line whenever the Job's state, progress or message
// changes; it suits logs and pipes.
type lineDisplay struct {
	w    io.Writer
	last string
}

func (d *lineDisplay) update(j *cimiclient.Job) {
	line := fmt.Sprintf("%s: %s %d%%", j.Label(), j.State, j.Progress)
	if j.StatusMessage != "" {
		line += ": " + j.StatusMessage
	}
	if line != d.last {
		fmt.Fprintln(d.w, line)
		d.last = line
	}
}

func (d *lineDisplay) close(*cimiclient.Job) {}

// barDisplay draws a progress bar on a terminal.
type barDisplay struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newBarDisplay(w io.Writer) *barDisplay {
	bar := progressbar.NewOptions(100,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetDescription("waiting for job"),
	)
	return &barDisplay{w: w, bar: bar}
}

func (d *barDisplay) update(j *cimiclient.Job) {
	d.bar.Describe(fmt.Sprintf("%s %s", j.Label(), j.State))
	_ = d.bar.Set(min(max(j.Progress, 0), 100))
}

func (d *barDisplay) close(j *cimiclient.Job) {
	_ = d.bar.Exit()
	fmt.Fprintln(d.w)
	if j != nil && j.Succeeded() && j.StatusMessage != "" {
		fmt.Fprintf(d.w, "%s: %s\n", j.Label(), j.StatusMessage)
	}
}
