package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"cimid/agent/authn"
	"cimid/agent/config"
)

// The administrative subcommands work on the files of the state
// directory; a running agent notices their changes at the next request.

func subcommand(inv invocation, stdout, stderr io.Writer) int {
	cmd, rest := inv.args[0], inv.args[1:]
	var err error
	switch cmd {
	case "trust":
		err = trustCommand(inv.cfg, rest, stdout, stderr)
	case "token":
		err = tokenCommand(inv.cfg, rest, stdout, stderr)
	case "fingerprint":
		err = fingerprintCommand(inv.cfg, rest, stdout)
	default:
		err = usagef("unknown command %q (try --help)", cmd)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "cimid:", err)
	if _, ok := err.(*usageError); ok {
		return exitUsage
	}
	return exitFailure
}

func trustCommand(cfg config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("trust needs add, list or remove")
	}
	clients := authn.OpenClients(authnDir(cfg))
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("trust add", flag.ContinueOnError)
		fs.SetOutput(stderr)
		name := fs.String("name", "", "name of the client (default: the certificate's common name)")
		rest, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return usagef("%v", err)
		}
		if len(rest) != 1 {
			return usagef("usage: cimid trust add CERT.pem [--name NAME] (CERT - reads standard input)")
		}
		data, err := readInput(rest[0])
		if err != nil {
			return err
		}
		cl, err := clients.Add(data, *name, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "trusted %s (SHA-256 %s, expires %s)\n", cl.Name, cl.Fingerprint, cl.NotAfter.Format(time.DateOnly))
		return nil
	case "list":
		if len(args) != 1 {
			return usagef("usage: cimid trust list")
		}
		list, err := clients.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tFINGERPRINT (SHA-256)\tEXPIRES\tSUBJECT")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Fingerprint, c.NotAfter.Format(time.DateOnly), c.Subject)
		}
		return tw.Flush()
	case "remove":
		if len(args) != 2 {
			return usagef("usage: cimid trust remove NAME|FINGERPRINT")
		}
		cl, err := clients.Remove(args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "no longer trusted: %s (%s)\n", cl.Name, cl.Fingerprint)
		return nil
	}
	return usagef("unknown trust command %q: add, list or remove", args[0])
}

func tokenCommand(cfg config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("token needs create, list or revoke")
	}
	tokens := authn.OpenTokens(authnDir(cfg))
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		fs.SetOutput(stderr)
		expires := fs.Duration("expires", 0, "lifetime of the token, e.g. 720h (default: no expiry)")
		rest, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return usagef("%v", err)
		}
		if len(rest) != 1 {
			return usagef("usage: cimid token create NAME [--expires DURATION]")
		}
		if *expires < 0 {
			return usagef("--expires must be positive")
		}
		secret, tok, err := tokens.Create(rest[0], *expires, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, secret)
		fmt.Fprintf(stderr, "created token %s (%s); it is shown only this once, pass it as \"Authorization: Bearer TOKEN\" or cimi --token\n", tok.ID, tok.Name)
		return nil
	case "list":
		if len(args) != 1 {
			return usagef("usage: cimid token list")
		}
		list, err := tokens.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED\tEXPIRES")
		for _, t := range list {
			exp := "never"
			if !t.Expires.IsZero() {
				exp = t.Expires.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Created.Format(time.RFC3339), exp)
		}
		return tw.Flush()
	case "revoke":
		if len(args) != 2 {
			return usagef("usage: cimid token revoke ID|NAME")
		}
		t, err := tokens.Revoke(args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked token %s (%s)\n", t.ID, t.Name)
		return nil
	}
	return usagef("unknown token command %q: create, list or revoke", args[0])
}

// fingerprintCommand prints the fingerprint of the HTTPS certificate,
// creating the self-signed one now if the agent has not yet.
func fingerprintCommand(cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return usagef("usage: cimid fingerprint")
	}
	var hosts []string
	for _, a := range cfg.Listen {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			hosts = append(hosts, h)
		}
	}
	if err := os.MkdirAll(filepath.Dir(cfg.CertFile()), 0o700); err != nil {
		return err
	}
	cert, _, err := authn.ServerCert(cfg.CertFile(), cfg.KeyFile(), hosts)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, authn.Fingerprint(cert.Leaf.Raw))
	return nil
}

// parseInterleaved parses flags that may come before or after the
// positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

func readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	return b, nil
}
