package fake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"cimid/hypervisor"
)

// domain is one fake domain. spec is its persistent definition; live holds
// the devices of the running guest while it is active.
type domain struct {
	spec        hypervisor.DomainSpec
	ours        bool // carries agent metadata
	persistent  bool
	state       hypervisor.State
	managedSave bool
	live        *devices
	bootedAt    time.Time
	// generation changes whenever the domain starts or stops, so that a
	// delayed power-off meant for an earlier boot does nothing.
	generation int
	snapshots  []snapshot
	diskSizes  map[string]uint64

	boots, reboots, resets, shutdownRequests int
}

type devices struct {
	disks []hypervisor.Disk
	nics  []hypervisor.NIC
}

func (dom *domain) active() bool {
	return dom.state == hypervisor.StateRunning || dom.state == hypervisor.StatePaused
}

func (dom *domain) status() hypervisor.DomainStatus {
	st := hypervisor.DomainStatus{
		Name:           dom.spec.Name,
		UUID:           dom.spec.UUID,
		State:          dom.state,
		HasManagedSave: dom.managedSave,
	}
	if dom.ours {
		md := dom.spec.Metadata
		st.Metadata = &md
	}
	return st
}

// DomainInfo is what a test can inspect of a fake domain.
type DomainInfo struct {
	Spec           hypervisor.DomainSpec // persistent definition
	Persistent     bool
	State          hypervisor.State
	HasManagedSave bool
	// LiveDisks and LiveNICs are the devices of the running guest; nil
	// while the domain is not active.
	LiveDisks []hypervisor.Disk
	LiveNICs  []hypervisor.NIC
	// DiskSizes holds the sizes set by ResizeDisk, by target.
	DiskSizes map[string]uint64
	// Counters of what the guest was asked to do.
	Boots, Reboots, Resets, ShutdownRequests int
}

// Domain returns what the fake knows about domain name.
func (d *Driver) Domain(name string) (DomainInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	if !ok {
		return DomainInfo{}, false
	}
	info := DomainInfo{
		Spec:             cloneSpec(dom.spec),
		Persistent:       dom.persistent,
		State:            dom.state,
		HasManagedSave:   dom.managedSave,
		DiskSizes:        maps.Clone(dom.diskSizes),
		Boots:            dom.boots,
		Reboots:          dom.reboots,
		Resets:           dom.resets,
		ShutdownRequests: dom.shutdownRequests,
	}
	if dom.live != nil {
		info.LiveDisks = slices.Clone(dom.live.disks)
		info.LiveNICs = slices.Clone(dom.live.nics)
	}
	return info, true
}

func cloneSpec(s hypervisor.DomainSpec) hypervisor.DomainSpec {
	s.Disks = slices.Clone(s.Disks)
	s.NICs = slices.Clone(s.NICs)
	return s
}

// AddForeignDomain defines a domain the agent does not own: it carries no
// metadata (spec.Metadata is ignored) until SetMetadata gives it some.
func (d *Driver) AddForeignDomain(spec hypervisor.DomainSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.define(spec, false); err != nil {
		return fmt.Errorf("define foreign domain %s: %w", spec.Name, err)
	}
	return nil
}

// DefineDomain creates or replaces the persistent definition. Like libvirt,
// it keeps the UUID of an existing domain when spec.UUID is empty and gives
// NICs without a MAC a random one. A running domain keeps its live devices
// until it stops.
func (d *Driver) DefineDomain(ctx context.Context, spec hypervisor.DomainSpec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "DefineDomain"); err != nil {
		return err
	}
	if err := d.define(spec, true); err != nil {
		return fmt.Errorf("define domain %s: %w", spec.Name, err)
	}
	return nil
}

func (d *Driver) define(spec hypervisor.DomainSpec, ours bool) error {
	if err := validateSpec(spec); err != nil {
		return err
	}
	spec = cloneSpec(spec)
	for i := range spec.NICs {
		if spec.NICs[i].MAC == "" {
			spec.NICs[i].MAC = newMAC()
		}
		spec.NICs[i].Model = cmp.Or(spec.NICs[i].Model, "virtio")
	}
	dom, exists := d.domains[spec.Name]
	switch {
	case !exists:
		spec.UUID = cmp.Or(spec.UUID, newUUID())
		dom = &domain{state: hypervisor.StateShutoff, diskSizes: map[string]uint64{}}
		d.domains[spec.Name] = dom
	case spec.UUID == "":
		spec.UUID = dom.spec.UUID
	case spec.UUID != dom.spec.UUID:
		return fmt.Errorf("domain exists with UUID %s", dom.spec.UUID)
	}
	if !ours {
		spec.Metadata = hypervisor.Metadata{}
	}
	dom.spec, dom.ours, dom.persistent = spec, ours, true
	d.emit(spec.Name, hypervisor.EventDefined)
	return nil
}

func validateSpec(spec hypervisor.DomainSpec) error {
	var errs []error
	if spec.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if spec.Type != hypervisor.DomainKVM && spec.Type != hypervisor.DomainQEMU {
		errs = append(errs, fmt.Errorf("domain type %q", spec.Type))
	}
	if spec.VCPUs < 1 {
		errs = append(errs, fmt.Errorf("%d vCPUs", spec.VCPUs))
	}
	if spec.MemoryKiB == 0 {
		errs = append(errs, errors.New("no memory"))
	}
	for _, disk := range spec.Disks {
		errs = append(errs, validateDisk(disk))
	}
	for i, nic := range spec.NICs {
		if nic.Network == "" {
			errs = append(errs, fmt.Errorf("NIC %d: no network", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid domain spec: %w", err)
	}
	return nil
}

func validateDisk(disk hypervisor.Disk) error {
	device := cmp.Or(disk.Device, "disk")
	switch {
	case device != "disk" && device != "cdrom":
		return fmt.Errorf("device %q is neither disk nor cdrom", disk.Device)
	case disk.Target == "":
		return errors.New("disk without target device")
	case disk.Format == "":
		return fmt.Errorf("%s: no image format", disk.Target)
	case disk.Path == "" && device == "disk":
		return fmt.Errorf("%s: no image path", disk.Target)
	case disk.Shareable && (device != "disk" || disk.Format != "raw"):
		return fmt.Errorf("%s: shared access requires a raw disk, not a %s %s", disk.Target, disk.Format, device)
	}
	return nil
}

// lockImages checks, as QEMU's image locking does, that no other active
// domain has the images of disks open in a way that excludes this one: an
// image is open in several running domains only when all of them mark it
// shareable, or all of them only read it.
func (d *Driver) lockImages(self string, disks []hypervisor.Disk) error {
	readOnly := func(disk hypervisor.Disk) bool { return disk.ReadOnly || disk.Device == "cdrom" }
	for _, disk := range disks {
		if disk.Path == "" {
			continue
		}
		for name, other := range d.domains {
			if name == self || other.live == nil {
				continue
			}
			for _, held := range other.live.disks {
				if held.Path != disk.Path || disk.Shareable && held.Shareable || readOnly(disk) && readOnly(held) {
					continue
				}
				return fmt.Errorf("%s: image %s is in use by domain %s: failed to get shared \"write\" lock", disk.Target, disk.Path, name)
			}
		}
	}
	return nil
}

// UndefineDomain removes the definition with its managed save image and
// snapshots. A running domain keeps running as a transient one and
// disappears when it stops. A missing domain is not an error.
func (d *Driver) UndefineDomain(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "UndefineDomain"); err != nil {
		return err
	}
	dom, ok := d.domains[name]
	if !ok || !dom.persistent {
		return nil
	}
	dom.managedSave = false
	dom.snapshots = nil
	if dom.active() {
		dom.persistent = false
	} else {
		delete(d.domains, name)
	}
	d.emit(name, hypervisor.EventUndefined)
	return nil
}

// DomainStatus returns an error wrapping ErrNotFound for a missing domain.
func (d *Driver) DomainStatus(ctx context.Context, name string) (hypervisor.DomainStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "DomainStatus"); err != nil {
		return hypervisor.DomainStatus{}, err
	}
	dom, err := d.domain(name)
	if err != nil {
		return hypervisor.DomainStatus{}, fmt.Errorf("status of domain %s: %w", name, err)
	}
	return dom.status(), nil
}

// ListDomains lists every domain, sorted by name.
func (d *Driver) ListDomains(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "ListDomains"); err != nil {
		return nil, err
	}
	list := make([]hypervisor.DomainStatus, 0, len(d.domains))
	for _, dom := range d.domains {
		list = append(list, dom.status())
	}
	slices.SortFunc(list, func(a, b hypervisor.DomainStatus) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// SetMetadata replaces the agent metadata; a foreign domain becomes ours.
// Like the libvirt driver, it emits no lifecycle event.
func (d *Driver) SetMetadata(ctx context.Context, name string, md hypervisor.Metadata) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "SetMetadata"); err != nil {
		return err
	}
	dom, err := d.domain(name)
	if err != nil {
		return fmt.Errorf("set metadata of domain %s: %w", name, err)
	}
	dom.spec.Metadata, dom.ours = md, true
	return nil
}

func (d *Driver) domain(name string) (*domain, error) {
	dom, ok := d.domains[name]
	if !ok {
		return nil, notFound("no domain " + name)
	}
	return dom, nil
}

// operate runs fn on domain name after the usual checks, wrapping its error
// as "verb domain name".
func (d *Driver) operate(ctx context.Context, method, verb, name string, fn func(*domain) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, method); err != nil {
		return err
	}
	dom, err := d.domain(name)
	if err == nil {
		err = fn(dom)
	}
	if err != nil {
		return fmt.Errorf("%s domain %s: %w", verb, name, err)
	}
	return nil
}

var (
	errNotRunning = errors.New("domain is not running")
	errNotActive  = errors.New("domain is not active")
)

// Start boots the domain, or restores it from its managed save image. An
// active domain is left as it is. Every NIC's network must exist and run,
// and no other running domain may hold its images (see lockImages).
func (d *Driver) Start(ctx context.Context, name string) error {
	return d.operate(ctx, "Start", "start", name, func(dom *domain) error {
		if dom.active() {
			return nil
		}
		for _, nic := range dom.spec.NICs {
			if nw, ok := d.networks[nic.Network]; !ok || !nw.active {
				return fmt.Errorf("network %q is not running", nic.Network)
			}
		}
		if err := d.lockImages(name, dom.spec.Disks); err != nil {
			return err
		}
		dom.state = hypervisor.StateRunning
		dom.managedSave = false
		dom.live = &devices{disks: slices.Clone(dom.spec.Disks), nics: slices.Clone(dom.spec.NICs)}
		dom.bootedAt = time.Now()
		dom.generation++
		dom.boots++
		d.emit(name, hypervisor.EventStarted)
		return nil
	})
}

// Shutdown presses the ACPI power button. A running guest powers off after
// the shutdown delay unless it ignores ACPI; a paused guest cannot react.
// A domain that is not active needs no shutdown.
func (d *Driver) Shutdown(ctx context.Context, name string) error {
	return d.operate(ctx, "Shutdown", "shut down", name, func(dom *domain) error {
		if !dom.active() {
			return nil
		}
		dom.shutdownRequests++
		if dom.state != hypervisor.StateRunning || d.ignoreACPI[name] {
			return nil
		}
		if d.shutdownDelay <= 0 {
			d.stop(dom, hypervisor.EventShutdown, hypervisor.EventStopped)
			return nil
		}
		gen := dom.generation
		time.AfterFunc(d.shutdownDelay, func() { d.delayedPowerOff(name, gen) })
		return nil
	})
}

func (d *Driver) delayedPowerOff(name string, generation int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.domains[name]
	if d.closed || !ok || dom.generation != generation || dom.state != hypervisor.StateRunning {
		return
	}
	d.stop(dom, hypervisor.EventShutdown, hypervisor.EventStopped)
}

// stop turns an active domain off, removing it when it is transient.
func (d *Driver) stop(dom *domain, events ...hypervisor.EventKind) {
	dom.state = hypervisor.StateShutoff
	dom.live = nil
	dom.generation++
	name := dom.spec.Name
	d.emit(name, events...)
	if !dom.persistent {
		delete(d.domains, name)
	}
}

// Destroy powers the domain off at once; one that is not active is left as
// it is.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	return d.operate(ctx, "Destroy", "destroy", name, func(dom *domain) error {
		if dom.active() {
			d.stop(dom, hypervisor.EventStopped)
		}
		return nil
	})
}

// Reboot asks a running guest to reboot through ACPI; it counts in
// DomainInfo.Reboots unless the guest ignores ACPI. Like libvirt, it emits
// no lifecycle event.
func (d *Driver) Reboot(ctx context.Context, name string) error {
	return d.operate(ctx, "Reboot", "reboot", name, func(dom *domain) error {
		if dom.state != hypervisor.StateRunning {
			return errNotRunning
		}
		if !d.ignoreACPI[name] {
			dom.reboots++
		}
		return nil
	})
}

// Reset resets an active domain; it counts in DomainInfo.Resets.
func (d *Driver) Reset(ctx context.Context, name string) error {
	return d.operate(ctx, "Reset", "reset", name, func(dom *domain) error {
		if !dom.active() {
			return errNotActive
		}
		dom.resets++
		return nil
	})
}

// Pause suspends a running domain; a paused one stays paused.
func (d *Driver) Pause(ctx context.Context, name string) error {
	return d.operate(ctx, "Pause", "pause", name, func(dom *domain) error {
		switch dom.state {
		case hypervisor.StatePaused:
			return nil
		case hypervisor.StateRunning:
			dom.state = hypervisor.StatePaused
			d.emit(name, hypervisor.EventSuspended)
			return nil
		}
		return errNotRunning
	})
}

// Resume resumes a paused domain; a running one keeps running.
func (d *Driver) Resume(ctx context.Context, name string) error {
	return d.operate(ctx, "Resume", "resume", name, func(dom *domain) error {
		switch dom.state {
		case hypervisor.StateRunning:
			return nil
		case hypervisor.StatePaused:
			dom.state = hypervisor.StateRunning
			d.emit(name, hypervisor.EventResumed)
			return nil
		}
		return errNotRunning
	})
}

// ManagedSave stops an active domain with a managed save image that the
// next Start restores.
func (d *Driver) ManagedSave(ctx context.Context, name string) error {
	return d.operate(ctx, "ManagedSave", "save", name, func(dom *domain) error {
		if !dom.active() {
			return errNotActive
		}
		if !dom.persistent {
			return errors.New("cannot save a transient domain")
		}
		d.stop(dom, hypervisor.EventStopped)
		dom.managedSave = true
		return nil
	})
}

// GuestPowerOff simulates a guest that powers itself off.
func (d *Driver) GuestPowerOff(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.domain(name)
	if err != nil {
		return err
	}
	if !dom.active() {
		return fmt.Errorf("domain %s: %w", name, errNotActive)
	}
	d.stop(dom, hypervisor.EventShutdown, hypervisor.EventStopped)
	return nil
}

// Crash simulates a guest kernel panic: with on_crash=destroy the domain
// ends shut off, after a crashed and a stopped event.
func (d *Driver) Crash(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.domain(name)
	if err != nil {
		return err
	}
	if !dom.active() {
		return fmt.Errorf("domain %s: %w", name, errNotActive)
	}
	d.stop(dom, hypervisor.EventCrashed, hypervisor.EventStopped)
	return nil
}
