package main

import "github.com/spf13/cobra"

func configKind() kind {
	return kind{noun: "config", collection: "machineConfigs"}
}

func (a *app) configCommand() *cobra.Command {
	return a.kindCommand(configKind(), "List machine configurations")
}
