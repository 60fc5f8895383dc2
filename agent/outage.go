package agent

import (
	"context"
	"errors"
	"time"

	"cimid/agent/job"
	"cimid/hypervisor"
)

// hypervisorOutage lets resumable Jobs wait for libvirtd to come back when
// it restarts under them: the driver reconnects by itself, so waiting is
// polling it until it answers.
func hypervisorOutage(drv hypervisor.Driver) job.OutagePolicy {
	return job.OutagePolicy{
		Transient: func(err error) bool { return errors.Is(err, hypervisor.ErrUnavailable) },
		Wait: func(ctx context.Context) error {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				if err := drv.Ping(ctx); err == nil {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-t.C:
				}
			}
		},
	}
}
