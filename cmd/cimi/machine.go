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
}

func (t *templateFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.config, "config", "", "machine configuration: ID, path or URL")
	f.StringVar(&t.image, "image", "", "machine image: ID, path or URL")
	f.StringVar(&t.initialState, "initial-state", "", "state after creation: STARTED or STOPPED")
	f.StringVar(&t.userDataFile, "user-data-file", "", "file handed to the guest as user data (e.g. cloud-init)")
}

// validate checks the flags that need no server and normalises them.
func (t *templateFlags) validate() error {
	state, err := initialState(t.initialState)
	if err != nil {
		return err
	}
	t.initialState = state
	return nil
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
		Use:   "create --name NAME (--template REF | --config REF --image REF)",
		Short: "Create a machine from a template, or from a configuration and an image",
		Long: `Create a machine from a stored template (--template), or from a configuration
and an image (--config and --image). A REF is an ID, a path relative to the
base URI, or a full URL. Waits for the job and prints the new machine's URL.`,
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
