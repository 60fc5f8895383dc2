package network

import (
	"net/http"
	"testing"

	"cimid/agent/job"
)

// TestChosenSubnetTakenMeanwhile creates a Network without a subnet while
// the service's view of the host is stale: another network took the subnet
// it chooses. The create moves to the next free subnet instead of failing;
// a subnet the request names is never moved.
func TestChosenSubnetTakenMeanwhile(t *testing.T) {
	h := newHarness(t)
	h.drv.addForeign("other", "10.231.1.0/24") // not seen yet: no sweep ran
	loc := h.mustCreate("networks", netCreate(map[string]any{"forwardMode": "isolated"}))
	n := h.do(http.MethodGet, loc, nil).json(t)
	if n["subnet"] != "10.231.2.0/24" || n["dhcpRange"] != "10.231.2.128-10.231.2.254" {
		t.Fatalf("network created on a subnet taken meanwhile: %v", n)
	}

	h.drv.addForeign("another", "10.231.3.0/24")
	r := h.do(http.MethodPost, "networks", netCreate(map[string]any{"subnet": "10.231.3.0/24"}))
	if j := h.wait(r); j.State != job.Failed {
		t.Fatalf("a named subnet taken meanwhile: job %s %s", j.State, j.StatusMessage)
	}
}
