package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

// kind describes one resource type for the generic commands: the entry
// point collection it lives in and the operations offered as subcommands.
// A new type needs a kind and, if it can be created, a create command.
type kind struct {
	// noun is the command name, e.g. "machine".
	noun string
	// collection is the entry point key, e.g. "machines".
	collection string
	// deletable adds a delete subcommand.
	deletable bool
	// actions are custom operations, e.g. start and stop.
	actions []actionSpec
}

// actionSpec is a custom operation exposed as a subcommand.
type actionSpec struct {
	// name is the operation's short name: the last segment of its rel.
	name  string
	short string
	// force adds --force, sent as the Action's force attribute.
	force bool
}

// kindCommand builds the command group of a kind: list, show, delete if
// the kind allows it, one subcommand per action, and extra.
func (a *app) kindCommand(k kind, short string, extra ...*cobra.Command) *cobra.Command {
	cmd := a.group(k.noun, short)
	cmd.AddCommand(a.kindListCommand(k), a.kindShowCommand(k))
	if k.deletable {
		cmd.AddCommand(a.kindDeleteCommand(k))
	}
	for _, act := range k.actions {
		cmd.AddCommand(a.kindActionCommand(k, act))
	}
	cmd.AddCommand(extra...)
	return cmd
}

func (a *app) kindListCommand(k kind) *cobra.Command {
	var q queryFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: fmt.Sprintf("List %s", k.collection),
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			return a.listCollection(ctx, k.collection, q.query())
		}),
	}
	q.register(cmd)
	return cmd
}

func (a *app) kindShowCommand(k kind) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: fmt.Sprintf("Show a %s (JSON by default; -o table for one line)", k.noun),
		Args:  exactArgs(1, "one "+k.noun+" ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			return a.showMember(ctx, k, args[0])
		}),
	}
}

func (a *app) kindDeleteCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: fmt.Sprintf("Delete a %s", k.noun),
		Args:  exactArgs(1, "one "+k.noun+" ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			r, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			acc, err := a.client.Delete(ctx, r)
			if err != nil {
				return err
			}
			return a.settle(ctx, acc, noWait, false)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

func (a *app) kindActionCommand(k kind, act actionSpec) *cobra.Command {
	var noWait, force bool
	cmd := &cobra.Command{
		Use:   act.name + " ID",
		Short: act.short,
		Args:  exactArgs(1, "one "+k.noun+" ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			var params map[string]any
			if act.force {
				params = map[string]any{"force": force}
			}
			return a.act(ctx, k, args[0], act.name, params, noWait)
		}),
	}
	if act.force {
		cmd.Flags().BoolVar(&force, "force", false, "power off instead of asking the guest")
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

func noWaitFlag(cmd *cobra.Command, noWait *bool) {
	cmd.Flags().BoolVar(noWait, "no-wait", false, "print the job URL instead of waiting for the job")
}

// createFlags are the flags every create command has.
type createFlags struct {
	name        string
	description string
	properties  map[string]string
	noWait      bool
}

func (c *createFlags) register(cmd *cobra.Command, noun string) {
	f := cmd.Flags()
	f.StringVar(&c.name, "name", "", "name of the new "+noun)
	f.StringVar(&c.description, "description", "", "description of the new "+noun)
	f.StringToStringVar(&c.properties, "property", nil, "KEY=VALUE property to attach (repeatable)")
	noWaitFlag(cmd, &c.noWait)
	_ = cmd.MarkFlagRequired("name")
}

// member reads the member of k's collection that ref names.
func (a *app) member(ctx context.Context, k kind, ref string) (*cimiclient.Resource, error) {
	href, err := a.client.ResolveMember(ctx, k.collection, ref)
	if err != nil {
		return nil, err
	}
	r, err := a.client.Get(ctx, href)
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", k.noun, ref, err)
	}
	return r, nil
}

// act invokes the operation name on the member ref of k's collection.
func (a *app) act(ctx context.Context, k kind, ref, name string, params map[string]any, noWait bool) error {
	r, err := a.member(ctx, k, ref)
	if err != nil {
		return err
	}
	acc, err := a.client.Act(ctx, r, name, params)
	if err != nil {
		return err
	}
	return a.settle(ctx, acc, noWait, false)
}

// showMember prints one member of k's collection.
func (a *app) showMember(ctx context.Context, k kind, ref string) error {
	href, err := a.client.ResolveMember(ctx, k.collection, ref)
	if err != nil {
		return err
	}
	if !a.wantTable("json") {
		return a.printDocument(ctx, href)
	}
	r, err := a.client.Get(ctx, href)
	if err != nil {
		return err
	}
	v, err := a.view(ctx)
	if err != nil {
		return err
	}
	rows := []cimiclient.Resource{*r}
	return writeTable(a.stdout, tableColumns(k.collection, rows), rows, v)
}

// create posts body to the collection of k and reports the outcome.
func (a *app) create(ctx context.Context, k kind, name string, body any, noWait bool) error {
	acc, err := a.client.Create(ctx, k.collection, body)
	if err != nil {
		return fmt.Errorf("creating %s %q: %w", k.noun, name, err)
	}
	return a.settle(ctx, acc, noWait, true)
}

// settle reports the outcome of a state-changing request. With noWait it
// prints the Job URL; otherwise it waits for the Job and, for creates,
// prints the URL of the new resource.
func (a *app) settle(ctx context.Context, acc *cimiclient.Accepted, noWait, created bool) error {
	if acc.JobURI == "" {
		if created && acc.Location != "" {
			fmt.Fprintln(a.stdout, acc.Location)
		}
		if acc.StatusCode == http.StatusAccepted {
			fmt.Fprintln(a.stderr, "accepted; the server named no job to follow")
		}
		return nil
	}
	if noWait {
		if created && acc.Location != "" {
			fmt.Fprintf(a.stderr, "creating %s\n", acc.Location)
		}
		fmt.Fprintln(a.stdout, acc.JobURI)
		return nil
	}
	job, err := a.waitJob(ctx, acc.JobURI)
	if err != nil {
		return err
	}
	if created {
		loc := acc.Location
		if loc == "" {
			loc = job.CreatedResource()
		}
		if loc != "" {
			fmt.Fprintln(a.stdout, loc)
		}
	}
	return nil
}
