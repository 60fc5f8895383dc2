package main

import (
	"context"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func templateKind() kind {
	return kind{noun: "template", collection: "machineTemplates", deletable: true}
}

func (a *app) templateCommand() *cobra.Command {
	k := templateKind()
	return a.kindCommand(k, "Create, list and delete machine templates", a.templateCreateCommand(k))
}

func (a *app) templateCreateCommand(k kind) *cobra.Command {
	var (
		c createFlags
		t templateFlags
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME --config REF --image REF",
		Short: "Store a machine template made of a configuration and an image",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			if err := t.validate(); err != nil {
				return err
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			body := cimiclient.MachineTemplateCreate{
				ResourceURI: prefix + "/MachineTemplateCreate",
				Name:        c.name,
				Description: c.description,
				Properties:  c.properties,
			}
			if err := t.build(ctx, a.client, &body.MachineTemplate); err != nil {
				return err
			}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, k.noun)
	t.register(cmd)
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}
