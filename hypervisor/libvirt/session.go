package libvirt

import (
	"fmt"
	"sync"
	"sync/atomic"

	"libvirt.org/go/libvirt"
)

// Keepalive settings: libvirt declares the connection dead after
// keepaliveInterval*(keepaliveCount+1) seconds without an answer, which
// covers a daemon that hangs instead of exiting.
const (
	keepaliveInterval = 5
	keepaliveCount    = 3
)

// session is one connection to libvirtd together with the callbacks
// registered on it. A session that was lost is never revived: the driver
// dials a new one.
type session struct {
	conn        *libvirt.Connect
	lifecycleID int // -1 when not registered

	// users counts calls in flight; the connection is closed only after they
	// have returned.
	users sync.WaitGroup

	// closedBy is the libvirt.ConnectCloseReason reported by the close
	// callback, or -1 while the connection is believed alive.
	closedBy atomic.Int32
}

// lostNotifier is told, from a libvirt callback, that a session died. It must
// not block.
type lostNotifier func()

// eventSink receives lifecycle events from a libvirt callback. It must not
// block.
type eventSink func(conn *libvirt.Connect, dom *libvirt.Domain, ev *libvirt.DomainEventLifecycle)

// dial opens a connection to uri and subscribes to its close and lifecycle
// events.
func dial(uri string, onLost lostNotifier, onEvent eventSink) (*session, error) {
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, unavailable(err)
	}
	s := &session{conn: conn, lifecycleID: -1}
	s.closedBy.Store(-1)
	if err := s.subscribe(onLost, onEvent); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) subscribe(onLost lostNotifier, onEvent eventSink) error {
	// Drivers without keepalive support (test://) refuse it; remote ones
	// accept it, and that is where it matters.
	_ = s.conn.SetKeepAlive(keepaliveInterval, keepaliveCount)

	err := s.conn.RegisterCloseCallback(func(_ *libvirt.Connect, reason libvirt.ConnectCloseReason) {
		s.closedBy.Store(int32(reason))
		onLost()
	})
	if err != nil {
		return fmt.Errorf("register close callback: %w", classify(err))
	}
	id, err := s.conn.DomainEventLifecycleRegister(nil, libvirt.DomainEventLifecycleCallback(onEvent))
	if err != nil {
		return fmt.Errorf("register lifecycle events: %w", classify(err))
	}
	s.lifecycleID = id
	return nil
}

// alive reports whether the connection still works as far as the client can
// tell without a round trip.
func (s *session) alive() bool {
	if s.closedBy.Load() >= 0 {
		return false
	}
	ok, err := s.conn.IsAlive()
	return err == nil && ok
}

// closeReason describes why the connection was lost, for logs.
func (s *session) closeReason() string {
	switch libvirt.ConnectCloseReason(s.closedBy.Load()) {
	case libvirt.CONNECT_CLOSE_REASON_ERROR:
		return "error"
	case libvirt.CONNECT_CLOSE_REASON_EOF:
		return "end of file"
	case libvirt.CONNECT_CLOSE_REASON_KEEPALIVE:
		return "keepalive timeout"
	case libvirt.CONNECT_CLOSE_REASON_CLIENT:
		return "closed by client"
	default:
		return "connection no longer alive"
	}
}

// close waits for the calls in flight, drops the callbacks and closes the
// connection. Failures are ignored: on a lost connection they are expected.
func (s *session) close() {
	s.users.Wait()
	if s.lifecycleID >= 0 {
		_ = s.conn.DomainEventDeregister(s.lifecycleID)
	}
	_ = s.conn.UnregisterCloseCallback()
	_, _ = s.conn.Close()
}
