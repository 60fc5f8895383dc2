package qemuimg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// probeSize is how much of a file DetectFormat reads; qemu probes the same
// amount.
const probeSize = 2048

var (
	qcow2Magic      = []byte("QFI\xfb")
	vmdkSparseMagic = []byte("KDMV") // VMDK4: monolithicSparse, streamOptimized
	vmdkCOWDMagic   = []byte("COWD") // VMDK3: ESX sparse
	vmdkDescriptor  = []byte("# Disk DescriptorFile")
)

// DetectFormat names the format of the image at path from its first bytes:
// qcow2, vmdk (sparse or text descriptor) or, for anything else, raw. Raw is
// the safe answer for unknown content: read as raw, an image cannot make
// qemu open other files.
func DetectFormat(path string) (string, error) {
	head, err := readHead(path, probeSize)
	if err != nil {
		return "", fmt.Errorf("detect format of %s: %w", path, err)
	}
	return formatOf(head), nil
}

// readHead reads up to n bytes from the start of path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, n)
	got, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return head[:got], nil
}

func formatOf(head []byte) string {
	switch {
	case bytes.HasPrefix(head, qcow2Magic):
		return FormatQCOW2
	case isVMDKSparse(head), isVMDKDescriptor(head):
		return FormatVMDK
	default:
		return FormatRaw
	}
}

func isVMDKSparse(head []byte) bool {
	return bytes.HasPrefix(head, vmdkSparseMagic) || bytes.HasPrefix(head, vmdkCOWDMagic)
}

// isVMDKDescriptor recognises a VMDK text descriptor the way qemu does:
// after comment and blank lines comes a "version=1", "=2" or "=3" line. The
// customary "# Disk DescriptorFile" first line is enough on its own.
func isVMDKDescriptor(head []byte) bool {
	if bytes.HasPrefix(head, vmdkDescriptor) {
		return true
	}
	for line := range bytes.Lines(head) {
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(line, []byte("#")), len(bytes.Trim(line, " ")) == 0:
			continue
		}
		switch string(line) {
		case "version=1", "version=2", "version=3":
			return true
		}
		return false
	}
	return false
}
