package libvirt

import (
	"context"
	"fmt"

	"libvirt.org/go/libvirt"
)

// Start boots name, or restores it from its managed save image. Starting a
// domain that is already active (running or paused) succeeds and changes
// nothing.
func (d *Driver) Start(ctx context.Context, name string) error {
	return d.operate(ctx, "start", name, func(dom *libvirt.Domain) error {
		if err := dom.Create(); err != nil && !reached(dom, true) {
			return err
		}
		return nil
	})
}

// Shutdown presses the ACPI power button of name. A domain that is already
// off needs no shutdown: that succeeds, so that a re-sent request racing the
// guest's own power-off does not fail.
func (d *Driver) Shutdown(ctx context.Context, name string) error {
	return d.operate(ctx, "shut down", name, func(dom *libvirt.Domain) error {
		err := withFallback(
			func() error { return dom.ShutdownFlags(libvirt.DOMAIN_SHUTDOWN_ACPI_POWER_BTN) },
			dom.Shutdown)
		if err != nil && !reached(dom, false) {
			return err
		}
		return nil
	})
}

// Destroy powers name off at once. Destroying a domain that is not running
// succeeds.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	return d.operate(ctx, "destroy", name, func(dom *libvirt.Domain) error {
		if err := dom.Destroy(); err != nil && !reached(dom, false) {
			return err
		}
		return nil
	})
}

// Reboot presses the ACPI reboot of name.
func (d *Driver) Reboot(ctx context.Context, name string) error {
	return d.operate(ctx, "reboot", name, func(dom *libvirt.Domain) error {
		return withFallback(
			func() error { return dom.Reboot(libvirt.DOMAIN_REBOOT_ACPI_POWER_BTN) },
			func() error { return dom.Reboot(0) })
	})
}

// Reset resets name like its reset button.
func (d *Driver) Reset(ctx context.Context, name string) error {
	return d.operate(ctx, "reset", name, func(dom *libvirt.Domain) error {
		return dom.Reset(0)
	})
}

// Pause suspends the vCPUs of name.
func (d *Driver) Pause(ctx context.Context, name string) error {
	return d.operate(ctx, "pause", name, func(dom *libvirt.Domain) error {
		return dom.Suspend()
	})
}

// Resume resumes the vCPUs of name.
func (d *Driver) Resume(ctx context.Context, name string) error {
	return d.operate(ctx, "resume", name, func(dom *libvirt.Domain) error {
		return dom.Resume()
	})
}

// ManagedSave saves the memory of name to its managed save image and stops
// it; the next Start restores it.
func (d *Driver) ManagedSave(ctx context.Context, name string) error {
	return d.operate(ctx, "save", name, func(dom *libvirt.Domain) error {
		return dom.ManagedSave(0)
	})
}

// operate runs fn on domain name and wraps its error as "verb domain name".
func (d *Driver) operate(ctx context.Context, verb, name string, fn func(*libvirt.Domain) error) error {
	if err := d.withDomain(ctx, name, fn); err != nil {
		return fmt.Errorf("%s domain %s: %w", verb, name, err)
	}
	return nil
}

// withFallback runs preferred, and fallback when the driver does not support
// what preferred asked for (the test driver knows no shutdown modes).
func withFallback(preferred, fallback func() error) error {
	err := preferred()
	if hasCode(err, libvirt.ERR_INVALID_ARG) || hasCode(err, libvirt.ERR_NO_SUPPORT) {
		return fallback()
	}
	return err
}

// reached reports whether dom is known to be running (wantActive) or known
// not to be: an operation that failed but left the domain where it was meant
// to go has nothing to report.
func reached(dom *libvirt.Domain, wantActive bool) bool {
	active, err := dom.IsActive()
	return err == nil && active == wantActive
}
