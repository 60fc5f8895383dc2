package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's notification protocol (sd_notify): one
// datagram per state change to the socket named by $NOTIFY_SOCKET, which
// may be in the abstract namespace ("@name"). Without $NOTIFY_SOCKET it
// does nothing. The variables are removed from the environment so that
// child processes (qemu-img) do not inherit them.
type notifier struct {
	socket   string
	watchdog time.Duration
	log      *slog.Logger
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{socket: os.Getenv("NOTIFY_SOCKET"), log: log}
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		pid := os.Getenv("WATCHDOG_PID")
		if pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	os.Unsetenv("NOTIFY_SOCKET")
	os.Unsetenv("WATCHDOG_USEC")
	os.Unsetenv("WATCHDOG_PID")
	return n
}

// send delivers one notification, such as "READY=1".
func (n *notifier) send(state string) {
	if n.socket == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		n.log.Warn("cannot notify the service manager", "socket", n.socket, "err", err)
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		n.log.Warn("cannot notify the service manager", "socket", n.socket, "err", err)
	}
}

// startWatchdog keeps the service manager's watchdog fed at half its
// period while ctx lasts (only when the unit sets WatchdogSec).
func (n *notifier) startWatchdog(ctx context.Context) {
	if n.socket == "" || n.watchdog <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.send("WATCHDOG=1")
			}
		}
	}()
}
