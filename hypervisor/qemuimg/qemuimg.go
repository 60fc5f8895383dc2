// Package qemuimg wraps the qemu-img binary: probing, inspecting, checking,
// creating, resizing and converting disk images.
//
// It owns the rules for handling images that come from outside. qemu-img is
// never left to guess a format: DetectFormat reads the magic bytes itself and
// every command gets an explicit -f (and -F for backing files). Before an
// untrusted image is used or converted, CheckSelfContained must accept it:
// qemu-img would otherwise read host files that the image names as backing
// file, external data file or VMDK extent. The order for an import is
// DetectFormat, CheckSelfContained, Info, Convert.
//
// Every function honours its context: qemu-img is killed when it ends,
// and when the process that started it dies, so that a killed agent leaves
// no qemu-img writing behind it. Errors carry what qemu-img printed on
// stderr.
package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"cimid/hypervisor/hostcmd"
)

// Image formats this package knows.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
	FormatVMDK  = "vmdk"
)

// qemuImg is the qemu-img executable, looked up in PATH.
const qemuImg = "qemu-img"

// waitDelay bounds how long a killed qemu-img may keep its output open.
const waitDelay = 5 * time.Second

// ErrExternalReference is returned (wrapped with details) by
// CheckSelfContained when an image refers to another file.
var ErrExternalReference = errors.New("image references an external file")

// command prepares qemu-img with args; it is killed when ctx ends, and
// with the agent (started and waited for under hostcmd.Hold).
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	cmd.Env = append(cmd.Environ(), "LC_ALL=C")
	cmd.WaitDelay = waitDelay
	hostcmd.Tie(cmd)
	return cmd
}

// run executes qemu-img with args and returns its standard output.
func run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	defer hostcmd.Hold()()
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), commandError(ctx, args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// commandError describes a failed qemu-img run. When ctx ended, it wraps
// ctx's error rather than the "signal: killed" that caused it.
func commandError(ctx context.Context, args []string, err error, stderr string) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	}
	msg := fmt.Sprintf("qemu-img %s", args[0])
	if stderr = strings.TrimSpace(stderr); stderr != "" {
		return fmt.Errorf("%s: %w: %s", msg, err, stderr)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// absPath makes path absolute, which also keeps qemu-img from reading a
// "protocol:" prefix into it.
func absPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty image path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("image path %s: %w", path, err)
	}
	return abs, nil
}

// checkFormat refuses an empty format, which would let qemu-img probe.
func checkFormat(format string) error {
	if format == "" {
		return errors.New("no image format given")
	}
	return nil
}

func sizeArg(sizeBytes int64) (string, error) {
	if sizeBytes <= 0 {
		return "", fmt.Errorf("invalid image size %d", sizeBytes)
	}
	return fmt.Sprint(sizeBytes), nil
}
