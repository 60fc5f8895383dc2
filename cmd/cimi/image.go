package main

import (
	"context"
	"net/url"
	"path/filepath"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func imageKind() kind {
	return kind{noun: "image", collection: "machineImages", deletable: true}
}

func (a *app) imageCommand() *cobra.Command {
	k := imageKind()
	return a.kindCommand(k, "Register, list and delete machine images", a.imageCreateCommand(k))
}

func (a *app) imageCreateCommand(k kind) *cobra.Command {
	var (
		c        createFlags
		location string
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME --location URL",
		Short: "Register a machine image",
		Long: `Register a machine image whose bits are at --location: a file:// URL or an
absolute path on the cimid host, or an http(s):// URL the server downloads.
Waits for the job and prints the new image's URL.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			loc, err := imageLocation(location)
			if err != nil {
				return err
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			body := cimiclient.MachineImageCreate{
				ResourceURI:   prefix + "/MachineImageCreate",
				Name:          c.name,
				Description:   c.description,
				Properties:    c.properties,
				ImageLocation: loc,
			}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, "image")
	cmd.Flags().StringVar(&location, "location", "", "file:///path, /path or http(s):// URL of the image")
	_ = cmd.MarkFlagRequired("location")
	return cmd
}

// imageLocation checks --location and turns an absolute path into a
// file:// URL.
func imageLocation(s string) (string, error) {
	if filepath.IsAbs(s) {
		return (&url.URL{Scheme: "file", Path: filepath.Clean(s)}).String(), nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", usagef("invalid --location %q: %v", s, err)
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" || (u.Host != "" && u.Host != "localhost") {
			return "", usagef("invalid --location %q: want file:///absolute/path", s)
		}
	case "http", "https":
		if u.Host == "" {
			return "", usagef("invalid --location %q: no host", s)
		}
	default:
		return "", usagef("invalid --location %q: want file://, http:// or https:// or an absolute path", s)
	}
	return s, nil
}
