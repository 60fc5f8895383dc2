package ovf

import "encoding/json"

// Summary is the JSON document printed by "cimi ovf inspect". Field names
// are stable; fields may be added.
type Summary struct {
	OVFVersion     string          `json:"ovfVersion"`
	Configuration  string          `json:"configuration,omitempty"`
	VirtualSystems []SystemSummary `json:"virtualSystems"`
	Networks       []string        `json:"networks"`
	Files          []FileSummary   `json:"files"`
	// Manifest is the digest algorithm of the verified manifest, empty
	// when the package has none.
	Manifest string `json:"manifest,omitempty"`
	// EULA is true when the package carries a licence to accept.
	EULA     bool     `json:"eula,omitempty"`
	Warnings []string `json:"warnings"`
}

// SystemSummary describes one VirtualSystem.
type SystemSummary struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	CPUs      int            `json:"cpus"`
	MemoryKiB int64          `json:"memoryKiB"`
	OSType    string         `json:"osType"`
	Firmware  string         `json:"firmware,omitempty"`
	Disks     []DiskSummary  `json:"disks"`
	NICs      []NICSummary   `json:"nics"`
	Removable []DriveSummary `json:"removable,omitempty"`
}

// DiskSummary describes one hard disk of a VirtualSystem.
type DiskSummary struct {
	DiskID        string `json:"diskId"`
	File          string `json:"file"`
	CapacityBytes int64  `json:"capacityBytes"`
	Format        string `json:"format"`
	Controller    string `json:"controller"`
}

// DriveSummary describes a CD/DVD or floppy drive.
type DriveSummary struct {
	Device     string `json:"device"`
	File       string `json:"file"`
	Controller string `json:"controller"`
}

// NICSummary describes one network adapter.
type NICSummary struct {
	Network string `json:"network"`
	Model   string `json:"model"`
}

// FileSummary describes one File of References. Size is null when the
// descriptor does not declare it; Compression is "gzip" or "".
type FileSummary struct {
	Href        string `json:"href"`
	Size        *int64 `json:"size"`
	Compression string `json:"compression"`
	ChunkSize   int64  `json:"chunkSize,omitempty"`
}

// Summarize reduces an envelope to its Summary. Warnings are the
// envelope's; callers append their own.
func Summarize(e *Envelope) Summary {
	s := Summary{
		OVFVersion:     e.Version,
		Configuration:  e.Configuration,
		VirtualSystems: []SystemSummary{},
		Networks:       []string{},
		Files:          []FileSummary{},
		Warnings:       append([]string{}, e.Warnings...),
	}
	for _, n := range e.Networks {
		s.Networks = append(s.Networks, n.Name)
	}
	for _, f := range e.Files {
		fs := FileSummary{Href: f.Href, Compression: f.Compression, ChunkSize: f.ChunkSize}
		if f.SizeKnown {
			size := f.Size
			fs.Size = &size
		}
		s.Files = append(s.Files, fs)
	}
	for _, vs := range e.VirtualSystems() {
		m := vs.Machine
		ss := SystemSummary{
			ID:        vs.ID,
			Name:      vs.Name,
			CPUs:      m.CPUs,
			MemoryKiB: (m.MemoryBytes + 1023) / 1024,
			OSType:    vs.OS.Type(),
			Firmware:  m.Firmware,
			Disks:     []DiskSummary{},
			NICs:      []NICSummary{},
		}
		for _, d := range m.Disks {
			ss.Disks = append(ss.Disks, DiskSummary{DiskID: d.DiskID, File: d.Href, CapacityBytes: d.CapacityBytes, Format: d.Format, Controller: d.Bus})
		}
		for _, d := range m.Removables {
			ss.Removable = append(ss.Removable, DriveSummary{Device: d.Device, File: d.Href, Controller: d.Bus})
		}
		for _, n := range m.NICs {
			ss.NICs = append(ss.NICs, NICSummary{Network: n.Network, Model: n.Model})
		}
		s.VirtualSystems = append(s.VirtualSystems, ss)
		if len(vs.EULAs) > 0 {
			s.EULA = true
		}
	}
	var walk func(Entity)
	walk = func(x Entity) {
		if c, ok := x.(*VirtualSystemCollection); ok {
			if len(c.EULAs) > 0 {
				s.EULA = true
			}
			for _, m := range c.Members {
				walk(m)
			}
		}
	}
	walk(e.Content)
	return s
}

// Marshal returns the summary as indented JSON ending in a newline.
func (s Summary) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
