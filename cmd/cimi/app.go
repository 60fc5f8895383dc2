package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const (
	defaultPollInterval = 250 * time.Millisecond
	// requestTimeout bounds every single HTTP exchange, so a daemon that
	// accepts connections but never answers cannot hang the CLI.
	requestTimeout = time.Minute
)

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return a.execute(ctx, args)
}

// options are the global flags.
type options struct {
	socket       string
	url          string
	token        string
	insecure     bool
	remote       string
	xml          bool
	output       string
	timeout      time.Duration
	pollInterval time.Duration
}

// app holds what one invocation of the CLI needs; nothing outlives it.
type app struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	opts   options
	client *cimiclient.Client
}

func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return a.report(cmd, err)
}

// report prints err, if any, and maps it to an exit code: errors returned
// by a command's work are failures; everything else cobra or the commands
// reject before starting work is a usage error.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return exitOK
	}
	var f *failure
	if errors.As(err, &f) {
		fmt.Fprintf(a.stderr, "cimi: %s\n", a.describe(f.err))
		return exitFailure
	}
	fmt.Fprintf(a.stderr, "cimi: %v\n", err)
	if cmd != nil {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return exitUsage
}

// describe renders a failure. An error answered by the server is shown as
// its status and statusMessage, which already say what was wrong.
func (a *app) describe(err error) string {
	var apiErr *cimiclient.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Error()
	}
	var abandoned *abandonedError
	if errors.As(err, &abandoned) {
		return abandoned.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) && a.opts.timeout > 0 {
		return fmt.Sprintf("%v (--timeout %s)", err, a.opts.timeout)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return err.Error() + "\n(is cimid running? see --socket and --url)"
	}
	var unknownAuthority x509.UnknownAuthorityError
	if errors.As(err, &unknownAuthority) {
		return err.Error() + "\n(a host's self-signed certificate: add the host with \"cimi remote add\", which pins its fingerprint)"
	}
	if strings.Contains(err.Error(), "tls: bad certificate") {
		return err.Error() + "\n(the host does not trust this client certificate: run \"cimid trust add CERT\" on the host)"
	}
	return err.Error()
}

// failure marks an error that happened while doing a command's work.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// usageError is a command line that cannot be acted upon.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// handler does the work of a command.
type handler func(ctx context.Context, args []string) error

// runE adapts a handler to cobra: it applies --timeout and marks the
// handler's errors as failures unless they are usage errors.
func (a *app) runE(h handler) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if a.opts.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, a.opts.timeout)
			defer cancel()
		}
		err := h(ctx, args)
		var ue *usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return &failure{err: err}
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "cimi",
		Short: "Client for the CIMI API of cimid",
		Long: `cimi talks to cimid, the CIMI 1.1 agent of a KVM host, over its unix socket
(or over HTTPS with --url) and manages machines, images, templates and jobs.

Commands that change state wait for the job the server starts, showing its
progress; --no-wait prints the job URL instead.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: a.setup,
	}
	a.globalFlags(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	root.AddCommand(
		a.getCommand(),
		a.listCommand(),
		a.jobCommand(),
		a.machineCommand(),
		a.imageCommand(),
		a.templateCommand(),
		a.configCommand(),
		a.networkCommand(),
		a.credentialCommand(),
		a.volumeCommand(),
		a.versionCommand(),
		a.remoteCommand(),
		a.ovfCommand(),
		a.eventsCommand(),
	)
	a.addTransferCommands(root)
	return root
}

func (a *app) globalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.opts.socket, "socket", cimiclient.DefaultSocket, "unix socket of cimid (env CIMI_SOCKET)")
	f.StringVar(&a.opts.url, "url", "", "HTTPS endpoint, e.g. https://host:8443/, instead of the socket (env CIMI_URL)")
	f.StringVar(&a.opts.token, "token", "", "bearer token for --url (env CIMI_TOKEN)")
	f.BoolVar(&a.opts.insecure, "insecure", false, "do not verify the server's TLS certificate")
	f.StringVar(&a.opts.remote, "remote", "", "use this remote (see cimi remote list) for one command (env CIMI_REMOTE)")
	f.BoolVar(&a.opts.xml, "xml", false, "ask for XML and print it as received (same as -o xml)")
	f.StringVarP(&a.opts.output, "output", "o", "", "output format: table, json or xml (each command has its default)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "xml"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("remote", a.completeRemotes)
	f.DurationVar(&a.opts.timeout, "timeout", 0, "give up after this long, waiting for jobs included (0: never)")
	f.DurationVar(&a.opts.pollInterval, "poll-interval", defaultPollInterval, "how often to poll a job")
	_ = f.MarkHidden("poll-interval")
}

// setup validates the global flags, fills in what the environment
// provides and builds the client.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	flags := cmd.Flags()
	if err := a.checkOutput(); err != nil {
		return err
	}
	if a.opts.pollInterval <= 0 {
		return usagef("--poll-interval must be positive")
	}
	if flags.Changed("socket") && flags.Changed("url") {
		return usagef("give either --socket or --url, not both")
	}
	if flags.Changed("remote") && (flags.Changed("socket") || flags.Changed("url")) {
		return usagef("give either --remote or --socket/--url, not both")
	}
	a.fromEnv(flags.Changed("socket"), flags.Changed("url"), flags.Changed("token"))
	cfg := &cimiclient.Config{}
	if !flags.Changed("socket") && a.opts.url == "" && a.getenv("CIMI_SOCKET") == "" {
		var err error
		if cfg, err = a.applyRemote(flags.Changed("remote")); err != nil {
			return err
		}
		a.opts.url = cfg.URL
	}
	client, err := cimiclient.New(cimiclient.Config{
		Socket:         a.opts.socket,
		URL:            a.opts.url,
		Token:          a.opts.token,
		Insecure:       a.opts.insecure,
		Fingerprint:    cfg.Fingerprint,
		Certificates:   cfg.Certificates,
		UserAgent:      "cimi/" + buildVersion(),
		RequestTimeout: requestTimeout,
	})
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	a.client = client
	return nil
}

// checkOutput validates --output and --xml: -o xml is --xml.
func (a *app) checkOutput() error {
	switch a.opts.output {
	case "", "json", "table":
	case "xml":
		a.opts.xml = true
	default:
		return usagef("invalid --output %q: want table, json or xml", a.opts.output)
	}
	if a.opts.xml && a.opts.output != "" && a.opts.output != "xml" {
		return usagef("--xml and --output %s contradict each other", a.opts.output)
	}
	return nil
}

// fromEnv applies CIMI_SOCKET, CIMI_URL and CIMI_TOKEN to the options the
// command line left unset.
func (a *app) fromEnv(socketSet, urlSet, tokenSet bool) {
	if v := a.getenv("CIMI_SOCKET"); v != "" && !socketSet {
		a.opts.socket = v
	}
	if v := a.getenv("CIMI_URL"); v != "" && !urlSet && !socketSet {
		a.opts.url = v
	}
	if v := a.getenv("CIMI_TOKEN"); v != "" && !tokenSet {
		a.opts.token = v
	}
}

// Argument validators that report usage errors.

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s", cmd.CommandPath(), names)
		}
		return nil
	}
}

func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %s", cmd.CommandPath(), names)
		}
		return nil
	}
}

// group returns a command that only holds subcommands.
func (a *app) group(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s needs a subcommand", cmd.CommandPath())
			}
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		},
	}
}
