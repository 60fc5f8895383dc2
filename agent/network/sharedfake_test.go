package network

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/hypervisor/fake"
)

// TestWithTheSharedFake runs a Machine's network life against the fake
// hypervisor the other services are tested with.
func TestWithTheSharedFake(t *testing.T) {
	drv := fake.New()
	h := startService(t, drv)
	def, ok := drv.Network("cimid-inst-default")
	if !ok || !def.Active || !def.Autostart || def.Spec.Metadata.NetworkID != defaultNetworkID || def.Spec.Metadata.Instance != "inst" {
		t.Fatalf("default network: %+v %v", def, ok)
	}
	dev := h.machine("m1", "db", TemplateInput{})
	if len(dev.NICs) != 1 || dev.NICs[0].Network != "cimid-inst-default" || dev.Seed != nil {
		t.Fatalf("devices: %+v", dev)
	}
	ctx := t.Context()
	err := drv.DefineDomain(ctx, hypervisor.DomainSpec{Name: "dom-m1", Type: hypervisor.DomainQEMU, VCPUs: 1, MemoryKiB: 128 << 10, NICs: dev.NICs,
		Metadata: hypervisor.Metadata{Instance: "inst", MachineID: "m1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := drv.Start(ctx, "dom-m1"); err != nil {
		t.Fatal(err)
	}

	r := h.do(http.MethodPost, "machines/m1/networkInterfaces", map[string]any{"network": map[string]any{"href": "networks/default"}, "model": "e1000"})
	if j := h.wait(r); j.State != job.Success || !strings.Contains(j.StatusMessage, "running Machine") {
		t.Fatalf("hot-add: %+v", j)
	}
	nics, err := drv.DomainNICs(ctx, "dom-m1")
	if err != nil || len(nics) != 2 || nics[1].Model != "e1000" {
		t.Fatalf("domain NICs: %+v %v", nics, err)
	}

	if err := drv.SetLeases("cimid-inst-default", []hypervisor.Lease{{MAC: nics[1].MAC, IP: "10.231.0.140", Prefix: 24, Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	h.s.sweep(ctx)
	ifaces, err := h.s.MachineInterfaces("m1")
	if err != nil || len(ifaces) != 2 || len(ifaces[1].Addresses) != 1 || ifaces[1].Addresses[0].IP != "10.231.0.140" {
		t.Fatalf("interfaces: %+v %v", ifaces, err)
	}

	if err := drv.StopNetwork("cimid-inst-default"); err != nil {
		t.Fatal(err)
	}
	h.s.sweep(ctx)
	if n := h.do(http.MethodGet, "networks/default", nil).json(t); n["state"] != cimi.NetworkStopped {
		t.Fatalf("a network stopped outside the API: %v", n)
	}
	if err := h.s.ReleaseMachine(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if h.count(kindPorts) != 0 {
		t.Fatal("interfaces left after release")
	}
}
