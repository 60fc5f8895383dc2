//go:build !testhooks

package agent

import "cimid/agent/api"

// testServices is empty in production builds.
func (a *Agent) testServices() []api.Service { return nil }
