package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackageSourceAndDestination(t *testing.T) {
	wd, _ := os.Getwd()
	for arg, want := range map[string]string{
		"pkg/app.ova":                  "file://" + filepath.Join(wd, "pkg/app.ova"),
		"/srv/app.ovf":                 "file:///srv/app.ovf",
		"https://example.net/app.ova":  "https://example.net/app.ova",
		"file:///srv/with%20space.ova": "file:///srv/with%20space.ova",
		"/srv/with space/app.ova":      "file:///srv/with%20space/app.ova",
	} {
		if got, err := packageSource(arg); err != nil || got != want {
			t.Errorf("packageSource(%q) = %q, %v; want %q", arg, got, err, want)
		}
	}
	if _, err := packageSource("ftp://example.net/app.ova"); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("ftp source: %v", err)
	}
	if got, err := exportDestination("/tmp/out.ova"); err != nil || got != "file:///tmp/out.ova" {
		t.Errorf("exportDestination: %q %v", got, err)
	}
	if _, err := exportDestination("/tmp/out.tar"); err == nil {
		t.Error("a destination without .ova was accepted")
	}
}
