//go:build testhooks

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"cimid/agent/job"
	"cimid/hypervisor"
)

// Failpoints, in test builds only, kill the agent with SIGKILL around one
// call of its hypervisor driver or one store of a Job's state, so that
// crash tests can stop it between any two steps of a Job and check what
// the next start makes of it.
//
//	CIMID_FAILPOINT=POINT:before|after:N
//	    kill the agent right before, or right after, the Nth time (counted
//	    from the agent's start) it passes POINT. POINT is a driver method
//	    (DefineDomain:after:1, Start:before:2), job.STATE for the store of
//	    a Job's move to RUNNING, SUCCESS, FAILED or STOPPED
//	    (job.SUCCESS:before:1), or qemu-img.SUBCOMMAND: those belong to a
//	    qemu-img wrapper the test puts first in PATH, and the agent ignores
//	    them. A qemu-img point may also fail (qemu-img.convert:fail:1):
//	    the wrapper exits 1 instead of running qemu-img. The wrapper counts
//	    its runs in the trace, so qemu-img points need the trace too.
//	CIMID_FAILPOINT_TRACE=FILE
//	    append one line "SOURCE NAME N" to FILE at every point, N counting
//	    the passes of that point from the agent's start: "driver Start 1",
//	    "job SUCCESS 2"; the qemu-img wrapper appends "qemu-img convert 1"
//	    lines to the same file.
const (
	envFailpoint      = "CIMID_FAILPOINT"
	envFailpointTrace = "CIMID_FAILPOINT_TRACE"
)

// failpoint is one parsed CIMID_FAILPOINT.
type failpoint struct {
	point string // "Start", "job.SUCCESS", "qemu-img.convert"
	after bool
	n     int
}

// parseFailpoint reads POINT:before|after:N.
func parseFailpoint(s string) (failpoint, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return failpoint{}, fmt.Errorf("%s=%q: want POINT:before|after:N", envFailpoint, s)
	}
	fp := failpoint{point: parts[0]}
	switch parts[1] {
	case "before":
	case "after":
		fp.after = true
	case "fail":
		if !strings.HasPrefix(fp.point, "qemu-img.") {
			return failpoint{}, fmt.Errorf("%s=%q: only qemu-img points fail; the others kill before or after", envFailpoint, s)
		}
	default:
		return failpoint{}, fmt.Errorf("%s=%q: %q is neither before nor after", envFailpoint, s, parts[1])
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 {
		return failpoint{}, fmt.Errorf("%s=%q: N must be a positive number", envFailpoint, s)
	}
	fp.n = n
	return fp, nil
}

// failpoints counts the passes of every point, traces them and kills the
// agent at the armed one.
type failpoints struct {
	log   *slog.Logger
	armed *failpoint // nil: trace only

	mu       sync.Mutex
	passes   map[string]int
	trace    *os.File
	afterJob string // the Job whose armed transition is being stored
}

// newFailpoints reads the environment; it returns nil when no failpoint
// variable is set.
func newFailpoints(log *slog.Logger) (*failpoints, error) {
	spec, tracePath := os.Getenv(envFailpoint), os.Getenv(envFailpointTrace)
	if spec == "" && tracePath == "" {
		return nil, nil
	}
	f := &failpoints{log: log.With("component", "failpoint"), passes: map[string]int{}}
	if spec != "" {
		fp, err := parseFailpoint(spec)
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(fp.point, "qemu-img."):
		case driverMethods[fp.point], jobStates[fp.point]:
			f.armed = &fp
		default:
			return nil, fmt.Errorf("%s=%q: no such point (a driver method, job.STATE or qemu-img.SUBCOMMAND)", envFailpoint, spec)
		}
		f.log.Warn("failpoint armed", "failpoint", spec)
	}
	if tracePath != "" {
		file, err := os.OpenFile(tracePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envFailpointTrace, err)
		}
		f.trace = file
	}
	return f, nil
}

// driverMethods are the driver methods a failpoint may name: those
// failpointDriver puts through the failpoints, one method each below.
var driverMethods = map[string]bool{
	"Ping": true, "DefineDomain": true, "UndefineDomain": true, "DomainStatus": true, "ListDomains": true, "SetMetadata": true,
	"Start": true, "Shutdown": true, "Destroy": true, "Reboot": true, "Reset": true, "Pause": true, "Resume": true, "ManagedSave": true,
	"EnsurePool": true, "RefreshPool": true, "ListPoolVolumes": true,
	"AttachDisk": true, "DetachDisk": true, "ResizeDisk": true, "AttachNIC": true, "DetachNIC": true, "DomainNICs": true,
	"CreateSnapshot": true, "RevertSnapshot": true, "DeleteSnapshot": true, "ListSnapshots": true,
	"DefineNetwork": true, "UndefineNetwork": true, "ListNetworks": true, "DHCPLeases": true, "AddDHCPHost": true, "RemoveDHCPHost": true,
	"AllDomainStats": true,
}

// jobStates are the Job transitions a failpoint may name.
var jobStates = map[string]bool{
	"job." + job.Running: true, "job." + job.Success: true, "job." + job.Failed: true, "job." + job.Stopped: true,
}

// pass counts and traces one pass of a point; it reports whether the
// armed failpoint is this pass.
func (f *failpoints) pass(source, point string) bool {
	f.mu.Lock()
	f.passes[point]++
	n := f.passes[point]
	if f.trace != nil {
		// One write per line: O_APPEND keeps lines whole beside the
		// qemu-img wrapper's.
		name := strings.TrimPrefix(point, source+".")
		if _, err := f.trace.WriteString(source + " " + name + " " + strconv.Itoa(n) + "\n"); err != nil {
			f.log.Error("write failpoint trace", "err", err)
		}
	}
	f.mu.Unlock()
	return f.armed != nil && f.armed.point == point && f.armed.n == n
}

// around runs fn between the checks of one pass of point.
func (f *failpoints) around(source, point string, fn func() error) error {
	hit := f.pass(source, point)
	if hit && !f.armed.after {
		f.kill(point)
	}
	err := fn()
	if hit && f.armed.after {
		f.kill(point)
	}
	return err
}

func (f *failpoints) kill(point string) {
	when := "before"
	if f.armed.after {
		when = "after"
	}
	f.log.Warn("failpoint reached: killing the agent", "point", point, "when", when, "pass", f.armed.n)
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		f.log.Error("failpoint: kill", "err", err)
	}
	select {} // the signal is on its way
}

// jobTransition is the Job runner's transition hook. A kill after a
// transition waits for the store of the same Job's transition.
func (f *failpoints) jobTransition(rec job.Record, state string, stored bool) {
	point := "job." + state
	if !stored {
		if !f.pass("job", point) {
			return
		}
		if !f.armed.after {
			f.kill(point)
		}
		f.mu.Lock()
		f.afterJob = rec.ID
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	hit := f.afterJob != "" && f.afterJob == rec.ID
	f.mu.Unlock()
	if hit {
		f.kill(point)
	}
}

// failpointDriver puts every driver call through the failpoints.
type failpointDriver struct {
	hypervisor.Driver
	fp *failpoints
}

func (d *failpointDriver) call(method string, fn func() error) error {
	return d.fp.around("driver", method, fn)
}

func (d *failpointDriver) Ping(ctx context.Context) error {
	return d.call("Ping", func() error { return d.Driver.Ping(ctx) })
}

func (d *failpointDriver) DefineDomain(ctx context.Context, spec hypervisor.DomainSpec) error {
	return d.call("DefineDomain", func() error { return d.Driver.DefineDomain(ctx, spec) })
}

func (d *failpointDriver) UndefineDomain(ctx context.Context, name string) error {
	return d.call("UndefineDomain", func() error { return d.Driver.UndefineDomain(ctx, name) })
}

func (d *failpointDriver) DomainStatus(ctx context.Context, name string) (st hypervisor.DomainStatus, err error) {
	err = d.call("DomainStatus", func() error { st, err = d.Driver.DomainStatus(ctx, name); return err })
	return st, err
}

func (d *failpointDriver) ListDomains(ctx context.Context) (list []hypervisor.DomainStatus, err error) {
	err = d.call("ListDomains", func() error { list, err = d.Driver.ListDomains(ctx); return err })
	return list, err
}

func (d *failpointDriver) SetMetadata(ctx context.Context, name string, md hypervisor.Metadata) error {
	return d.call("SetMetadata", func() error { return d.Driver.SetMetadata(ctx, name, md) })
}

func (d *failpointDriver) Start(ctx context.Context, name string) error {
	return d.call("Start", func() error { return d.Driver.Start(ctx, name) })
}

func (d *failpointDriver) Shutdown(ctx context.Context, name string) error {
	return d.call("Shutdown", func() error { return d.Driver.Shutdown(ctx, name) })
}

func (d *failpointDriver) Destroy(ctx context.Context, name string) error {
	return d.call("Destroy", func() error { return d.Driver.Destroy(ctx, name) })
}

func (d *failpointDriver) Reboot(ctx context.Context, name string) error {
	return d.call("Reboot", func() error { return d.Driver.Reboot(ctx, name) })
}

func (d *failpointDriver) Reset(ctx context.Context, name string) error {
	return d.call("Reset", func() error { return d.Driver.Reset(ctx, name) })
}

func (d *failpointDriver) Pause(ctx context.Context, name string) error {
	return d.call("Pause", func() error { return d.Driver.Pause(ctx, name) })
}

func (d *failpointDriver) Resume(ctx context.Context, name string) error {
	return d.call("Resume", func() error { return d.Driver.Resume(ctx, name) })
}

func (d *failpointDriver) ManagedSave(ctx context.Context, name string) error {
	return d.call("ManagedSave", func() error { return d.Driver.ManagedSave(ctx, name) })
}

func (d *failpointDriver) EnsurePool(ctx context.Context, name, dir string) error {
	return d.call("EnsurePool", func() error { return d.Driver.EnsurePool(ctx, name, dir) })
}

func (d *failpointDriver) RefreshPool(ctx context.Context, name string) error {
	return d.call("RefreshPool", func() error { return d.Driver.RefreshPool(ctx, name) })
}

func (d *failpointDriver) ListPoolVolumes(ctx context.Context, name string) (list []hypervisor.PoolVolume, err error) {
	err = d.call("ListPoolVolumes", func() error { list, err = d.Driver.ListPoolVolumes(ctx, name); return err })
	return list, err
}

func (d *failpointDriver) AttachDisk(ctx context.Context, domain string, disk hypervisor.Disk, live bool) error {
	return d.call("AttachDisk", func() error { return d.Driver.AttachDisk(ctx, domain, disk, live) })
}

func (d *failpointDriver) DetachDisk(ctx context.Context, domain, target string, live bool) error {
	return d.call("DetachDisk", func() error { return d.Driver.DetachDisk(ctx, domain, target, live) })
}

func (d *failpointDriver) ResizeDisk(ctx context.Context, domain, target string, sizeBytes uint64) error {
	return d.call("ResizeDisk", func() error { return d.Driver.ResizeDisk(ctx, domain, target, sizeBytes) })
}

func (d *failpointDriver) AttachNIC(ctx context.Context, domain string, nic hypervisor.NIC, live bool) error {
	return d.call("AttachNIC", func() error { return d.Driver.AttachNIC(ctx, domain, nic, live) })
}

func (d *failpointDriver) DetachNIC(ctx context.Context, domain, mac string, live bool) error {
	return d.call("DetachNIC", func() error { return d.Driver.DetachNIC(ctx, domain, mac, live) })
}

func (d *failpointDriver) DomainNICs(ctx context.Context, domain string) (list []hypervisor.NIC, err error) {
	err = d.call("DomainNICs", func() error { list, err = d.Driver.DomainNICs(ctx, domain); return err })
	return list, err
}

func (d *failpointDriver) CreateSnapshot(ctx context.Context, domain, name string) (info hypervisor.SnapshotInfo, err error) {
	err = d.call("CreateSnapshot", func() error { info, err = d.Driver.CreateSnapshot(ctx, domain, name); return err })
	return info, err
}

func (d *failpointDriver) RevertSnapshot(ctx context.Context, domain, name string) error {
	return d.call("RevertSnapshot", func() error { return d.Driver.RevertSnapshot(ctx, domain, name) })
}

func (d *failpointDriver) DeleteSnapshot(ctx context.Context, domain, name string) error {
	return d.call("DeleteSnapshot", func() error { return d.Driver.DeleteSnapshot(ctx, domain, name) })
}

func (d *failpointDriver) ListSnapshots(ctx context.Context, domain string) (list []hypervisor.SnapshotInfo, err error) {
	err = d.call("ListSnapshots", func() error { list, err = d.Driver.ListSnapshots(ctx, domain); return err })
	return list, err
}

func (d *failpointDriver) DefineNetwork(ctx context.Context, spec hypervisor.NetworkSpec) error {
	return d.call("DefineNetwork", func() error { return d.Driver.DefineNetwork(ctx, spec) })
}

func (d *failpointDriver) UndefineNetwork(ctx context.Context, name string) error {
	return d.call("UndefineNetwork", func() error { return d.Driver.UndefineNetwork(ctx, name) })
}

func (d *failpointDriver) ListNetworks(ctx context.Context) (list []hypervisor.NetworkStatus, err error) {
	err = d.call("ListNetworks", func() error { list, err = d.Driver.ListNetworks(ctx); return err })
	return list, err
}

func (d *failpointDriver) DHCPLeases(ctx context.Context, network string) (list []hypervisor.Lease, err error) {
	err = d.call("DHCPLeases", func() error { list, err = d.Driver.DHCPLeases(ctx, network); return err })
	return list, err
}

func (d *failpointDriver) AddDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	return d.call("AddDHCPHost", func() error { return d.Driver.AddDHCPHost(ctx, network, host) })
}

func (d *failpointDriver) RemoveDHCPHost(ctx context.Context, network string, host hypervisor.DHCPHost) error {
	return d.call("RemoveDHCPHost", func() error { return d.Driver.RemoveDHCPHost(ctx, network, host) })
}

func (d *failpointDriver) AllDomainStats(ctx context.Context) (list []hypervisor.DomainStats, err error) {
	err = d.call("AllDomainStats", func() error { list, err = d.Driver.AllDomainStats(ctx); return err })
	return list, err
}
