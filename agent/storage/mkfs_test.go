package storage

import (
	"context"
	"testing"

	"cimid/hypervisor/hostcmd"
)

// mkfs dies with the agent, as qemu-img does.
func TestMkfsIsTied(t *testing.T) {
	c, err := filesystems{"ext4": {"mkfs.ext4", "-q"}}.command(context.Background(), "ext4", "/pool/volume.raw")
	if err != nil {
		t.Fatal(err)
	}
	if !hostcmd.Tied(c) || c.Args[len(c.Args)-1] != "/pool/volume.raw" {
		t.Fatalf("mkfs command %v: tied %v", c.Args, hostcmd.Tied(c))
	}
	if _, err := (filesystems{}).command(context.Background(), "ext4", "/x"); err == nil {
		t.Fatal("a file system the host cannot make was accepted")
	}
}
