// Package agenttest runs a whole agent, on whatever hypervisor driver a
// test gives it, for the tests of the packages the agent is made of.
package agenttest

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"cimid/agent"
	"cimid/hypervisor"
)

// Start runs an agent with cfg on drv until the test ends, or until stop
// is called, and returns its API handler once it is ready. An empty
// Socket is placed in cfg.StateDir, an empty DomainType is QEMU's; log
// may be nil. The driver outlives the agent, as a host outlives a restart
// of cimid.
func Start(t testing.TB, cfg agent.Config, drv hypervisor.Driver, log *slog.Logger) (h http.Handler, stop func()) {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(cfg.StateDir, "s.sock")
	}
	if cfg.DomainType == "" {
		cfg.DomainType = hypervisor.DomainQEMU
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, drv, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- a.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return a.Handler(), stop
}
