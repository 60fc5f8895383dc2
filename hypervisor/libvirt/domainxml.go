package libvirt

import (
	"cmp"
	"errors"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// machineType is the x86 machine every domain gets: i440fx boots a plain
// BIOS disk with the least emulated hardware.
const machineType = "pc"

// domainXML renders spec as a libvirt domain definition.
func domainXML(spec hypervisor.DomainSpec) (string, error) {
	if err := validateSpec(spec); err != nil {
		return "", err
	}
	metadata, err := encodeMetadata(spec.Metadata, true)
	if err != nil {
		return "", err
	}
	devices, err := deviceList(spec)
	if err != nil {
		return "", err
	}
	dom := libvirtxml.Domain{
		Type:     string(spec.Type),
		Name:     spec.Name,
		UUID:     spec.UUID,
		Metadata: &libvirtxml.DomainMetadata{XML: metadata},
		Memory:   &libvirtxml.DomainMemory{Value: uint(spec.MemoryKiB), Unit: "KiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(spec.VCPUs)},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Type: "hvm", Arch: "x86_64", Machine: machineType},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    devices,
	}
	doc, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("render domain XML: %w", err)
	}
	return doc, nil
}

func validateSpec(spec hypervisor.DomainSpec) error {
	var errs []error
	if spec.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if spec.Type != hypervisor.DomainKVM && spec.Type != hypervisor.DomainQEMU {
		errs = append(errs, fmt.Errorf("domain type %q is neither %q nor %q", spec.Type, hypervisor.DomainKVM, hypervisor.DomainQEMU))
	}
	if spec.VCPUs < 1 {
		errs = append(errs, fmt.Errorf("%d vCPUs", spec.VCPUs))
	}
	if spec.MemoryKiB == 0 {
		errs = append(errs, errors.New("no memory"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid domain spec: %w", err)
	}
	return nil
}

func deviceList(spec hypervisor.DomainSpec) (*libvirtxml.DomainDeviceList, error) {
	devices := &libvirtxml.DomainDeviceList{
		Serials:    []libvirtxml.DomainSerial{serialConsole(spec.ConsoleLog)},
		Consoles:   []libvirtxml.DomainConsole{consoleOnSerial()},
		MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		Panics:     []libvirtxml.DomainPanic{{Model: "isa"}},
	}
	for i, d := range spec.Disks {
		disk, err := diskXML(d)
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		devices.Disks = append(devices.Disks, disk)
	}
	for i, n := range spec.NICs {
		if n.Network == "" {
			return nil, fmt.Errorf("NIC %d: no network", i)
		}
		devices.Interfaces = append(devices.Interfaces, interfaceXML(n))
	}
	return devices, nil
}

func diskXML(d hypervisor.Disk) (libvirtxml.DomainDisk, error) {
	device := cmp.Or(d.Device, "disk")
	if device != "disk" && device != "cdrom" {
		return libvirtxml.DomainDisk{}, fmt.Errorf("device %q is neither disk nor cdrom", device)
	}
	if d.Target == "" {
		return libvirtxml.DomainDisk{}, errors.New("no target device")
	}
	if d.Format == "" {
		return libvirtxml.DomainDisk{}, fmt.Errorf("%s: no image format", d.Target)
	}
	if d.Path == "" && device == "disk" {
		return libvirtxml.DomainDisk{}, fmt.Errorf("%s: no image path", d.Target)
	}
	if d.Shareable && (device != "disk" || d.Format != "raw") {
		return libvirtxml.DomainDisk{}, fmt.Errorf("%s: only a raw disk can be shareable, not a %s %s", d.Target, d.Format, device)
	}
	disk := libvirtxml.DomainDisk{
		Device: device,
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: d.Format},
		Target: &libvirtxml.DomainDiskTarget{Dev: d.Target, Bus: diskBus(d.Bus, device)},
		Serial: d.Serial,
	}
	if d.Path != "" {
		disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}}
	}
	if d.ReadOnly || device == "cdrom" {
		disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	if d.Shareable {
		// libvirt then lets QEMU share the write lock of the image with
		// the other domains; no host cache may hold writes back from them.
		disk.Shareable = &libvirtxml.DomainDiskShareable{}
		disk.Driver.Cache = "none"
	}
	return disk, nil
}

// diskBus defaults to virtio for disks and to IDE for CD-ROMs, which virtio
// cannot carry: the "pc" machine's own IDE controller needs no driver beyond
// ata_piix, which even minimal cloud kernels have, while SATA needs AHCI.
func diskBus(bus, device string) string {
	switch {
	case bus != "":
		return bus
	case device == "cdrom":
		return "ide"
	default:
		return "virtio"
	}
}

func interfaceXML(n hypervisor.NIC) libvirtxml.DomainInterface {
	iface := libvirtxml.DomainInterface{
		Source: &libvirtxml.DomainInterfaceSource{
			Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Network},
		},
		Model: &libvirtxml.DomainInterfaceModel{Type: cmp.Or(n.Model, "virtio")},
	}
	if n.MAC != "" {
		iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: n.MAC}
	}
	return iface
}

// serialConsole is the first serial port on a pty, its output appended to
// logFile by virtlogd when logFile is set.
func serialConsole(logFile string) libvirtxml.DomainSerial {
	port := uint(0)
	serial := libvirtxml.DomainSerial{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}
	if logFile != "" {
		serial.Log = &libvirtxml.DomainChardevLog{File: logFile, Append: "on"}
	}
	return serial
}

func consoleOnSerial() libvirtxml.DomainConsole {
	port := uint(0)
	return libvirtxml.DomainConsole{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
	}
}
