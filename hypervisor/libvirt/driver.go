package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// Driver is a hypervisor.Driver on one libvirt URI. It is safe for
// concurrent use. While the connection is lost, methods fail at once with an
// error wrapping hypervisor.ErrUnavailable and a supervisor goroutine
// reconnects in the background.
type Driver struct {
	uri    string
	log    *slog.Logger
	events *eventQueue

	mu      sync.Mutex
	current *session // nil while disconnected or after Close
	closed  bool

	wake      chan struct{} // capacity 1: "check the session"
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the supervisor has returned
	retiring  sync.WaitGroup
	closeOnce sync.Once
}

var _ hypervisor.Driver = (*Driver)(nil)

// Open connects to the libvirt daemon at uri (for instance "qemu:///system")
// and starts delivering lifecycle events. It fails with an error wrapping
// hypervisor.ErrUnavailable when the daemon cannot be reached.
func Open(ctx context.Context, uri string, logger *slog.Logger) (*Driver, error) {
	if err := startEventLoop(); err != nil {
		return nil, fmt.Errorf("start libvirt event loop: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	d := &Driver{
		uri:    uri,
		log:    logger.With("uri", uri),
		events: newEventQueue(),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s, err := d.dialContext(ctx)
	if err != nil {
		d.events.close()
		return nil, fmt.Errorf("connect to libvirt at %s: %w", uri, err)
	}
	d.current = s
	go d.supervise()
	return d, nil
}

// Close releases the connection and stops event delivery: the Events channel
// is closed. Calls still in flight are waited for.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		s := d.current
		d.current = nil
		d.mu.Unlock()

		close(d.stop)
		<-d.done
		if s != nil {
			s.close()
		}
		d.retiring.Wait()
		d.events.close()
	})
	return nil
}

// Events delivers lifecycle events of every domain on the host, plus an
// Event{Reconnected: true} after each reconnection, until Close.
func (d *Driver) Events() <-chan hypervisor.Event {
	return d.events.out
}

// Ping reports whether libvirtd answers a round trip.
func (d *Driver) Ping(ctx context.Context) error {
	err := d.call(ctx, func(c *libvirt.Connect) error {
		_, err := c.GetLibVersion()
		return err
	})
	if err != nil {
		return fmt.Errorf("ping libvirt at %s: %w", d.uri, err)
	}
	return nil
}

// call runs fn on the current connection. When ctx ends first, call returns
// ctx's error at once and fn finishes in the background: libvirt calls cannot
// be interrupted, so the operation may still take effect.
func (d *Driver) call(ctx context.Context, fn func(*libvirt.Connect) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := d.acquire()
	if err != nil {
		return err
	}
	result := make(chan error, 1)
	go func() {
		defer s.users.Done()
		err := classify(fn(s.conn))
		if err != nil && isUnavailable(err) {
			d.nudge()
		}
		result <- err
	}()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire returns the current session with one more user registered.
func (d *Driver) acquire() (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return nil, fmt.Errorf("libvirt driver closed: %w", hypervisor.ErrUnavailable)
	case d.current == nil:
		return nil, fmt.Errorf("connection lost, reconnecting: %w", hypervisor.ErrUnavailable)
	}
	d.current.users.Add(1)
	return d.current, nil
}

// nudge asks the supervisor to check the session. It never blocks, so it is
// safe in libvirt callbacks.
func (d *Driver) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// onLifecycle is the libvirt lifecycle callback; it must not block.
func (d *Driver) onLifecycle(_ *libvirt.Connect, dom *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
	name, err := dom.GetName()
	if err != nil {
		return
	}
	d.events.push(hypervisor.Event{Domain: name, Kind: eventKind(ev.Event)})
}

// dialContext dials a session, giving up when ctx ends; a session that
// arrives after that is closed.
func (d *Driver) dialContext(ctx context.Context) (*session, error) {
	type dialed struct {
		s   *session
		err error
	}
	result := make(chan dialed, 1)
	go func() {
		s, err := dial(d.uri, d.nudge, d.onLifecycle)
		result <- dialed{s, err}
	}()
	select {
	case r := <-result:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-result; r.s != nil {
				r.s.close()
			}
		}()
		return nil, fmt.Errorf("%w: %w", hypervisor.ErrUnavailable, ctx.Err())
	}
}
