package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of cimi",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runE(func(context.Context, []string) error {
			_, err := fmt.Fprintf(a.stdout, "cimi %s (%s, CIMI %s)\n", buildVersion(), runtime.Version(), "1.1")
			return err
		}),
	}
}

// buildVersion returns the module version, or the VCS revision for
// development builds.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
