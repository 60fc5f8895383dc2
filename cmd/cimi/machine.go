package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func machineKind() kind {
	return kind{
		noun:       "machine",
		collection: "machines",
		deletable:  true,
		actions: []actionSpec{
			{name: "start", short: "Start (or resume) a machine"},
			{name: "stop", short: "Shut a machine down; --force powers it off", force: true},
			{name: "restart", short: "Restart a machine; --force resets it", force: true},
			{name: "pause", short: "Pause a machine, keeping its memory"},
			{name: "suspend", short: "Suspend a machine, saving its memory to disk"},
		},
	}
}

func (a *app) machineCommand() *cobra.Command {
	k := machineKind()
	return a.kindCommand(k, "Create, list and operate machines", append([]*cobra.Command{a.machineCreateCommand(k)}, a.machineStorageCommands(k)...)...)
}

// templateFlags describe a machine template given on the command line.
type templateFlags struct {
	config       string
	image        string
	initialState string
	userDataFile string
	networks     []string
	sshKeyFile   string
	sshUser      string
	credential   string

	nics []nicFlag // parsed from networks by validate
}

// nicFlag is one --network: a network reference with optional settings.
type nicFlag struct {
	ref, mac, model string
}

func (t *templateFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.config, "config", "", "machine configuration: ID, path or URL")
	f.StringVar(&t.image, "image", "", "machine image: ID, path or URL")
	f.StringVar(&t.initialState, "initial-state", "", "state after creation: STARTED or STOPPED")
	f.StringVar(&t.userDataFile, "user-data", "", "file handed to the guest as cloud-init user data (e.g. a #cloud-config file)")
	f.StringVar(&t.userDataFile, "user-data-file", "", "same as --user-data")
	_ = f.MarkHidden("user-data-file")
	f.StringArrayVar(&t.networks, "network", nil, "network to put an interface on: ID, path or URL, optionally followed by ,mac=MAC and ,model=MODEL; repeat for more interfaces; \"none\" for no interface (default: the default network)")
	f.StringVar(&t.sshKeyFile, "ssh-key", "", "OpenSSH public key file the guest accepts for logins (through cloud-init), - for standard input")
	f.StringVar(&t.sshUser, "ssh-user", "", "user the --ssh-key is for (default: the image's default user)")
	f.StringVar(&t.credential, "credential", "", "stored credential for the guest: ID, path or URL")
	cmd.MarkFlagsMutuallyExclusive("user-data", "user-data-file")
	cmd.MarkFlagsMutuallyExclusive("ssh-key", "credential")
}

// validate checks the flags that need no server and normalises them.
func (t *templateFlags) validate() error {
	state, err := initialState(t.initialState)
	if err != nil {
		return err
	}
	t.initialState = state
	if t.sshUser != "" && t.sshKeyFile == "" {
		return usagef("--ssh-user needs --ssh-key")
	}
	t.nics, err = parseNetworks(t.networks)
	return err
}

// parseNetworks reads the --network flags. "none" alone asks for a machine
// without interfaces, given as an empty, non-nil list.
func parseNetworks(specs []string) ([]nicFlag, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if len(specs) == 1 && strings.EqualFold(strings.TrimSpace(specs[0]), "none") {
		return []nicFlag{}, nil
	}
	nics := make([]nicFlag, 0, len(specs))
	for _, spec := range specs {
		parts := strings.Split(spec, ",")
		n := nicFlag{ref: strings.TrimSpace(parts[0])}
		switch {
		case n.ref == "":
			return nil, usagef("--network %q names no network", spec)
		case strings.EqualFold(n.ref, "none"):
			return nil, usagef("--network none cannot be combined with other --network flags")
		}
		for _, opt := range parts[1:] {
			key, value, ok := strings.Cut(strings.TrimSpace(opt), "=")
			switch {
			case ok && key == "mac" && value != "":
				n.mac = value
			case ok && key == "model" && value != "":
				n.model = value
			default:
				return nil, usagef("--network %q: unknown option %q (want mac=MAC or model=MODEL)", spec, opt)
			}
		}
		nics = append(nics, n)
	}
	return nics, nil
}

// build fills in tmpl from the validated flags, resolving references
// through the entry point.
func (t *templateFlags) build(ctx context.Context, c *cimiclient.Client, tmpl *cimiclient.MachineTemplate) error {
	tmpl.InitialState = t.initialState
	if t.userDataFile != "" {
		data, err := os.ReadFile(t.userDataFile)
		if err != nil {
			return fmt.Errorf("reading user data: %w", err)
		}
		tmpl.UserData = base64.StdEncoding.EncodeToString(data)
	}
	if t.config != "" {
		href, err := c.ResolveMember(ctx, configKind().collection, t.config)
		if err != nil {
			return err
		}
		tmpl.MachineConfig = &cimiclient.Ref{Href: href}
	}
	if t.image != "" {
		href, err := c.ResolveMember(ctx, imageKind().collection, t.image)
		if err != nil {
			return err
		}
		tmpl.MachineImage = &cimiclient.Ref{Href: href}
	}
	if t.nics != nil {
		tmpl.NetworkInterfaces = make([]cimiclient.NetworkInterface, 0, len(t.nics))
		for _, n := range t.nics {
			href, err := c.ResolveMember(ctx, networkKind().collection, n.ref)
			if err != nil {
				return err
			}
			tmpl.NetworkInterfaces = append(tmpl.NetworkInterfaces, cimiclient.NetworkInterface{Network: cimiclient.Ref{Href: href}, MACAddress: n.mac, Model: n.model})
		}
	}
	switch {
	case t.sshKeyFile != "":
		key, err := readKeyFile(t.sshKeyFile)
		if err != nil {
			return err
		}
		tmpl.Credential = &cimiclient.Credential{UserName: t.sshUser, Key: key}
	case t.credential != "":
		href, err := c.ResolveMember(ctx, credentialKind().collection, t.credential)
		if err != nil {
			return err
		}
		tmpl.Credential = &cimiclient.Credential{Href: href}
	}
	return nil
}

func initialState(s string) (string, error) {
	switch up := strings.ToUpper(s); up {
	case "", "STARTED", "STOPPED":
		return up, nil
	}
	return "", usagef("invalid --initial-state %q: want STARTED or STOPPED", s)
}

func (a *app) machineCreateCommand(k kind) *cobra.Command {
	var (
		c        createFlags
		t        templateFlags
		template string
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME (--template REF | --config REF --image REF) [--network REF]... [--ssh-key FILE | --credential REF] [--user-data FILE]",
		Short: "Create a machine from a template, or from a configuration and an image",
		Long: `Create a machine from a stored template (--template), or from a configuration
and an image (--config and --image). A REF is an ID, a path relative to the
base URI, or a full URL.

Each --network gives the machine an interface on that network (",mac=MAC"
and ",model=MODEL" may follow the REF); without --network the machine gets
the template's interfaces, or one on the default network; "--network none"
gives it none. --ssh-key (with --ssh-user) or --credential, and --user-data,
reach the guest on a cloud-init seed CD-ROM at its first boot. With
--template, these flags replace what the template says.

Waits for the job and prints the new machine's URL.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			if err := t.validate(); err != nil {
				return err
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			body := cimiclient.MachineCreate{
				ResourceURI: prefix + "/MachineCreate",
				Name:        c.name,
				Description: c.description,
				Properties:  c.properties,
			}
			if template != "" {
				href, err := a.client.ResolveMember(ctx, templateKind().collection, template)
				if err != nil {
					return err
				}
				body.MachineTemplate.Href = href
			}
			if err := t.build(ctx, a.client, &body.MachineTemplate); err != nil {
				return err
			}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, k.noun)
	t.register(cmd)
	cmd.Flags().StringVar(&template, "template", "", "machine template: ID, path or URL")
	cmd.MarkFlagsOneRequired("template", "config")
	cmd.MarkFlagsMutuallyExclusive("template", "config")
	cmd.MarkFlagsMutuallyExclusive("template", "image")
	cmd.MarkFlagsRequiredTogether("config", "image")
	return cmd
}
