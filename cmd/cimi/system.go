package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func systemKind() kind {
	return kind{
		noun:       "system",
		collection: "systems",
		deletable:  true,
		actions: []actionSpec{
			{name: "start", short: "Start every machine of a system"},
			{name: "stop", short: "Shut every machine of a system down; --force powers them off", force: true},
			{name: "restart", short: "Restart every machine of a system; --force resets them", force: true},
		},
	}
}

// addTransferCommands adds the system commands to root, and the export of
// one machine to the machine commands.
func (a *app) addTransferCommands(root *cobra.Command) {
	root.AddCommand(a.systemCommand())
	for _, c := range root.Commands() {
		if c.Name() == machineKind().noun {
			c.AddCommand(a.machineExportCommand(machineKind()))
		}
	}
}

func (a *app) systemCommand() *cobra.Command {
	k := systemKind()
	return a.kindCommand(k, "Import OVF packages as systems, export them, and operate their machines",
		a.systemImportCommand(k), a.systemExportCommand(k))
}

// packageSource turns a command-line argument into an import source: a URL
// as given, or a path on this host as a file:// URL.
func packageSource(arg string) (string, error) {
	if u, err := url.Parse(arg); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		switch strings.ToLower(u.Scheme) {
		case "http", "https", "file":
			return arg, nil
		}
		return "", usagef("unsupported source %q: give a path, a file:// URL or an http(s):// URL", arg)
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", usagef("source %q: %v", arg, err)
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

// exportDestination turns a command-line path into an export destination.
func exportDestination(arg string) (string, error) {
	if strings.HasPrefix(arg, "file://") {
		return arg, nil
	}
	if !strings.HasSuffix(strings.ToLower(arg), ".ova") {
		return "", usagef("destination %q must end in .ova", arg)
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", usagef("destination %q: %v", arg, err)
	}
	return (&url.URL{Scheme: "file", Path: abs}).String(), nil
}

func (a *app) systemImportCommand(k kind) *cobra.Command {
	var (
		noWait   bool
		user     string
		password string
	)
	cmd := &cobra.Command{
		Use:   "import FILE|URL",
		Short: "Import an OVF package (.ova, or .ovf with its files beside it) as a system",
		Long: `Import an OVF package as a system: an .ova, or an .ovf descriptor with its
disk files beside it, from a path on the daemon's host or an http(s) URL.
Every virtual system of the package becomes a machine, STOPPED, whose disks
are converted into the daemon's storage pool. Waits for the job, showing its
progress, and prints the new system's URL; warnings about the package are in
the job's message.`,
		Args: exactArgs(1, "one path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			src, err := packageSource(args[0])
			if err != nil {
				return err
			}
			body, err := a.actionBody(ctx, "import")
			if err != nil {
				return err
			}
			body["source"] = src
			if user != "" || password != "" {
				body["properties"] = map[string]string{"username": user, "password": password}
			}
			coll, err := a.client.List(ctx, k.collection, cimiclient.Query{Last: 1})
			if err != nil {
				return err
			}
			op, ok := coll.Operations.Find("import")
			if !ok {
				return fmt.Errorf("the server offers no import on %s", k.collection)
			}
			acc, err := a.client.Post(ctx, op.Href, body)
			if err != nil {
				return fmt.Errorf("importing %s: %w", args[0], err)
			}
			return a.settle(ctx, acc, noWait, true)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "user name for an http(s) source")
	cmd.Flags().StringVar(&password, "password", "", "password for an http(s) source")
	noWaitFlag(cmd, &noWait)
	return cmd
}

// actionBody starts the Action document of the operation name.
func (a *app) actionBody(ctx context.Context, name string) (map[string]any, error) {
	prefix, err := a.client.Prefix(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"resourceURI": prefix + "/Action", "action": prefix + "/action/" + name}, nil
}

func (a *app) systemExportCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "export ID DEST.ova",
		Short: "Export a system's stopped machines as an OVA on the daemon's host",
		Args:  exactArgs(2, "a system ID, path or URL and a destination .ova"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			dest, err := exportDestination(args[1])
			if err != nil {
				return err
			}
			return a.act(ctx, k, args[0], "export", map[string]any{"format": "application/ovf", "destination": dest}, noWait)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

func (a *app) machineExportCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "export ID DEST.ova",
		Short: "Export a stopped machine as an OVA on the daemon's host",
		Args:  exactArgs(2, "a machine ID, path or URL and a destination .ova"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			dest, err := exportDestination(args[1])
			if err != nil {
				return err
			}
			r, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			href := r.ID + "/export"
			if op, ok := r.Operations.Find("export"); ok {
				href = op.Href
			}
			body, err := a.actionBody(ctx, "export")
			if err != nil {
				return err
			}
			body["format"], body["destination"] = "application/ovf", dest
			acc, err := a.client.Post(ctx, href, body)
			if err != nil {
				return fmt.Errorf("exporting machine %s: %w", args[0], err)
			}
			return a.settle(ctx, acc, noWait, false)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}
