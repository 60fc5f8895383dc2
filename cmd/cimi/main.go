// Command cimi is the command-line client of cimid. It speaks the DMTF CIMI
// 1.1 API over the daemon's unix socket (or HTTPS with --url), lists and
// shows resources, creates machines, images and templates, runs machine
// actions, and follows the Jobs the server answers with.
//
// Usage:
//
//	cimi [--socket PATH | --url URL [--token T] [--insecure]] COMMAND ...
//
// Run "cimi --help" for the list of commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
