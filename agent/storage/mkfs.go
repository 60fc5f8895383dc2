package storage

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"cimid/hypervisor/hostcmd"
)

// filesystems maps a file system name, as CIMI's format attribute gives it,
// to the mkfs command that makes it in a raw image file.
type filesystems map[string][]string

// mkfsCommands are the file systems a Volume can be created with, when the
// host has the tool.
var mkfsCommands = map[string][]string{
	"ext2": {"mkfs.ext2", "-q", "-F"},
	"ext3": {"mkfs.ext3", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"},
	"ext4": {"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"},
	"vfat": {"mkfs.vfat"},
}

// findFilesystems returns the file systems whose mkfs is installed.
func findFilesystems() filesystems {
	fs := filesystems{}
	for name, cmd := range mkfsCommands {
		if _, err := exec.LookPath(cmd[0]); err == nil {
			fs[name] = cmd
		}
	}
	return fs
}

// names lists the available file systems, sorted.
func (f filesystems) names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// make creates the file system name in the raw image at path.
func (f filesystems) make(ctx context.Context, name, path string) error {
	c, err := f.command(ctx, name, path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	defer hostcmd.Hold()()
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.Args[0], path, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// command prepares the mkfs of name for the image at path: killed when
// ctx ends, and with the agent.
func (f filesystems) command(ctx context.Context, name, path string) (*exec.Cmd, error) {
	cmd, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("no mkfs for %q on this host", name)
	}
	c := exec.CommandContext(ctx, cmd[0], append(cmd[1:], path)...)
	c.WaitDelay = 5 * time.Second
	hostcmd.Tie(c)
	return c, nil
}
