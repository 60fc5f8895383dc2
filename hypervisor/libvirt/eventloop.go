package libvirt

import (
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

// eventLoop is the libvirt default event loop. libvirt allows one per process
// and it must be registered before the first connection is opened, so it is
// the single piece of process-wide state of this package.
var eventLoop struct {
	once sync.Once
	err  error
}

// startEventLoop registers the default event loop implementation and runs it
// on its own goroutine for the rest of the process's life.
func startEventLoop() error {
	eventLoop.once.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			eventLoop.err = err
			return
		}
		go runEventLoop()
	})
	return eventLoop.err
}

func runEventLoop() {
	for {
		if err := libvirt.EventRunDefaultImpl(); err != nil {
			// An iteration only fails on a broken poll(2); do not spin.
			time.Sleep(100 * time.Millisecond)
		}
	}
}
