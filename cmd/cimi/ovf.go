package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"cimid/ovf"
)

// ovfCommand groups the commands that work on OVF packages offline,
// without cimid.
func (a *app) ovfCommand() *cobra.Command {
	cmd := a.group("ovf", "Work on OVF packages offline (no daemon needed)")
	// Offline commands need no client: skip the root's setup.
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error { return nil }
	var opts ovf.Options
	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check an OVF package and print its summary as JSON",
		Long: `inspect reads an OVF package, a .ova archive or a .ovf descriptor with its
files and .mf manifest beside it, checks that every file it references is
inside the package with its declared size, verifies the manifest when there
is one, and prints a summary as one JSON document: the virtual systems with
their CPUs, memory, OS, disks and NICs (in the default deployment
configuration unless --configuration names another), the networks, the
files and the warnings.

A package that is unsafe or invalid (manifest mismatch, a file outside the
package, a required section this reader does not know, a DOCTYPE, absurd
nesting or size) is reported in one line on stderr, with a non-zero exit.`,
		Args: exactArgs(1, "one .ova or .ovf file"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			return a.ovfInspect(ctx, args[0], opts)
		}),
	}
	inspect.Flags().StringVar(&opts.Configuration, "configuration", "", "deployment option to apply instead of the default")
	inspect.Flags().BoolVar(&opts.Strict, "strict", false, "refuse vendor sections not marked ovf:required=\"false\"")
	cmd.AddCommand(inspect)
	return cmd
}

func (a *app) ovfInspect(ctx context.Context, name string, opts ovf.Options) error {
	p, closePackage, err := openPackage(name, opts)
	if err != nil {
		return err
	}
	defer closePackage()
	if err := p.Verify(ctx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	out, err := p.Summary().Marshal()
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(out)
	return err
}

// openPackage opens an OVA, or a descriptor whose files are beside it.
// Directory packages are read through an os.Root, so no file outside the
// descriptor's directory can be reached, links included. The returned
// function releases the files once the package is no longer read.
func openPackage(name string, opts ovf.Options) (*ovf.Package, func(), error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if isOVA(f, name) {
		p, err := ovf.OpenOVA(f, info.Size(), opts)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return p, func() { f.Close() }, nil
	}
	f.Close()
	root, err := os.OpenRoot(filepath.Dir(name))
	if err != nil {
		return nil, nil, err
	}
	p, err := ovf.OpenDir(root.FS(), filepath.Base(name), opts)
	if err != nil {
		root.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, func() { root.Close() }, nil
}

// isOVA tells an archive from a descriptor: by the .ova extension, else by
// content (a descriptor starts with XML, an archive with a tar header or a
// compression magic, which OpenOVA then names).
func isOVA(f io.ReaderAt, name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".ova":
		return true
	case ".ovf":
		return false
	}
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = bytes.TrimLeft(head[:n], "\xef\xbb\xbf\xff\xfe \t\r\n")
	return len(head) > 0 && head[0] != '<' && head[0] != 0
}
