package libvirt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// releasePoll is how often a live detach looks whether the guest has let
// the device go.
const releasePoll = 100 * time.Millisecond

// scope is one of the two definitions a device change applies to: the
// persistent one, and the live one of a running domain.
type scope struct {
	modify   libvirt.DomainDeviceModifyFlags
	xmlFlags libvirt.DomainXMLFlags
}

var (
	configScope = scope{modify: libvirt.DOMAIN_DEVICE_MODIFY_CONFIG, xmlFlags: libvirt.DOMAIN_XML_INACTIVE}
	liveScope   = scope{modify: libvirt.DOMAIN_DEVICE_MODIFY_LIVE}
)

// scopedDef is a domain definition together with the scope it was read from.
type scopedDef struct {
	scope scope
	def   *libvirtxml.Domain
}

// definitions reads the definitions a device change applies to: the
// persistent one, and the live one when live is set and dom is active.
func definitions(dom *libvirt.Domain, live bool) ([]scopedDef, error) {
	persistent, err := dom.IsPersistent()
	if err != nil {
		return nil, classify(err)
	}
	active, err := dom.IsActive()
	if err != nil {
		return nil, classify(err)
	}
	var scopes []scope
	if persistent {
		scopes = append(scopes, configScope)
	}
	if live && active {
		scopes = append(scopes, liveScope)
	}
	if len(scopes) == 0 {
		return nil, errors.New("the domain is transient: only a live change applies to it")
	}
	defs := make([]scopedDef, 0, len(scopes))
	for _, s := range scopes {
		def, err := readDefinition(dom, s.xmlFlags)
		if err != nil {
			return nil, err
		}
		defs = append(defs, scopedDef{scope: s, def: def})
	}
	return defs, nil
}

// readDefinition parses the domain XML of dom selected by flags.
func readDefinition(dom *libvirt.Domain, flags libvirt.DomainXMLFlags) (*libvirtxml.Domain, error) {
	doc, err := dom.GetXMLDesc(flags)
	if err != nil {
		return nil, classify(err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("parse domain XML: %w", err)
	}
	return &def, nil
}

func findDisk(def *libvirtxml.Domain, target string) *libvirtxml.DomainDisk {
	if def.Devices == nil {
		return nil
	}
	for i := range def.Devices.Disks {
		if t := def.Devices.Disks[i].Target; t != nil && t.Dev == target {
			return &def.Devices.Disks[i]
		}
	}
	return nil
}

func diskSource(disk *libvirtxml.DomainDisk) string {
	if disk.Source == nil || disk.Source.File == nil {
		return ""
	}
	return disk.Source.File.File
}

func findInterface(def *libvirtxml.Domain, mac string) *libvirtxml.DomainInterface {
	if def.Devices == nil {
		return nil
	}
	for i := range def.Devices.Interfaces {
		if m := def.Devices.Interfaces[i].MAC; m != nil && strings.EqualFold(m.Address, mac) {
			return &def.Devices.Interfaces[i]
		}
	}
	return nil
}

func interfaceNetwork(iface *libvirtxml.DomainInterface) string {
	if iface.Source == nil || iface.Source.Network == nil {
		return ""
	}
	return iface.Source.Network.Network
}

// AttachDisk adds disk to the persistent definition of domain and, when live
// is set and the domain is active, hot-plugs it into the guest. A
// definition that already holds the same image at disk.Target is left as it
// is, so that a repeated attach succeeds; another image at that target is an
// error.
func (d *Driver) AttachDisk(ctx context.Context, domain string, disk hypervisor.Disk, live bool) error {
	if err := d.attachDisk(ctx, domain, disk, live); err != nil {
		return fmt.Errorf("attach disk %s to domain %s: %w", disk.Target, domain, err)
	}
	return nil
}

func (d *Driver) attachDisk(ctx context.Context, domain string, disk hypervisor.Disk, live bool) error {
	dev, err := diskXML(disk)
	if err != nil {
		return err
	}
	doc, err := dev.Marshal()
	if err != nil {
		return fmt.Errorf("render disk XML: %w", err)
	}
	return d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		defs, err := definitions(dom, live)
		if err != nil {
			return err
		}
		var flags libvirt.DomainDeviceModifyFlags
		for _, sd := range defs {
			existing := findDisk(sd.def, disk.Target)
			if existing == nil {
				flags |= sd.scope.modify
				continue
			}
			if src := diskSource(existing); src != disk.Path {
				return fmt.Errorf("target %s already holds %q", disk.Target, src)
			}
		}
		if flags == 0 {
			return nil
		}
		err = dom.AttachDeviceFlags(doc, flags)
		if err != nil && diskPresent(dom, live, disk) {
			// An earlier call, cut off before it returned (an agent killed
			// mid-attach), has finished the same attach meanwhile.
			return nil
		}
		return err
	})
}

// diskPresent reports whether every definition an attach applies to holds
// disk at its target, from the same source.
func diskPresent(dom *libvirt.Domain, live bool, disk hypervisor.Disk) bool {
	defs, err := definitions(dom, live)
	if err != nil {
		return false
	}
	for _, sd := range defs {
		existing := findDisk(sd.def, disk.Target)
		if existing == nil || diskSource(existing) != disk.Path {
			return false
		}
	}
	return true
}

// DetachDisk removes the disk at target from the persistent definition of
// domain and, when live is set and the domain is active, from the guest. A
// live detach returns once the guest has released the disk, or fails when
// ctx ends first (the persistent definition has changed by then). The error
// wraps hypervisor.ErrNotFound when no definition concerned holds target.
func (d *Driver) DetachDisk(ctx context.Context, domain, target string, live bool) error {
	err := d.detach(ctx, domain, live, "disk "+target, func(def *libvirtxml.Domain) (string, error) {
		disk := findDisk(def, target)
		if disk == nil {
			return "", nil
		}
		dev := *disk
		dev.Alias = nil
		return dev.Marshal()
	})
	if err != nil {
		return fmt.Errorf("detach disk %s from domain %s: %w", target, domain, err)
	}
	return nil
}

// deviceXML returns the XML that names a device in def to libvirt, or ""
// when def does not hold it.
type deviceXML func(def *libvirtxml.Domain) (string, error)

// detach removes the device that find describes from the definitions that
// hold it, and waits for the guest to release it when the live definition
// was among them.
func (d *Driver) detach(ctx context.Context, domain string, live bool, what string, find deviceXML) error {
	unplugged := false
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		defs, err := definitions(dom, live)
		if err != nil {
			return err
		}
		var flags libvirt.DomainDeviceModifyFlags
		var doc string
		for _, sd := range defs {
			xml, err := find(sd.def)
			if err != nil {
				return fmt.Errorf("render %s XML: %w", what, err)
			}
			if xml == "" {
				continue
			}
			flags |= sd.scope.modify
			if doc == "" {
				doc = xml
			}
		}
		if flags == 0 {
			return fmt.Errorf("no %s: %w", what, hypervisor.ErrNotFound)
		}
		if err := dom.DetachDeviceFlags(doc, flags); err != nil {
			return err
		}
		unplugged = flags&libvirt.DOMAIN_DEVICE_MODIFY_LIVE != 0
		return nil
	})
	if err != nil || !unplugged {
		return err
	}
	return d.waitReleased(ctx, domain, what, find)
}

// waitReleased polls the live definition of domain until it no longer holds
// the device that find describes, the domain stops, or ctx ends. libvirt
// returns from a live detach after a few seconds even when the guest has
// not yet acknowledged the unplug; the device stays in the live definition
// until it has.
func (d *Driver) waitReleased(ctx context.Context, domain, what string, find deviceXML) error {
	ticker := time.NewTicker(releasePoll)
	defer ticker.Stop()
	for {
		held := false
		err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
			active, err := dom.IsActive()
			if err != nil || !active {
				return err
			}
			def, err := readDefinition(dom, 0)
			if err != nil {
				return err
			}
			xml, err := find(def)
			held = xml != ""
			return err
		})
		switch {
		case hasCode(err, libvirt.ERR_NO_DOMAIN):
			return nil // gone together with the domain
		case err != nil:
			return fmt.Errorf("waiting for the guest to release %s: %w", what, err)
		case !held:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the guest has not released %s: %w", what, ctx.Err())
		case <-ticker.C:
		}
	}
}

// ResizeDisk sets the size of the disk at target of the running domain to
// sizeBytes; QEMU grows a qcow2 image itself and the guest sees the new
// size at once. A stopped domain's image must be resized instead.
func (d *Driver) ResizeDisk(ctx context.Context, domain, target string, sizeBytes uint64) error {
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		active, err := dom.IsActive()
		if err != nil {
			return err
		}
		if !active {
			return errors.New("the domain is not running")
		}
		def, err := readDefinition(dom, 0)
		if err != nil {
			return err
		}
		if findDisk(def, target) == nil {
			return fmt.Errorf("no disk %s: %w", target, hypervisor.ErrNotFound)
		}
		return dom.BlockResize(target, sizeBytes, libvirt.DOMAIN_BLOCK_RESIZE_BYTES)
	})
	if err != nil {
		return fmt.Errorf("resize disk %s of domain %s to %d bytes: %w", target, domain, sizeBytes, err)
	}
	return nil
}

// AttachNIC adds an interface on nic.Network to the persistent definition of
// domain and, when live is set and the domain is active, hot-plugs it into
// the guest. Without nic.MAC a random locally administered QEMU address is
// chosen; pass one to make a repeated attach idempotent: an interface with
// that MAC on the same network is left as it is.
func (d *Driver) AttachNIC(ctx context.Context, domain string, nic hypervisor.NIC, live bool) error {
	if err := d.attachNIC(ctx, domain, nic, live); err != nil {
		return fmt.Errorf("attach NIC on network %s to domain %s: %w", nic.Network, domain, err)
	}
	return nil
}

func (d *Driver) attachNIC(ctx context.Context, domain string, nic hypervisor.NIC, live bool) error {
	if nic.Network == "" {
		return errors.New("no network")
	}
	mac, err := normalMAC(nic.MAC)
	if err != nil {
		return err
	}
	nic.MAC = mac
	iface := interfaceXML(nic)
	doc, err := iface.Marshal()
	if err != nil {
		return fmt.Errorf("render interface XML: %w", err)
	}
	return d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		defs, err := definitions(dom, live)
		if err != nil {
			return err
		}
		var flags libvirt.DomainDeviceModifyFlags
		for _, sd := range defs {
			existing := findInterface(sd.def, mac)
			if existing == nil {
				flags |= sd.scope.modify
				continue
			}
			if other := interfaceNetwork(existing); other != nic.Network {
				return fmt.Errorf("MAC %s is already in use on network %q", mac, other)
			}
		}
		if flags == 0 {
			return nil
		}
		return dom.AttachDeviceFlags(doc, flags)
	})
}

// normalMAC validates mac and writes it in lower case, or picks a random
// address under QEMU's prefix 52:54:00 when mac is empty. The caller picks it
// rather than libvirt, so that the persistent and the live definition get
// the same one.
func normalMAC(mac string) (string, error) {
	if mac == "" {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("generate MAC address: %w", err)
		}
		return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]), nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("invalid MAC address %q", mac)
	}
	return hw.String(), nil
}

// DetachNIC removes the interface with the given MAC from the persistent
// definition of domain and, when live is set and the domain is active, from
// the guest, waiting like DetachDisk for the guest to release it. The error
// wraps hypervisor.ErrNotFound when no definition concerned holds it.
func (d *Driver) DetachNIC(ctx context.Context, domain, mac string, live bool) error {
	err := d.detach(ctx, domain, live, "interface "+mac, func(def *libvirtxml.Domain) (string, error) {
		iface := findInterface(def, mac)
		if iface == nil {
			return "", nil
		}
		// libvirt matches an interface by MAC, and also by address and
		// alias when they are given; those differ between definitions.
		dev := libvirtxml.DomainInterface{MAC: iface.MAC, Source: iface.Source, Model: iface.Model}
		return dev.Marshal()
	})
	if err != nil {
		return fmt.Errorf("detach NIC %s from domain %s: %w", mac, domain, err)
	}
	return nil
}

// DomainNICs lists the interfaces of the persistent definition of domain in
// their order there. Network is empty for interfaces that are not attached
// to a libvirt network.
func (d *Driver) DomainNICs(ctx context.Context, domain string) ([]hypervisor.NIC, error) {
	var nics []hypervisor.NIC
	err := d.withDomain(ctx, domain, func(dom *libvirt.Domain) error {
		def, err := readDefinition(dom, libvirt.DOMAIN_XML_INACTIVE)
		if err != nil {
			return err
		}
		if def.Devices == nil {
			return nil
		}
		for i := range def.Devices.Interfaces {
			iface := &def.Devices.Interfaces[i]
			nic := hypervisor.NIC{Network: interfaceNetwork(iface)}
			if iface.MAC != nil {
				nic.MAC = iface.MAC.Address
			}
			if iface.Model != nil {
				nic.Model = iface.Model.Type
			}
			nics = append(nics, nic)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list NICs of domain %s: %w", domain, err)
	}
	return nics, nil
}
