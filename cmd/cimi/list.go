package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func (a *app) listCommand() *cobra.Command {
	var q queryFlags
	cmd := &cobra.Command{
		Use:   "list COLLECTION",
		Short: "List the members of a collection of the entry point",
		Long: `List the members of a collection named by its key in the cloud entry point:
jobs, machines, machineConfigs, machineImages, machineTemplates,
resourceMetadata, volumes, networks, systems, ... (see "cimi get").`,
		Args: exactArgs(1, "one COLLECTION"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			return a.listCollection(ctx, args[0], q.query())
		}),
	}
	q.register(cmd)
	return cmd
}

// queryFlags are the CIMI query parameters offered by list commands.
type queryFlags struct {
	filter  string
	orderBy string
	first   int
	last    int
}

func (q *queryFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&q.filter, "filter", "", `CIMI $filter expression, e.g. "state='STARTED'"`)
	f.StringVar(&q.orderBy, "orderby", "", "CIMI $orderby, e.g. name:desc")
	f.IntVar(&q.first, "first", 0, "first member to return, counting from 1 ($first)")
	f.IntVar(&q.last, "last", 0, "last member to return ($last)")
}

func (q *queryFlags) query() cimiclient.Query {
	return cimiclient.Query{Filter: q.filter, OrderBy: q.orderBy, First: q.first, Last: q.last}
}

// listCollection prints the collection under the CEP key: a table by
// default, JSON with -o json, XML with --xml.
func (a *app) listCollection(ctx context.Context, key string, q cimiclient.Query) error {
	if !a.wantTable("table") {
		href, err := a.client.CollectionURL(ctx, key, q)
		if err != nil {
			return err
		}
		return a.printDocument(ctx, href)
	}
	coll, err := a.client.List(ctx, key, q)
	if err != nil {
		return err
	}
	if len(coll.Members) == 0 {
		fmt.Fprintf(a.stderr, "no %s\n", key)
		return nil
	}
	v, err := a.view(ctx)
	if err != nil {
		return err
	}
	if err := writeTable(a.stdout, tableColumns(key, coll.Members), coll.Members, v); err != nil {
		return err
	}
	if coll.Count > len(coll.Members) {
		fmt.Fprintf(a.stderr, "showing %d of %d %s\n", len(coll.Members), coll.Count, key)
	}
	return nil
}
