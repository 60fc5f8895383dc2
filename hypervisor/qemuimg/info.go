package qemuimg

import (
	"context"
	"encoding/json"
	"fmt"
)

// ImageInfo is what qemu-img info reports about an image, without following
// its backing chain.
type ImageInfo struct {
	Format        string
	VirtualSize   int64 // bytes seen by the guest
	ActualSize    int64 // bytes allocated on the host
	BackingFile   string
	BackingFormat string
	DataFile      string   // qcow2 external data file
	Extents       []Extent // VMDK extents; the image itself for single-file VMDKs
}

// Extent is one file a VMDK image is made of.
type Extent struct {
	Filename    string
	Format      string // "SPARSE", "FLAT", ... ; empty for the main file
	VirtualSize int64
}

// Info inspects the image at path with qemu-img info, passing the format
// found by DetectFormat so that qemu-img never probes. It opens the image
// but not its backing file; for untrusted images call CheckSelfContained
// first, which refuses images naming other files without opening them.
func Info(ctx context.Context, path string) (ImageInfo, error) {
	format, err := DetectFormat(path)
	if err != nil {
		return ImageInfo{}, err
	}
	return info(ctx, path, format)
}

// infoJSON is the subset of `qemu-img info --output=json` this package reads.
type infoJSON struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	ActualSize     int64  `json:"actual-size"`
	BackingFile    string `json:"backing-filename"`
	BackingFormat  string `json:"backing-filename-format"`
	FormatSpecific struct {
		Type string `json:"type"`
		Data struct {
			DataFile string `json:"data-file"`
			Extents  []struct {
				Filename    string `json:"filename"`
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

// info runs qemu-img info on path read as format.
func info(ctx context.Context, path, format string) (ImageInfo, error) {
	if err := checkFormat(format); err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	abs, err := absPath(path)
	if err != nil {
		return ImageInfo{}, err
	}
	out, err := run(ctx, "info", "--output=json", "-f", format, abs)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	return parseInfo(out)
}

func parseInfo(out []byte) (ImageInfo, error) {
	var raw infoJSON
	if err := json.Unmarshal(out, &raw); err != nil {
		return ImageInfo{}, fmt.Errorf("parse qemu-img info output: %w", err)
	}
	info := ImageInfo{
		Format:        raw.Format,
		VirtualSize:   raw.VirtualSize,
		ActualSize:    raw.ActualSize,
		BackingFile:   raw.BackingFile,
		BackingFormat: raw.BackingFormat,
		DataFile:      raw.FormatSpecific.Data.DataFile,
	}
	for _, e := range raw.FormatSpecific.Data.Extents {
		info.Extents = append(info.Extents, Extent{Filename: e.Filename, Format: e.Format, VirtualSize: e.VirtualSize})
	}
	return info, nil
}
