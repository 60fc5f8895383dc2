package qemuimg

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"cimid/hypervisor/hostcmd"
)

// Convert copies the image src, read as srcFormat, into a new image dst in
// dstFormat, calling progress (when not nil) with the percentage done as
// qemu-img reports it, up to 100. progress runs on the caller's goroutine
// before Convert returns. VMDK output is streamOptimized, the subformat OVF
// packages carry.
//
// Convert follows whatever src refers to: check untrusted images with
// CheckSelfContained first.
func Convert(ctx context.Context, src, srcFormat, dst, dstFormat string, progress func(pct float64)) error {
	if err := convert(ctx, src, srcFormat, dst, dstFormat, progress); err != nil {
		return fmt.Errorf("convert %s (%s) to %s (%s): %w", src, srcFormat, dst, dstFormat, err)
	}
	return nil
}

func convert(ctx context.Context, src, srcFormat, dst, dstFormat string, progress func(float64)) error {
	if err := checkFormat(srcFormat); err != nil {
		return err
	}
	if err := checkFormat(dstFormat); err != nil {
		return err
	}
	absSrc, err := absPath(src)
	if err != nil {
		return err
	}
	absDst, err := absPath(dst)
	if err != nil {
		return err
	}
	args := []string{"convert", "-p", "-f", srcFormat, "-O", dstFormat}
	if dstFormat == FormatVMDK {
		args = append(args, "-o", "subformat=streamOptimized")
	}
	args = append(args, absSrc, absDst)
	return runWithProgress(ctx, args, progress)
}

// runWithProgress runs qemu-img with args, feeding the progress it prints
// on stdout to progress.
func runWithProgress(ctx context.Context, args []string, progress func(float64)) error {
	cmd := command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	defer hostcmd.Hold()()
	if err := cmd.Start(); err != nil {
		return commandError(ctx, args, err, "")
	}
	readProgress(stdout, progress)
	if err := cmd.Wait(); err != nil {
		return commandError(ctx, args, err, stderr.String())
	}
	return nil
}

// progressPattern matches qemu-img's "    (12.34/100%)" updates.
var progressPattern = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// readProgress reads r to its end and calls report with each increase of
// the percentage found in it.
func readProgress(r io.Reader, report func(float64)) {
	scanner := bufio.NewScanner(r)
	scanner.Split(scanUpdates)
	last := -1.0
	for scanner.Scan() {
		pct, ok := parseProgress(scanner.Text())
		if !ok || pct <= last {
			continue
		}
		last = pct
		if report != nil {
			report(pct)
		}
	}
	// Drain what a too-long token left, so that qemu-img never blocks.
	_, _ = io.Copy(io.Discard, r)
}

func parseProgress(s string) (float64, bool) {
	m := progressPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	pct, err := strconv.ParseFloat(m[1], 64)
	return pct, err == nil
}

// scanUpdates splits at carriage returns as well as newlines: qemu-img
// rewrites its progress line in place.
func scanUpdates(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
