//go:build !testhooks

package agent

import (
	"log/slog"

	"cimid/agent/api"
	"cimid/hypervisor"
)

// testServices is empty in production builds.
func (a *Agent) testServices() []api.Service { return nil }

// wrapDriverForTests returns drv: production builds have no failpoints.
func wrapDriverForTests(drv hypervisor.Driver, _ *slog.Logger) hypervisor.Driver { return drv }
