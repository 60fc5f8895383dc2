// Package fake is an in-memory hypervisor.Driver for tests of the agent. It
// keeps domains, storage pools (real directories), devices, snapshots,
// networks and statistics in memory, follows the state transitions of a
// libvirt host, and emits the lifecycle events libvirt emits for each
// change (definitions, run state changes, snapshot reverts; device and
// metadata changes emit none, as on libvirt 9.0). Tests steer
// it through hooks: a libvirtd that goes away (SetUnavailable), failures of
// single calls (FailNext), guests that power off slowly or ignore the ACPI
// power button, guests that power off or crash by themselves, DHCP leases
// and statistics counters.
//
// It is safe for concurrent use. Where the fake and the libvirt driver
// differ, the libvirt driver is right; the differences are documented on
// the methods.
package fake

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"

	"cimid/hypervisor"
)

// Driver is the fake hypervisor. The zero value is not usable; call New.
type Driver struct {
	events *eventQueue

	mu            sync.Mutex
	closed        bool
	unavailable   bool
	failures      map[string][]error
	shutdownDelay time.Duration
	ignoreACPI    map[string]bool // by domain name, also before the domain exists
	domains       map[string]*domain
	pools         map[string]string // name -> directory
	networks      map[string]*network
	stats         map[string]hypervisor.DomainStats
	statsCalls    int
	bridgeSeq     int
}

var _ hypervisor.Driver = (*Driver)(nil)

// New returns an empty fake hypervisor: no domains, pools or networks, and
// guests that power off as soon as the ACPI power button is pressed.
func New() *Driver {
	return &Driver{
		events:     newEventQueue(),
		failures:   map[string][]error{},
		ignoreACPI: map[string]bool{},
		domains:    map[string]*domain{},
		pools:      map[string]string{},
		networks:   map[string]*network{},
		stats:      map[string]hypervisor.DomainStats{},
	}
}

// methods are the names FailNext accepts: those of hypervisor.Driver that
// talk to the hypervisor.
var methods = []string{
	"Ping", "DefineDomain", "UndefineDomain", "DomainStatus", "ListDomains", "SetMetadata",
	"Start", "Shutdown", "Destroy", "Reboot", "Reset", "Pause", "Resume", "ManagedSave",
	"EnsurePool", "RefreshPool", "ListPoolVolumes",
	"AttachDisk", "DetachDisk", "ResizeDisk", "AttachNIC", "DetachNIC", "DomainNICs",
	"CreateSnapshot", "RevertSnapshot", "DeleteSnapshot", "ListSnapshots",
	"DefineNetwork", "UndefineNetwork", "ListNetworks", "DHCPLeases", "AddDHCPHost", "RemoveDHCPHost",
	"AllDomainStats",
}

// FailNext makes the next call of method (a hypervisor.Driver method name,
// such as "Start") fail with err, before it changes anything. Calls queue
// up: two FailNext for the same method fail its next two calls. An unknown
// method name panics, so that a typo does not pass silently.
func (d *Driver) FailNext(method string, err error) {
	if !slices.Contains(methods, method) {
		panic(fmt.Sprintf("fake: FailNext: no driver method %q", method))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures[method] = append(d.failures[method], err)
}

// SetUnavailable simulates libvirtd going away (true) and coming back
// (false). While it is away every method fails with an error wrapping
// hypervisor.ErrUnavailable and changes nothing; when it comes back, an
// Event{Reconnected: true} is emitted. Domains keep running meanwhile.
func (d *Driver) SetUnavailable(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	was := d.unavailable
	d.unavailable = down
	if was && !down {
		d.events.push(hypervisor.Event{Reconnected: true})
	}
}

// SetShutdownDelay sets how long a guest takes to power off after the ACPI
// power button was pressed; 0 (the default) powers it off during Shutdown.
func (d *Driver) SetShutdownDelay(delay time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.shutdownDelay = delay
}

// SetIgnoresACPI makes the guest of domain name ignore (or no longer
// ignore) the ACPI power button and ACPI reboot requests. It may be called
// before the domain is defined.
func (d *Driver) SetIgnoresACPI(name string, ignore bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ignoreACPI[name] = ignore
}

// Ping fails only while the hypervisor is unavailable or the driver closed.
func (d *Driver) Ping(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.enter(ctx, "Ping")
}

// Close stops event delivery and makes every later call fail with
// hypervisor.ErrUnavailable.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.events.close()
	return nil
}

// Events delivers the lifecycle events of every change until Close. Events
// queue up without bound until they are read.
func (d *Driver) Events() <-chan hypervisor.Event {
	return d.events.out
}

// enter checks, with d.mu held, whether a call of method may proceed.
func (d *Driver) enter(ctx context.Context, method string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case d.closed:
		return fmt.Errorf("fake hypervisor closed: %w", hypervisor.ErrUnavailable)
	case d.unavailable:
		return fmt.Errorf("fake hypervisor down: %w", hypervisor.ErrUnavailable)
	}
	if queued := d.failures[method]; len(queued) > 0 {
		d.failures[method] = queued[1:]
		return queued[0]
	}
	return nil
}

// emit queues a lifecycle event of domain name.
func (d *Driver) emit(name string, kinds ...hypervisor.EventKind) {
	for _, k := range kinds {
		d.events.push(hypervisor.Event{Domain: name, Kind: k})
	}
}

func notFound(what string) error {
	return fmt.Errorf("%s: %w", what, hypervisor.ErrNotFound)
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newMAC returns a random address under QEMU's prefix.
func newMAC() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
}

// eventQueue hands events to the consumer of out without ever blocking the
// sender.
type eventQueue struct {
	out  chan hypervisor.Event
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending []hypervisor.Event
	closed  bool
}

func newEventQueue() *eventQueue {
	q := &eventQueue{
		out:  make(chan hypervisor.Event),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go q.run()
	return q
}

func (q *eventQueue) push(ev hypervisor.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.pending = append(q.pending, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.pending = nil
	q.mu.Unlock()
	close(q.stop)
	<-q.done
}

func (q *eventQueue) run() {
	defer close(q.done)
	defer close(q.out)
	for {
		q.mu.Lock()
		var ev hypervisor.Event
		ok := len(q.pending) > 0
		if ok {
			ev = q.pending[0]
			q.pending = q.pending[1:]
		}
		q.mu.Unlock()
		if !ok {
			select {
			case <-q.wake:
				continue
			case <-q.stop:
				return
			}
		}
		select {
		case q.out <- ev:
		case <-q.stop:
			return
		}
	}
}
