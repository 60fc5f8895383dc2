// Command cimid is the CIMI agent of one KVM host: it drives libvirt, keeps
// its state in a bbolt file and serves the CIMI API on a unix socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"cimid/agent"
	"cimid/hypervisor"
	"cimid/hypervisor/libvirt"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type options struct {
	stateDir   string
	socket     string
	libvirtURI string
	listen     string
	domainType string
	logLevel   string
	drain      time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("cimid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/cimid", "directory for the state file, storage pool and console logs")
	fs.StringVar(&o.socket, "socket", "/run/cimid/cimid.sock", "unix socket serving the API")
	fs.StringVar(&o.libvirtURI, "libvirt-uri", "qemu:///system", "libvirt connection URI")
	fs.StringVar(&o.listen, "listen", "", "optional TCP address to serve the API on (loopback only)")
	fs.StringVar(&o.domainType, "domain-type", "auto", "how guests run: kvm, qemu (software emulation) or auto")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long a stop waits for running jobs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return o, nil
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "cimid:", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "cimid: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	domainType, reason, err := chooseDomainType(o.domainType)
	if err != nil {
		fmt.Fprintln(stderr, "cimid:", err)
		return 2
	}
	log.Info("guest execution", "domain_type", domainType, "reason", reason)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	drv, err := libvirt.Open(connectCtx, o.libvirtURI, log)
	cancel()
	if err != nil {
		log.Error("cannot reach libvirt; is libvirtd running? (make run starts it)", "uri", o.libvirtURI, "err", err)
		return 1
	}
	defer drv.Close()

	a, err := agent.New(ctx, agent.Config{
		StateDir: o.stateDir, Socket: o.socket, Listen: o.listen,
		DomainType: domainType, DrainTimeout: o.drain,
	}, drv, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if err := a.Run(ctx, func() { log.Info("ready", "socket", o.socket) }); err != nil {
		log.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

// chooseDomainType decides between hardware virtualization and emulation:
// kvm only when /dev/kvm exists and the CPU shows vmx or svm (a software
// /dev/kvm without them cannot boot ordinary guests in reasonable time).
func chooseDomainType(flagValue string) (hypervisor.DomainType, string, error) {
	switch flagValue {
	case "kvm":
		return hypervisor.DomainKVM, "--domain-type=kvm", nil
	case "qemu":
		return hypervisor.DomainQEMU, "--domain-type=qemu", nil
	case "auto", "":
	default:
		return "", "", fmt.Errorf("--domain-type must be kvm, qemu or auto, not %q", flagValue)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return hypervisor.DomainQEMU, "no /dev/kvm: software emulation (TCG)", nil
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return hypervisor.DomainQEMU, "cannot read /proc/cpuinfo: software emulation (TCG)", nil
	}
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if !strings.HasPrefix(line, "flags") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if f == "vmx" || f == "svm" {
				return hypervisor.DomainKVM, "hardware virtualization (" + f + ")", nil
			}
		}
		break
	}
	return hypervisor.DomainQEMU, "CPU lacks vmx/svm: software emulation (TCG)", nil
}
