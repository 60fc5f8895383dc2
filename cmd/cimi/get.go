package main

import (
	"context"

	"github.com/spf13/cobra"
)

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get [PATH|URL]",
		Short: "Print the entry point, or any resource or collection",
		Long: `Print a document as the server sends it: indented JSON, or XML with --xml.
Without an argument, print the cloud entry point. PATH is relative to the
server's base URI (e.g. "jobs", "machines/ID"); a full URL is used as given.`,
		Args: maxArgs(1, "one PATH or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			href := a.client.EntryPointURL()
			if len(args) == 1 {
				var err error
				if href, err = a.client.Resolve(ctx, args[0]); err != nil {
					return err
				}
			}
			return a.printDocument(ctx, href)
		}),
	}
}
