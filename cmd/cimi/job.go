package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func jobKind() kind {
	return kind{noun: "job", collection: "jobs", deletable: true}
}

func (a *app) jobCommand() *cobra.Command {
	k := jobKind()
	return a.kindCommand(k, "Follow and stop jobs",
		a.jobWaitCommand(k),
		a.jobStopCommand(k),
	)
}

func (a *app) jobWaitCommand(k kind) *cobra.Command {
	return &cobra.Command{
		Use:   "wait ID|URL",
		Short: "Wait for a job to end, showing its progress",
		Long: `Wait for a job to end, showing its progress on stderr. Exits 0 when the job
succeeds and 1, printing its status message, when it fails or is stopped.
--timeout bounds the wait; the job itself goes on.`,
		Args: exactArgs(1, "one job ID or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			href, err := a.client.ResolveMember(ctx, k.collection, args[0])
			if err != nil {
				return err
			}
			_, err = a.waitJob(ctx, href)
			return err
		}),
	}
}

func (a *app) jobStopCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "stop ID|URL",
		Short: "Cancel a running job and wait until it has stopped",
		Args:  exactArgs(1, "one job ID or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			r, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			if _, err := a.client.Act(ctx, r, "stop", nil); err != nil {
				return err
			}
			if noWait {
				fmt.Fprintln(a.stdout, r.ID)
				return nil
			}
			return a.awaitStopped(ctx, r.ID)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

// awaitStopped follows a job being cancelled; it fails if the job ended
// any other way than STOPPED.
func (a *app) awaitStopped(ctx context.Context, href string) error {
	job, err := a.watchJob(ctx, href)
	if err != nil {
		return err
	}
	if job.State != cimiclient.JobStopped {
		return fmt.Errorf("%s ended %s before it could be stopped", job.Label(), job.State)
	}
	return nil
}
