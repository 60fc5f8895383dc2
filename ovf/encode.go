package ovf

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Spec describes an export: one VirtualSystem, or a
// VirtualSystemCollection when it has several systems.
type Spec struct {
	// ID, Name and Description are those of the collection; with a single
	// system, Name and Description stand in for the system's when it has
	// none.
	ID          string
	Name        string
	Description string
	Systems     []SystemSpec
	// SystemType is written as vssd:VirtualSystemType; default "vmx-10",
	// the family most OVF consumers accept for this hardware.
	SystemType string
}

// SystemSpec describes one virtual machine.
type SystemSpec struct {
	// ID is the VirtualSystem's ovf:id; derived from Name when empty.
	ID          string
	Name        string
	Description string
	CPUs        int
	MemoryBytes int64
	// OSType is written as the OperatingSystemSection's Description. OSID
	// is its CIM id; when 0 it is looked up from OSType as a CIM name,
	// else 1 ("Other").
	OSType string
	OSID   int
	// Firmware "efi" is written as vmw:Config firmware="efi".
	Firmware string
	Disks    []DiskSpec
	NICs     []NICSpec
}

// DiskSpec is a disk and the file that holds its image.
type DiskSpec struct {
	// Href is the file name inside the package.
	Href string
	// Size is the size of the stored file in bytes.
	Size int64
	// Capacity is the virtual size in bytes.
	Capacity int64
	// Format is a short name or URI; default "vmdk/streamOptimized".
	Format string
	// Controller is "scsi" (default), "sata" or "ide"; ControllerModel
	// is its ResourceSubType (default lsilogic, AHCI, PIIX4).
	Controller      string
	ControllerModel string
}

// NICSpec is a network adapter.
type NICSpec struct {
	Network string
	// Model is the ResourceSubType; default "E1000".
	Model string
	MAC   string
}

// controllerLimits: units per controller and controllers per system.
var controllerLimits = map[string]struct {
	rt, units, max int
	model          string
}{
	"scsi": {rtSCSI, 15, 4, "lsilogic"},
	"sata": {rtOtherStorage, 30, 4, "AHCI"},
	"ide":  {rtIDE, 2, 2, "PIIX4"},
}

// Encode builds an OVF 1.0 descriptor: References, DiskSection,
// NetworkSection and the VirtualSystem(s) with an AnnotationSection for
// the description, an OperatingSystemSection and a VirtualHardwareSection
// of RASD items (CPU, memory, controllers, disks, NICs).
func Encode(spec Spec) ([]byte, error) {
	if len(spec.Systems) == 0 {
		return nil, fmt.Errorf("ovf: nothing to export: no systems")
	}
	e := &encoder{spec: spec}
	if e.spec.SystemType == "" {
		e.spec.SystemType = "vmx-10"
	}
	if err := e.plan(); err != nil {
		return nil, err
	}
	e.write()
	return e.b.Bytes(), nil
}

type encoder struct {
	spec     Spec
	b        bytes.Buffer
	networks []string
	// fileIDs and diskIDs per system and disk.
	ids [][]string
}

func (e *encoder) plan() error {
	hrefs := map[string]bool{}
	sysIDs := map[string]bool{}
	n := 0
	for si := range e.spec.Systems {
		s := &e.spec.Systems[si]
		if len(e.spec.Systems) == 1 {
			s.Name = firstNonEmpty(s.Name, e.spec.Name)
			s.Description = firstNonEmpty(s.Description, e.spec.Description)
		}
		if s.ID == "" {
			s.ID = idFromName(s.Name, si)
		}
		if sysIDs[s.ID] {
			return fmt.Errorf("ovf: two systems have id %q", s.ID)
		}
		sysIDs[s.ID] = true
		if s.CPUs < 1 {
			return fmt.Errorf("ovf: system %q: %d CPUs", s.ID, s.CPUs)
		}
		if s.MemoryBytes <= 0 {
			return fmt.Errorf("ovf: system %q: memory %d bytes", s.ID, s.MemoryBytes)
		}
		var ids []string
		for di, d := range s.Disks {
			clean, err := CleanHref(d.Href)
			if err != nil || clean != d.Href {
				return fmt.Errorf("ovf: system %q disk %d: href %q is not a plain relative name", s.ID, di, d.Href)
			}
			if hrefs[d.Href] {
				return fmt.Errorf("ovf: two disks are stored as %q", d.Href)
			}
			hrefs[d.Href] = true
			if d.Capacity <= 0 || d.Size < 0 {
				return fmt.Errorf("ovf: disk %q: capacity %d, size %d", d.Href, d.Capacity, d.Size)
			}
			if _, ok := controllerLimits[firstNonEmpty(d.Controller, "scsi")]; !ok {
				return fmt.Errorf("ovf: disk %q: controller %q is not scsi, sata or ide", d.Href, d.Controller)
			}
			n++
			ids = append(ids, strconv.Itoa(n))
		}
		if err := checkSpecLimits(*s); err != nil {
			return err
		}
		e.ids = append(e.ids, ids)
		for _, nic := range s.NICs {
			if nic.Network == "" {
				return fmt.Errorf("ovf: system %q: a NIC has no network", s.ID)
			}
			if !contains(e.networks, nic.Network) {
				e.networks = append(e.networks, nic.Network)
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func idFromName(name string, i int) string {
	id := strings.Trim(idUnsafe.ReplaceAllString(name, "-"), "-")
	if id == "" {
		return fmt.Sprintf("vm%d", i+1)
	}
	return id
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (e *encoder) line(indent int, format string, args ...any) {
	e.b.WriteString(strings.Repeat("  ", indent))
	fmt.Fprintf(&e.b, format, args...)
	e.b.WriteByte('\n')
}

func (e *encoder) write() {
	e.line(0, `<?xml version="1.0" encoding="UTF-8"?>`)
	e.line(0, `<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="%s" xmlns:ovf="%s" xmlns:rasd="%s" xmlns:vssd="%s" xmlns:vmw="%s">`,
		NamespaceOVF1, NamespaceOVF1, NamespaceRASD, NamespaceVSSD, NamespaceVMware)
	e.line(1, `<References>`)
	for si, s := range e.spec.Systems {
		for di, d := range s.Disks {
			e.line(2, `<File ovf:id="file%s" ovf:href="%s" ovf:size="%d"/>`, e.ids[si][di], esc(d.Href), d.Size)
		}
	}
	e.line(1, `</References>`)
	if len(e.ids) > 0 && anyDisks(e.spec) {
		e.line(1, `<DiskSection>`)
		e.line(2, `<Info>Virtual disk information</Info>`)
		for si, s := range e.spec.Systems {
			for di, d := range s.Disks {
				capacity, units := d.Capacity, "byte"
				if capacity%(1<<30) == 0 {
					capacity, units = capacity>>30, "byte * 2^30"
				}
				e.line(2, `<Disk ovf:diskId="vmdisk%s" ovf:fileRef="file%s" ovf:capacity="%d" ovf:capacityAllocationUnits="%s" ovf:format="%s"/>`,
					e.ids[si][di], e.ids[si][di], capacity, units, esc(FormatURI(d.Format)))
			}
		}
		e.line(1, `</DiskSection>`)
	}
	if len(e.networks) > 0 {
		e.line(1, `<NetworkSection>`)
		e.line(2, `<Info>The list of logical networks</Info>`)
		for _, n := range e.networks {
			e.line(2, `<Network ovf:name="%s">`, esc(n))
			e.line(3, `<Description>The %s network</Description>`, esc(n))
			e.line(2, `</Network>`)
		}
		e.line(1, `</NetworkSection>`)
	}
	if len(e.spec.Systems) == 1 {
		e.system(1, 0)
	} else {
		id := firstNonEmpty(e.spec.ID, idFromName(e.spec.Name, 0))
		e.line(1, `<VirtualSystemCollection ovf:id="%s">`, esc(id))
		e.line(2, `<Info>A collection of virtual machines</Info>`)
		if e.spec.Name != "" {
			e.line(2, `<Name>%s</Name>`, esc(e.spec.Name))
		}
		e.annotation(2, e.spec.Description)
		for si := range e.spec.Systems {
			e.system(2, si)
		}
		e.line(1, `</VirtualSystemCollection>`)
	}
	e.line(0, `</Envelope>`)
}

func anyDisks(s Spec) bool {
	for _, sys := range s.Systems {
		if len(sys.Disks) > 0 {
			return true
		}
	}
	return false
}

func (e *encoder) annotation(in int, text string) {
	if text == "" {
		return
	}
	e.line(in, `<AnnotationSection ovf:required="false">`)
	e.line(in+1, `<Info>A human-readable annotation</Info>`)
	e.line(in+1, `<Annotation>%s</Annotation>`, esc(text))
	e.line(in, `</AnnotationSection>`)
}

// rasd writes an Item with its fields in the schema's (alphabetical) order.
func (e *encoder) rasd(in int, fields map[string]string) {
	e.line(in, `<Item>`)
	for _, k := range []string{"Address", "AddressOnParent", "AllocationUnits", "AutomaticAllocation", "Connection", "Description", "ElementName", "HostResource", "InstanceID", "Parent", "ResourceSubType", "ResourceType", "VirtualQuantity"} {
		if v, ok := fields[k]; ok {
			e.line(in+1, `<rasd:%s>%s</rasd:%s>`, k, esc(v), k)
		}
	}
	e.line(in, `</Item>`)
}

func (e *encoder) system(in, si int) {
	s := e.spec.Systems[si]
	e.line(in, `<VirtualSystem ovf:id="%s">`, esc(s.ID))
	e.line(in+1, `<Info>A virtual machine</Info>`)
	if s.Name != "" {
		e.line(in+1, `<Name>%s</Name>`, esc(s.Name))
	}
	e.annotation(in+1, s.Description)
	osID := s.OSID
	if osID == 0 {
		osID = 1
		if id, ok := CIMOSID(s.OSType); ok {
			osID = id
		}
	}
	e.line(in+1, `<OperatingSystemSection ovf:id="%d">`, osID)
	e.line(in+2, `<Info>The kind of installed guest operating system</Info>`)
	if s.OSType != "" {
		e.line(in+2, `<Description>%s</Description>`, esc(s.OSType))
	}
	e.line(in+1, `</OperatingSystemSection>`)

	in++
	e.line(in, `<VirtualHardwareSection>`)
	e.line(in+1, `<Info>Virtual hardware requirements</Info>`)
	e.line(in+1, `<System>`)
	e.line(in+2, `<vssd:ElementName>Virtual Hardware Family</vssd:ElementName>`)
	e.line(in+2, `<vssd:InstanceID>0</vssd:InstanceID>`)
	e.line(in+2, `<vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>`, esc(s.ID))
	e.line(in+2, `<vssd:VirtualSystemType>%s</vssd:VirtualSystemType>`, esc(e.spec.SystemType))
	e.line(in+1, `</System>`)
	next := 1
	id := func() string { next++; return strconv.Itoa(next - 1) }
	e.rasd(in+1, map[string]string{
		"AllocationUnits": "hertz * 10^6", "Description": "Number of Virtual CPUs",
		"ElementName": fmt.Sprintf("%d virtual CPU(s)", s.CPUs), "InstanceID": id(),
		"ResourceType": strconv.Itoa(rtProcessor), "VirtualQuantity": strconv.Itoa(s.CPUs),
	})
	mem, units, label := s.MemoryBytes, "byte", "bytes"
	switch {
	case mem%(1<<20) == 0:
		mem, units, label = mem>>20, "byte * 2^20", "MB"
	case mem%(1<<10) == 0:
		mem, units, label = mem>>10, "byte * 2^10", "KB"
	}
	e.rasd(in+1, map[string]string{
		"AllocationUnits": units, "Description": "Memory Size",
		"ElementName": fmt.Sprintf("%d %s of memory", mem, label), "InstanceID": id(),
		"ResourceType": strconv.Itoa(rtMemory), "VirtualQuantity": strconv.FormatInt(mem, 10),
	})

	// Controllers, created as disks need them: per bus, a controller
	// holds limits.units disks; SCSI unit 7 is the controller itself.
	type ctl struct {
		id    string
		units int
	}
	ctls := map[string][]*ctl{}
	busCount := map[string]int{}
	for di, d := range s.Disks {
		bus := firstNonEmpty(d.Controller, "scsi")
		lim := controllerLimits[bus]
		list := ctls[bus]
		if len(list) == 0 || list[len(list)-1].units >= lim.units {
			c := &ctl{id: id()}
			ctls[bus] = append(list, c)
			n := busCount[bus]
			busCount[bus]++
			e.rasd(in+1, map[string]string{
				"Address": strconv.Itoa(n), "Description": strings.ToUpper(bus) + " Controller",
				"ElementName": fmt.Sprintf("%s controller %d", strings.ToUpper(bus), n), "InstanceID": c.id,
				"ResourceSubType": firstNonEmpty(d.ControllerModel, lim.model), "ResourceType": strconv.Itoa(lim.rt),
			})
			list = ctls[bus]
		}
		c := list[len(list)-1]
		unit := c.units
		if bus == "scsi" && unit >= 7 {
			unit++
		}
		c.units++
		e.rasd(in+1, map[string]string{
			"AddressOnParent": strconv.Itoa(unit), "ElementName": fmt.Sprintf("Hard disk %d", di+1),
			"HostResource": "ovf:/disk/vmdisk" + e.ids[si][di], "InstanceID": id(),
			"Parent": c.id, "ResourceType": strconv.Itoa(rtDisk),
		})
	}
	for ni, n := range s.NICs {
		f := map[string]string{
			"AutomaticAllocation": "true", "Connection": n.Network,
			"ElementName": fmt.Sprintf("Network adapter %d", ni+1), "InstanceID": id(),
			"ResourceSubType": firstNonEmpty(n.Model, "E1000"), "ResourceType": strconv.Itoa(rtEthernet),
		}
		if n.MAC != "" {
			f["Address"] = n.MAC
		}
		e.rasd(in+1, f)
	}
	if fw := normaliseFirmware(s.Firmware); fw != "" {
		e.line(in+1, `<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="%s"/>`, fw)
	}
	e.line(in, `</VirtualHardwareSection>`)
	e.line(in-1, `</VirtualSystem>`)
}

// checkSpecLimits reports specs the encoder cannot express.
func checkSpecLimits(s SystemSpec) error {
	count := map[string]int{}
	for _, d := range s.Disks {
		count[firstNonEmpty(d.Controller, "scsi")]++
	}
	for bus, n := range count {
		lim := controllerLimits[bus]
		if n > lim.units*lim.max {
			return fmt.Errorf("ovf: system %q has %d %s disks; at most %d fit", s.ID, n, bus, lim.units*lim.max)
		}
	}
	return nil
}
