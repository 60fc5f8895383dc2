// Command cimid is the CIMI agent of one KVM host: it drives libvirt, keeps
// its state in a bbolt file and serves the CIMI API on a unix socket and,
// when configured, over HTTPS to authenticated clients.
//
// Usage:
//
//	cimid [--config FILE] [--KEY VALUE ...]          run the agent
//	cimid [--config FILE] --check-config             validate the configuration and exit
//	cimid [--config FILE] trust add|list|remove ...  manage trusted client certificates
//	cimid [--config FILE] token create|list|revoke   manage bearer tokens
//	cimid [--config FILE] fingerprint                print the server certificate's fingerprint
//
// Every key of the configuration file is also a flag of the same name;
// flags override the file.
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
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"cimid/agent"
	"cimid/agent/config"
	"cimid/hypervisor"
	"cimid/hypervisor/libvirt"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// invocation is a parsed command line.
type invocation struct {
	cfg         config.Config
	configPath  string
	checkConfig bool
	args        []string // subcommand and its arguments
}

// usageError is a command line or configuration that cannot be acted on.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// parseArgs reads the flags, then the configuration file, then applies
// the flags given over it.
func parseArgs(args []string, stderr io.Writer) (invocation, error) {
	var inv invocation
	fs := flag.NewFlagSet("cimid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&inv.configPath, "config", config.DefaultPath, "configuration file (a missing default file means all defaults)")
	fs.BoolVar(&inv.checkConfig, "check-config", false, "validate the configuration, print it and exit")
	given := map[string]string{}
	for _, k := range config.Keys() {
		fs.Var(&recordedFlag{key: k.Name, given: given, def: k.Default}, k.Name, k.Usage)
	}
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		return inv, err
	}
	inv.args = fs.Args()
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(inv.configPath, !explicit)
	if err != nil {
		return inv, &usageError{err.Error()}
	}
	for _, k := range config.Keys() {
		if v, ok := given[k.Name]; ok {
			if err := cfg.Set(k.Name, v); err != nil {
				return inv, usagef("--%v", err)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return inv, &usageError{err.Error()}
	}
	inv.cfg = cfg
	return inv, nil
}

// recordedFlag keeps a flag's value for later, once the file is read.
type recordedFlag struct {
	key   string
	def   string
	given map[string]string
}

func (f *recordedFlag) String() string {
	if f == nil || f.given == nil {
		return ""
	}
	if v, ok := f.given[f.key]; ok {
		return v
	}
	return f.def
}

func (f *recordedFlag) Set(v string) error {
	var probe = config.Default()
	if err := probe.Set(f.key, v); err != nil {
		return errors.Unwrap(err)
	}
	f.given[f.key] = v
	return nil
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage:
  cimid [flags]                                 run the agent
  cimid [flags] --check-config                  validate the configuration, print it, exit
  cimid [flags] trust add CERT.pem [--name N]   trust a client certificate for HTTPS
  cimid [flags] trust list                      list trusted client certificates
  cimid [flags] trust remove NAME|FINGERPRINT   stop trusting one
  cimid [flags] token create NAME [--expires D] create a bearer token (printed once)
  cimid [flags] token list                      list tokens
  cimid [flags] token revoke ID|NAME            revoke one
  cimid [flags] fingerprint                     print the server certificate's SHA-256 fingerprint

Flags (each configuration key is a flag; flags override the file):
`)
	fs.PrintDefaults()
}

func run(args []string, stdout, stderr io.Writer) int {
	inv, err := parseArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "cimid:", err)
		return exitUsage
	}
	if inv.checkConfig {
		if len(inv.args) > 0 {
			fmt.Fprintln(stderr, "cimid: --check-config takes no subcommand")
			return exitUsage
		}
		return checkConfig(inv, stdout, stderr)
	}
	if len(inv.args) > 0 {
		return subcommand(inv, stdout, stderr)
	}
	return serve(inv.cfg, stderr)
}

// checkConfig validates what can be checked without starting: the file
// parsed already; here the things it points at.
func checkConfig(inv invocation, stdout, stderr io.Writer) int {
	cfg := inv.cfg
	var problems []string
	if _, _, err := chooseDomainType(cfg.DomainType); err != nil {
		problems = append(problems, err.Error())
	}
	if cfg.TLSCert != "" {
		for _, f := range []string{cfg.TLSCert, cfg.TLSKey} {
			if _, err := os.Stat(f); err != nil {
				problems = append(problems, fmt.Sprintf("tls file: %v", err))
			}
		}
	}
	if fi, err := os.Stat(cfg.StateDir); err == nil && !fi.IsDir() {
		problems = append(problems, fmt.Sprintf("state-dir %s is not a directory", cfg.StateDir))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "cimid: configuration error:", p)
		}
		return exitUsage
	}
	src := inv.configPath
	if _, err := os.Stat(src); err != nil {
		src += " (absent: defaults)"
	}
	fmt.Fprintf(stdout, "# configuration OK: %s, with flags applied\n", src)
	for _, k := range config.Keys() {
		v, _ := cfg.Get(k.Name)
		fmt.Fprintf(stdout, "%s = %s\n", k.Name, v)
	}
	return exitOK
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(cfg config.Config, stderr io.Writer) int {
	log := newLogger(cfg, stderr)
	domainType, reason, err := chooseDomainType(cfg.DomainType)
	if err != nil {
		fmt.Fprintln(stderr, "cimid:", err)
		return exitUsage
	}
	log.Info("starting", "version", version(), "domain_type", domainType, "reason", reason, "state_dir", cfg.StateDir)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	notifier := newNotifier(log)
	go func() {
		<-ctx.Done()
		notifier.send("STOPPING=1\nSTATUS=draining running jobs")
	}()

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	drv, err := libvirt.Open(connectCtx, cfg.LibvirtURI, log)
	cancel()
	if err != nil {
		log.Error("cannot reach libvirt; is libvirtd running? (make run starts it)", "uri", cfg.LibvirtURI, "err", err)
		return exitFailure
	}
	defer drv.Close()

	a, err := agent.New(ctx, agent.Config{
		StateDir: cfg.StateDir, Socket: cfg.Socket, Listen: cfg.Listen,
		DomainType: domainType, DrainTimeout: cfg.DrainTimeout,
		SocketGroup: cfg.SocketGroup, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		AuditLog: cfg.AuditFile(), StatsInterval: cfg.StatsInterval, Version: version(),
	}, drv, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFailure
	}
	err = a.Run(ctx, func() {
		log.Info("ready", "socket", cfg.Socket, "listen", strings.Join(cfg.Listen, ","))
		notifier.send("READY=1\nSTATUS=serving")
		notifier.startWatchdog(ctx)
	})
	if err != nil {
		log.Error("stopped with error", "err", err)
		return exitFailure
	}
	log.Info("stopped")
	return exitOK
}

func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}

// authnDir is where trusted clients and tokens are kept.
func authnDir(cfg config.Config) string { return filepath.Join(cfg.StateDir, "authn") }

// chooseDomainType decides between hardware virtualization and emulation:
// kvm only when /dev/kvm exists and the CPU shows vmx or svm (a software
// /dev/kvm without them cannot boot ordinary guests in reasonable time).
func chooseDomainType(value string) (hypervisor.DomainType, string, error) {
	switch value {
	case "kvm":
		return hypervisor.DomainKVM, "domain-type=kvm", nil
	case "qemu":
		return hypervisor.DomainQEMU, "domain-type=qemu", nil
	case "auto", "":
	default:
		return "", "", fmt.Errorf("domain-type must be kvm, qemu or auto, not %q", value)
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
