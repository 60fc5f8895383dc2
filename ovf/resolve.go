package ovf

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// CIM ResourceType values the reader maps.
const (
	rtOther         = 1
	rtProcessor     = 3
	rtMemory        = 4
	rtIDE           = 5
	rtSCSI          = 6
	rtFC            = 7
	rtISCSI         = 8
	rtEthernet      = 10
	rtOtherNetwork  = 11
	rtFloppy        = 14
	rtCD            = 15
	rtDVD           = 16
	rtDisk          = 17
	rtStorageExtent = 19
	rtOtherStorage  = 20
	rtSerial        = 21
	rtParallel      = 22
	rtUSB           = 23
	rtGraphics      = 24
	rtLogicalDisk   = 31
	rtStorageVolume = 32
	rtVirtualBoxSnd = 35
)

// ignoredTypes are devices every KVM guest gets anyway, or that only
// configure the source hypervisor; they are dropped without a warning.
var ignoredTypes = map[int]bool{
	rtOther: true, rtSerial: true, rtParallel: true, rtGraphics: true, rtVirtualBoxSnd: true,
}

// Known model names, lower case, for picking among ResourceSubType
// alternatives.
var (
	knownNICModels = []string{"virtio", "e1000", "e1000e", "vmxnet3", "vmxnet", "vmxnet2", "pcnet32", "rtl8139", "ne2k_pci", "i82551", "i82557b", "i82559er", "3"}
	knownSCSI      = []string{"virtio", "virtio-scsi", "lsilogic", "lsilogicsas", "buslogic", "virtualscsi", "vmpvscsi"}
	knownIDE       = []string{"piix3", "piix4", "ich6"}
	knownSATA      = []string{"ahci", "vmware.sata.ahci"}
)

// resolveMachine turns the items of a hardware section into a Machine,
// following Parent and HostResource references.
func (p *parser) resolveMachine(hw HardwareSection, where string) (Machine, error) {
	var m Machine
	byID := map[string]*Item{}
	for i := range hw.Items {
		byID[hw.Items[i].InstanceID] = &hw.Items[i]
	}
	for i := range hw.Items {
		it := &hw.Items[i]
		if it.Parent != "" {
			if _, ok := byID[it.Parent]; !ok {
				return m, invalidf(it.Line, "%s: item %q names Parent %q, which is not an item of this section", where, it.InstanceID, it.Parent)
			}
		}
	}
	for _, kv := range hw.Config {
		switch kv.Key {
		case "firmware":
			m.Firmware = normaliseFirmware(kv.Value)
		case "nvram":
			if kind, id := parseHostResource(kv.Value); kind == "file" {
				if _, ok := p.env.File(id); !ok {
					return m, invalidf(0, "%s: vmw:ExtraConfig nvram names File %q, which References does not list", where, id)
				}
				p.usedFiles[id] = true
			}
		}
	}

	var cpuItem, memItem *Item
	controllers := map[string]Controller{}
	for i := range hw.Items {
		it := &hw.Items[i]
		switch rt := it.ResourceType; {
		case rt == rtProcessor:
			if cpuItem != nil {
				return m, invalidf(it.Line, "%s has more than one processor item (%q and %q)", where, cpuItem.InstanceID, it.InstanceID)
			}
			cpuItem = it
		case rt == rtMemory:
			if memItem != nil {
				return m, invalidf(it.Line, "%s has more than one memory item (%q and %q)", where, memItem.InstanceID, it.InstanceID)
			}
			memItem = it
		case rt == rtIDE || rt == rtSCSI || rt == rtFC || rt == rtISCSI || rt == rtOtherStorage || rt == rtUSB:
			if p.ovirt && rt == rtOtherStorage && it.Other["Type"] == "video" {
				continue
			}
			c := p.controller(it)
			controllers[it.InstanceID] = c
			m.Controllers = append(m.Controllers, c)
		case rt == rtEthernet || rt == rtOtherNetwork:
			nic, err := p.nic(it, where)
			if err != nil {
				return m, err
			}
			m.NICs = append(m.NICs, nic)
		case rt == rtDisk || rt == rtStorageExtent || rt == rtCD || rt == rtDVD || rt == rtFloppy ||
			((rt == rtLogicalDisk || rt == rtStorageVolume) && len(it.HostResource) > 0):
			dev, err := p.diskDevice(it, where)
			if err != nil {
				return m, err
			}
			if dev.Device == "disk" {
				m.Disks = append(m.Disks, dev)
			} else {
				m.Removables = append(m.Removables, dev)
			}
		case ignoredTypes[rt]:
		case !it.Required:
		default:
			p.warnf("%s: ignored item %q of unsupported ResourceType %d (%s)", where, it.InstanceID, rt, firstNonEmpty(it.ElementName, it.Caption, it.Description, it.ResourceSubType))
		}
	}
	for _, list := range [][]DiskDevice{m.Disks, m.Removables} {
		for i := range list {
			d := &list[i]
			if d.ControllerID == "" {
				continue
			}
			c, ok := controllers[d.ControllerID]
			if !ok {
				p.warnf("%s: device %q hangs on item %q, which is not a storage controller", where, d.InstanceID, d.ControllerID)
				continue
			}
			d.Bus = c.Bus
		}
	}

	if cpuItem == nil {
		p.warnf("%s has no processor item", where)
	} else {
		cpus, cores, err := cpuCount(cpuItem)
		if err != nil {
			return m, invalidf(cpuItem.Line, "%s: processor item: %v", where, err)
		}
		m.CPUs, m.CoresPerSocket = cpus, cores
	}
	if memItem == nil {
		p.warnf("%s has no memory item", where)
	} else {
		b, err := memoryBytes(memItem)
		if err != nil {
			return m, invalidf(memItem.Line, "%s: memory item: %v", where, err)
		}
		m.MemoryBytes = b
	}
	return m, nil
}

func cpuCount(it *Item) (cpus, cores int, err error) {
	const maxCPUs = 1 << 16
	if v := it.Other["CoresPerSocket"]; v != "" {
		c, err := parseUint(v)
		if err != nil || c == 0 || c > maxCPUs {
			return 0, 0, fmt.Errorf("CoresPerSocket %q is not a CPU count", v)
		}
		cores = int(c)
	}
	if it.HasQuantity {
		if it.VirtualQuantity == 0 || it.VirtualQuantity > maxCPUs {
			return 0, 0, fmt.Errorf("VirtualQuantity %d is not a CPU count", it.VirtualQuantity)
		}
		return int(it.VirtualQuantity), cores, nil
	}
	// oVirt writes the topology instead of a quantity.
	sockets, perSocket := it.Other["num_of_sockets"], it.Other["cpu_per_socket"]
	if sockets != "" && perSocket != "" {
		s, err1 := parseUint(sockets)
		c, err2 := parseUint(perSocket)
		if err1 != nil || err2 != nil || s == 0 || c == 0 || s*c > maxCPUs {
			return 0, 0, fmt.Errorf("num_of_sockets %q × cpu_per_socket %q is not a CPU count", sockets, perSocket)
		}
		return int(s * c), int(c), nil
	}
	return 0, 0, fmt.Errorf("no VirtualQuantity")
}

func memoryBytes(it *Item) (int64, error) {
	if !it.HasQuantity || it.VirtualQuantity == 0 {
		return 0, fmt.Errorf("no VirtualQuantity")
	}
	unit := int64(1 << 20) // A missing unit means MiB in practice.
	if it.AllocationUnits != "" {
		u, err := ParseByteUnits(it.AllocationUnits)
		if err != nil {
			return 0, err
		}
		unit = u
	}
	return mulChecked(it.VirtualQuantity, unit)
}

// models splits a ResourceSubType list ("virtio lsilogic", "buslogic,lsilogic").
func models(subtype string) []string {
	return strings.FieldsFunc(subtype, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// pickModel returns the first alternative in known, else the first one.
func pickModel(alts, known []string) (model string, ok bool) {
	for _, a := range alts {
		if slices.Contains(known, strings.ToLower(a)) {
			return a, true
		}
	}
	if len(alts) == 0 {
		return "", true
	}
	return alts[0], false
}

func (p *parser) controller(it *Item) Controller {
	c := Controller{InstanceID: it.InstanceID, ResourceType: it.ResourceType, Models: models(it.ResourceSubType)}
	var known []string
	switch it.ResourceType {
	case rtIDE:
		c.Bus, known = "ide", knownIDE
	case rtSCSI:
		c.Bus, known = "scsi", knownSCSI
	case rtOtherStorage:
		c.Bus, known = "sata", knownSATA
	case rtUSB:
		c.Bus = "usb"
	case rtFC:
		c.Bus = "fc"
	case rtISCSI:
		c.Bus = "iscsi"
	}
	model, ok := pickModel(c.Models, known)
	c.Model = model
	if !ok && known != nil {
		p.warnf("controller %q has unknown model %q", it.InstanceID, it.ResourceSubType)
	}
	return c
}

func (p *parser) nic(it *Item, where string) (NIC, error) {
	n := NIC{InstanceID: it.InstanceID, MAC: it.Address, Connected: !strings.EqualFold(it.AutomaticAllocation, "false")}
	if len(it.Connection) > 0 {
		n.Network = it.Connection[0]
	}
	if len(it.Connection) > 1 {
		p.warnf("%s: NIC %q lists %d connections; only %q is used", where, it.InstanceID, len(it.Connection), n.Network)
	}
	if n.Network != "" && !slices.ContainsFunc(p.env.Networks, func(nw Network) bool { return nw.Name == n.Network }) {
		p.warnf("%s: NIC %q connects to network %q, which NetworkSection does not declare", where, it.InstanceID, n.Network)
	}
	model, ok := pickModel(models(it.ResourceSubType), knownNICModels)
	n.Model = model
	if !ok {
		p.warnf("%s: NIC %q has unknown model %q", where, it.InstanceID, it.ResourceSubType)
	}
	return n, nil
}

// parseHostResource splits a HostResource into "disk" or "file" and an id.
// It accepts ovf:/disk/ID, ovf://disk/ID and /disk/ID (VirtualBox), and the
// same for files. Anything else gives kind "".
func parseHostResource(s string) (kind, id string) {
	s = strings.TrimSpace(s)
	for _, k := range []string{"disk", "file"} {
		for _, prefix := range []string{"ovf:/" + k + "/", "ovf://" + k + "/", "/" + k + "/"} {
			if rest, ok := strings.CutPrefix(s, prefix); ok && rest != "" {
				return k, rest
			}
		}
	}
	return "", ""
}

func (p *parser) diskDevice(it *Item, where string) (DiskDevice, error) {
	d := DiskDevice{InstanceID: it.InstanceID, ControllerID: it.Parent, Unit: it.AddressOnParent}
	switch it.ResourceType {
	case rtCD, rtDVD:
		d.Device = "cdrom"
	case rtFloppy:
		d.Device = "floppy"
	default:
		d.Device = "disk"
	}
	var hr string
	for _, h := range it.HostResource {
		if h != "" {
			if hr != "" {
				p.warnf("%s: item %q lists several HostResources; only %q is used", where, it.InstanceID, hr)
				break
			}
			hr = h
		}
	}
	if hr == "" {
		if d.Device == "disk" {
			return d, invalidf(it.Line, "%s: disk item %q has no HostResource", where, it.InstanceID)
		}
		return d, nil
	}
	kind, id := parseHostResource(hr)
	if kind == "" && p.ovirt {
		// oVirt names the image by its path, which is the Disk's fileRef.
		for _, disk := range p.env.Disks {
			f, _ := p.env.File(disk.FileRef)
			if disk.ID == hr || disk.FileRef == hr || (f.Href != "" && f.Href == hr) {
				kind, id = "disk", disk.ID
			}
		}
	}
	switch kind {
	case "disk":
		disk, ok := p.env.Disk(id)
		if !ok {
			return d, invalidf(it.Line, "%s: item %q uses disk %q, which DiskSection does not list", where, it.InstanceID, id)
		}
		if other, used := p.usedDisks[id]; used {
			return d, invalidf(it.Line, "%s: disk %q is used by both item %s and item %q", where, id, other, it.InstanceID)
		}
		p.usedDisks[id] = fmt.Sprintf("%q (%s)", it.InstanceID, where)
		d.DiskID = disk.ID
		d.FileID = disk.FileRef
		d.Format = FormatName(disk.Format)
		if f, ok := p.env.File(disk.FileRef); ok {
			d.Href = f.Href
		}
	case "file":
		f, ok := p.env.File(id)
		if !ok {
			return d, invalidf(it.Line, "%s: item %q uses file %q, which References does not list", where, it.InstanceID, id)
		}
		if d.Device == "disk" {
			p.warnf("%s: disk item %q uses File %q directly; its capacity and format come from the image", where, it.InstanceID, id)
		}
		p.usedFiles[id] = true
		d.FileID, d.Href = f.ID, f.Href
	default:
		if d.Device == "disk" {
			return d, invalidf(it.Line, "%s: disk item %q has HostResource %q; expected ovf:/disk/<id>", where, it.InstanceID, hr)
		}
		p.warnf("%s: %s item %q has HostResource %q, which is not a disk or file of the package; the drive is left empty", where, d.Device, it.InstanceID, hr)
	}
	return d, nil
}

// finish resolves what needs the whole descriptor: disk capacities,
// property overrides, references between Files and Disks, and hrefs.
func (p *parser) finish() error {
	for k := range p.opts.Properties {
		if !p.foundProps[k] {
			return invalidf(0, "property %q is not defined by any ProductSection", k)
		}
	}
	hrefs := map[string]string{}
	for _, f := range p.env.Files {
		clean, err := CleanHref(f.Href)
		if err != nil {
			return fmt.Errorf("File %q: %w", f.ID, err)
		}
		if other, dup := hrefs[clean]; dup {
			return invalidf(0, "Files %q and %q both point at %q", other, f.ID, f.Href)
		}
		hrefs[clean] = f.ID
	}
	fileDisks := map[string]string{}
	for i := range p.env.Disks {
		d := &p.env.Disks[i]
		line := p.diskLines[d.ID]
		capacity, err := p.capacity(*d)
		if err != nil {
			return invalidf(line, "Disk %q: %v", d.ID, err)
		}
		d.Capacity = capacity
		if d.FileRef == "" {
			if capacity == 0 {
				return invalidf(line, "Disk %q is blank (no ovf:fileRef) and has no capacity", d.ID)
			}
			continue
		}
		if _, ok := p.env.File(d.FileRef); !ok {
			return invalidf(line, "Disk %q names File %q, which References does not list", d.ID, d.FileRef)
		}
		if other, dup := fileDisks[d.FileRef]; dup {
			return invalidf(line, "Disks %q and %q both use File %q", other, d.ID, d.FileRef)
		}
		fileDisks[d.FileRef] = d.ID
		p.usedFiles[d.FileRef] = true
	}
	// Capacities are known now: fill them into the devices.
	for _, vs := range p.env.VirtualSystems() {
		for i := range vs.Machine.Disks {
			if d, ok := p.env.Disk(vs.Machine.Disks[i].DiskID); ok {
				vs.Machine.Disks[i].CapacityBytes = d.Capacity
			}
		}
		for i := range vs.Machine.Removables {
			if d, ok := p.env.Disk(vs.Machine.Removables[i].DiskID); ok {
				vs.Machine.Removables[i].CapacityBytes = d.Capacity
			}
		}
	}
	for _, d := range p.env.Disks {
		if _, used := p.usedDisks[d.ID]; !used {
			if p.env.Configuration != "" {
				p.warnf("Disk %q is not attached to any virtual system in configuration %q", d.ID, p.env.Configuration)
			} else {
				p.warnf("Disk %q is not attached to any virtual system", d.ID)
			}
		}
	}
	for _, f := range p.env.Files {
		if !p.usedFiles[f.ID] {
			p.warnf("File %q (%s) is not used by any disk or device", f.ID, f.Href)
		}
	}
	return nil
}

var propertyRef = regexp.MustCompile(`^\$\{([^}]+)\}$`)

// capacity computes a disk's virtual size in bytes.
func (p *parser) capacity(d Disk) (int64, error) {
	text := d.CapacityText
	if text == "" {
		p.warnf("Disk %q has no ovf:capacity; the image decides its size", d.ID)
		return 0, nil
	}
	if m := propertyRef.FindStringSubmatch(text); m != nil {
		v, ok := p.property(m[1])
		if !ok {
			return 0, fmt.Errorf("capacity refers to property %q, which no ProductSection defines", m[1])
		}
		text = v
	}
	n, err := parseUint(text)
	if err != nil {
		return 0, fmt.Errorf("capacity: %v", err)
	}
	unit := int64(1)
	if d.CapacityUnits != "" {
		if unit, err = ParseByteUnits(d.CapacityUnits); err != nil {
			return 0, fmt.Errorf("capacityAllocationUnits: %v", err)
		}
	}
	c, err := mulChecked(n, unit)
	if err != nil {
		return 0, fmt.Errorf("capacity: %v", err)
	}
	return c, nil
}

// property finds a property value by key or fully qualified key.
func (p *parser) property(key string) (string, bool) {
	for _, prod := range p.products {
		for _, prop := range prod.Properties {
			if prop.Key == key || fullKey(prod, prop) == key {
				return prop.Value, true
			}
		}
	}
	return "", false
}

func fullKey(prod *Product, prop Property) string {
	k := prop.Key
	if prod.Class != "" {
		k = prod.Class + "." + k
	}
	if prod.Instance != "" {
		k += "." + prod.Instance
	}
	return k
}

// override applies Options.Properties to one property.
func (p *parser) override(prod *Product, prop *Property) error {
	for _, k := range []string{fullKey(prod, *prop), prop.Key} {
		v, ok := p.opts.Properties[k]
		if !ok {
			continue
		}
		if p.foundProps == nil {
			p.foundProps = map[string]bool{}
		}
		p.foundProps[k] = true
		if err := ValidateProperty(*prop, v); err != nil {
			return err
		}
		prop.Value = v
		return nil
	}
	return nil
}

// CleanHref checks that a File href names a file inside the package and
// returns it cleaned. It refuses URLs, absolute paths, drive letters,
// backslashes, NUL and any ".." segment.
func CleanHref(href string) (string, error) {
	switch {
	case href == "":
		return "", invalidf(0, "empty href")
	case strings.ContainsRune(href, 0):
		return "", unsafef(0, "href %q contains NUL", href)
	case strings.Contains(href, `\`):
		return "", unsafef(0, "href %q contains a backslash", href)
	case strings.HasPrefix(href, "/"):
		return "", unsafef(0, "href %q is an absolute path; files must be inside the package", href)
	case schemeRE.MatchString(href):
		return "", unsafef(0, "href %q is a URL or drive path; files must be inside the package", href)
	}
	for _, seg := range strings.Split(href, "/") {
		if seg == ".." {
			return "", unsafef(0, "href %q leaves the package", href)
		}
	}
	clean := path.Clean(href)
	if clean == "." {
		return "", invalidf(0, "href %q names no file", href)
	}
	return clean, nil
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
