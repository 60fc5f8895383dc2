package main

import "testing"

func TestParseSizeKiB(t *testing.T) {
	good := map[string]int64{
		"1024": 1024, "512K": 512, "64M": 64 << 10, "64MiB": 64 << 10, "10G": 10 << 20, "1.5GiB": 3 << 19,
		"2t": 2 << 30, " 8 MiB ": 8 << 10,
	}
	for in, want := range good {
		if got, err := parseSizeKiB(in); err != nil || got != want {
			t.Errorf("parseSizeKiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1G", "10X", "G", "0.5K", "1e3", "NaN"} {
		if got, err := parseSizeKiB(in); err == nil {
			t.Errorf("parseSizeKiB(%q) = %d, want an error", in, got)
		}
	}
}
