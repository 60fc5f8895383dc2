package libvirt

import (
	"errors"
	"time"

	"cimid/hypervisor"
)

// Reconnection backoff: the first attempt is immediate, then the delay
// doubles up to the maximum.
const (
	reconnectMinDelay = 200 * time.Millisecond
	reconnectMaxDelay = 10 * time.Second
)

// supervise watches the session and replaces it when it is lost. It is woken
// by the close callback and by calls that failed on the connection.
func (d *Driver) supervise() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		}
		s := d.session()
		if s == nil || s.alive() {
			continue
		}
		d.log.Warn("lost connection to libvirt", "reason", s.closeReason())
		d.retire(s)
		if !d.reconnect() {
			return
		}
		d.events.push(hypervisor.Event{Reconnected: true})
	}
}

func (d *Driver) session() *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// retire detaches s so that new calls fail fast, and closes it once the calls
// in flight have returned.
func (d *Driver) retire(s *session) {
	d.mu.Lock()
	if d.current == s {
		d.current = nil
	}
	d.mu.Unlock()

	d.retiring.Add(1)
	go func() {
		defer d.retiring.Done()
		s.close()
	}()
}

// reconnect dials until it succeeds or the driver is closed, backing off
// between attempts. It reports whether a new session is in place.
func (d *Driver) reconnect() bool {
	delay := reconnectMinDelay
	for attempt := 1; ; attempt++ {
		s, err := dial(d.uri, d.nudge, d.onLifecycle)
		if err == nil {
			return d.install(s, attempt)
		}
		d.log.Warn("reconnect to libvirt failed", "attempt", attempt, "retry_in", delay, "err", err)
		if !d.sleep(delay) {
			return false
		}
		delay = min(2*delay, reconnectMaxDelay)
	}
}

// install makes s the current session unless the driver was closed meanwhile.
func (d *Driver) install(s *session, attempt int) bool {
	d.mu.Lock()
	closed := d.closed
	if !closed {
		d.current = s
	}
	d.mu.Unlock()
	if closed {
		s.close()
		return false
	}
	d.log.Info("reconnected to libvirt", "attempts", attempt)
	return true
}

// sleep waits for delay and reports false when the driver is closed first.
func (d *Driver) sleep(delay time.Duration) bool {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.stop:
		return false
	}
}

func isUnavailable(err error) bool {
	return errors.Is(err, hypervisor.ErrUnavailable)
}
