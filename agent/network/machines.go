package network

import (
	"cimid/agent/records"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor"
	"cimid/hypervisor/cloudinit"
	"cimid/store"
)

// MaxUserData bounds decoded userData, like the metadata services of
// public clouds do.
const MaxUserData = 64 << 10

// maxInterfaces bounds the interfaces of one Machine.
const maxInterfaces = 16

// NIC models a Machine interface may ask for.
var nicModels = map[string]bool{"virtio": true, "e1000": true, "e1000e": true, "rtl8139": true}

// InterfaceSpec is one interface of a MachineTemplate, resolved and
// checked: what compute keeps in its template records.
type InterfaceSpec struct {
	NetworkID  string   `json:"networkId"`
	MAC        string   `json:"mac,omitempty"` // empty: generated for each Machine
	Model      string   `json:"model"`
	AddressIDs []string `json:"addressIds,omitempty"`
}

// TemplateSpec is the network and first-boot part of a MachineTemplate.
// Interfaces nil means "the default network"; an empty, non-nil list means
// no interface at all.
type TemplateSpec struct {
	Interfaces   []InterfaceSpec `json:"interfaces"`
	CredentialID string          `json:"credentialId,omitempty"` // by reference to a Credential
	Credential   *credSpec       `json:"credential,omitempty"`   // by value, or from a CredentialTemplate
	UserData     string          `json:"userData,omitempty"`     // base64, checked
}

// TemplateInput is what a MachineTemplate (or a Machine create's template
// by value or override) says about networks and first boot.
type TemplateInput struct {
	// NetworkInterfaces as decoded; nil when the attribute is absent.
	NetworkInterfaces []cimi.MachineNetworkInterfaceInput
	Credential        *cimi.CredentialInput
	UserData          *string
}

// ResolveTemplate checks a template's interfaces, credential and userData
// inside compute's transaction and returns what to store. A base spec
// (from a stored template, when a create overrides it) keeps what in does
// not name.
func (s *Service) ResolveTemplate(tx *store.Tx, urls api.URLs, base *TemplateSpec, in TemplateInput) (TemplateSpec, error) {
	var out TemplateSpec
	if base != nil {
		out = *base
	}
	if in.NetworkInterfaces != nil {
		if len(in.NetworkInterfaces) > maxInterfaces {
			return out, errdefs.Invalidf("at most %d networkInterfaces, not %d", maxInterfaces, len(in.NetworkInterfaces))
		}
		out.Interfaces = make([]InterfaceSpec, 0, len(in.NetworkInterfaces))
		seen := map[string]bool{}
		for i, ni := range in.NetworkInterfaces {
			spec, err := s.interfaceSpec(tx, urls, ni)
			if err != nil {
				return out, errdefs.Wrap(errdefs.ClassOf(err), fmt.Errorf("networkInterfaces[%d]: %w", i, err))
			}
			if spec.MAC != "" {
				if seen[spec.MAC] {
					return out, errdefs.Invalidf("networkInterfaces[%d]: macAddress %s is given twice", i, spec.MAC)
				}
				seen[spec.MAC] = true
			}
			out.Interfaces = append(out.Interfaces, spec)
		}
	}
	if in.Credential != nil {
		out.CredentialID, out.Credential = "", nil
		path, _ := urls.Path(in.Credential.Href)
		if in.Credential.Href != "" && strings.HasPrefix(path, kindCredentials+"/") {
			id, err := refID(urls, in.Credential.Href, kindCredentials, "Credential")
			if err != nil {
				return out, err
			}
			if _, err := records.Get[credentialRecord](tx, kindCredentials, id, "Credential"); err != nil {
				return out, referenced(err)
			}
			out.CredentialID = id
		} else {
			c, err := s.lookupCredential(tx, urls, in.Credential, false)
			if err != nil {
				return out, err
			}
			out.Credential = &c
		}
	}
	if in.UserData != nil {
		data, err := checkUserData(*in.UserData)
		if err != nil {
			return out, err
		}
		out.UserData = data
	}
	return out, nil
}

// checkUserData validates base64 userData, its decoded size, and that the
// seed can carry it over into a multipart user-data file when a
// credential joins it: gzip'd data must decompress, a MIME document parse.
func checkUserData(data string) (string, error) {
	data = strings.TrimSpace(data)
	if data == "" {
		return "", nil
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", errdefs.Invalidf("userData must be base64: %v", err)
	}
	if len(raw) > MaxUserData {
		return "", errdefs.Invalidf("userData decodes to %d bytes; the limit is %d", len(raw), MaxUserData)
	}
	if err := cloudinit.CheckUserData(raw); err != nil {
		return "", errdefs.Invalidf("userData %v", err)
	}
	return data, nil
}

func (s *Service) interfaceSpec(tx *store.Tx, urls api.URLs, in cimi.MachineNetworkInterfaceInput) (InterfaceSpec, error) {
	var spec InterfaceSpec
	if in.Network == nil || in.Network.Href == "" {
		return spec, errdefs.Invalidf("network is required: {\"network\": {\"href\": ...}}")
	}
	id, err := refID(urls, in.Network.Href, kindNetworks, "Network")
	if err != nil {
		return spec, err
	}
	n, err := records.Get[networkRecord](tx, kindNetworks, id, "Network")
	if err != nil {
		return spec, referenced(err)
	}
	if n.State == cimi.NetworkDeleting {
		return spec, errdefs.Conflictf("Network %s is being deleted", id)
	}
	spec.NetworkID = id
	if strings.TrimSpace(in.MACAddress) != "" {
		if spec.MAC, err = normalMAC(in.MACAddress); err != nil {
			return spec, err
		}
	}
	spec.Model = strings.ToLower(strings.TrimSpace(in.Model))
	if spec.Model == "" {
		spec.Model = "virtio"
	}
	if !nicModels[spec.Model] {
		return spec, errdefs.Invalidf("model %q is not supported: use virtio (default), e1000, e1000e or rtl8139", in.Model)
	}
	for _, ref := range in.Addresses {
		aid, err := refID(urls, ref.Href, kindAddresses, "Address")
		if err != nil {
			return spec, err
		}
		a, err := records.Get[addressRecord](tx, kindAddresses, aid, "Address")
		if err != nil {
			return spec, referenced(err)
		}
		if a.Allocation != cimi.AllocationStatic || a.NetworkID != id {
			return spec, errdefs.Invalidf("Address %s is not a static address on Network %s", aid, id)
		}
		if a.MAC != "" {
			if spec.MAC != "" && spec.MAC != a.MAC {
				return spec, errdefs.Invalidf("Address %s is reserved for MAC %s, not %s", aid, a.MAC, spec.MAC)
			}
			spec.MAC = a.MAC
		}
		spec.AddressIDs = append(spec.AddressIDs, aid)
	}
	if len(spec.AddressIDs) > 1 {
		return spec, errdefs.Invalidf("an interface takes at most one static address, not %d", len(spec.AddressIDs))
	}
	return spec, nil
}

// TemplateDoc renders the network part of a MachineTemplate: its
// networkInterfaces and credential (a reference, or the credential by
// value without its password).
func (s *Service) TemplateDoc(urls api.URLs, t TemplateSpec) ([]cimi.MachineNetworkInterfaceInput, *cimi.CredentialInput) {
	var nics []cimi.MachineNetworkInterfaceInput
	for _, i := range t.Interfaces {
		n := cimi.MachineNetworkInterfaceInput{Network: &cimi.Ref{Href: urls.Abs(networkPath(i.NetworkID))}, MACAddress: i.MAC, Model: i.Model}
		for _, a := range i.AddressIDs {
			n.Addresses = append(n.Addresses, cimi.Ref{Href: urls.Abs(addressPath(a))})
		}
		nics = append(nics, n)
	}
	var cred *cimi.CredentialInput
	switch {
	case t.CredentialID != "":
		cred = &cimi.CredentialInput{Href: urls.Abs(kindCredentials + "/" + t.CredentialID)}
	case t.Credential != nil:
		cred = &cimi.CredentialInput{UserName: t.Credential.UserName, Key: t.Credential.Key}
	}
	return nics, cred
}

// MachineInfo is what AttachMachine is told about a Machine being created.
type MachineInfo struct {
	ID     string
	Name   string // display name; the guest's host name derives from it
	Domain string // libvirt domain name
}

// AttachMachine records, in compute's create transaction, the interfaces
// of a new Machine (MACs generated where the template gives none) and the
// plan of its cloud-init seed. The seed is planned when the template has a
// credential or userData. A Network being deleted refuses the Machine.
func (s *Service) AttachMachine(tx *store.Tx, m MachineInfo, t TemplateSpec) error {
	if _, err := tx.Get(kindMachineNets, m.ID); err == nil {
		return errdefs.Conflictf("Machine %s already has network records", m.ID)
	}
	rec := machineNetRecord{MachineID: m.ID, Domain: m.Domain}
	ifaces := t.Interfaces
	if ifaces == nil {
		n, err := records.Get[networkRecord](tx, kindNetworks, defaultNetworkID, "Network")
		if err == nil && n.State != cimi.NetworkDeleting && n.State != cimi.NetworkError {
			ifaces = []InterfaceSpec{{NetworkID: defaultNetworkID, Model: "virtio"}}
		}
	}
	for _, spec := range ifaces {
		if _, err := s.addPort(tx, &rec, spec, cimi.InterfaceActive, job.NewID()); err != nil {
			return err
		}
	}
	cred := t.Credential
	if t.CredentialID != "" {
		c, err := records.Get[credentialRecord](tx, kindCredentials, t.CredentialID, "Credential")
		if err != nil {
			return referenced(err)
		}
		cred = &c.credSpec
	}
	if cred != nil || t.UserData != "" {
		plan := &seedPlan{InstanceID: m.ID, Hostname: cloudinit.Hostname(m.Name, "m-"+strings.SplitN(m.ID, "-", 2)[0]), UserData: t.UserData, Created: s.now()}
		if cred != nil {
			plan.UserName, plan.PasswordHash = cred.UserName, cred.PasswordHash
			if cred.Key != "" {
				plan.SSHKeys = []string{cred.Key}
			}
		}
		rec.Seed = plan
		rec.SeedPath = filepath.Join(s.seedDir, "machine-"+m.ID+"-seed.iso")
	}
	return records.Put(tx, kindMachineNets, m.ID, rec)
}

// addPort writes the record of one interface of a Machine, binding the
// static addresses it names to its MAC.
func (s *Service) addPort(tx *store.Tx, m *machineNetRecord, spec InterfaceSpec, state, id string) (portRecord, error) {
	n, err := records.Get[networkRecord](tx, kindNetworks, spec.NetworkID, "Network")
	if err != nil {
		return portRecord{}, referenced(err)
	}
	if n.State == cimi.NetworkDeleting {
		return portRecord{}, errdefs.Conflictf("Network %s is being deleted", n.ID)
	}
	ports, err := records.List[portRecord](tx, kindPorts)
	if err != nil {
		return portRecord{}, err
	}
	if count := countMachinePorts(ports, m.MachineID); count >= maxInterfaces {
		return portRecord{}, errdefs.Conflictf("Machine %s already has %d interfaces, the most it may have", m.MachineID, count)
	}
	mac := spec.MAC
	if mac == "" {
		if mac, err = newMAC(ports); err != nil {
			return portRecord{}, err
		}
	}
	for _, p := range ports {
		if p.MAC == mac {
			return portRecord{}, errdefs.Conflictf("macAddress %s is already used by an interface of Machine %s", mac, p.MachineID)
		}
	}
	for _, aid := range spec.AddressIDs {
		a, err := records.Get[addressRecord](tx, kindAddresses, aid, "Address")
		if err != nil {
			return portRecord{}, referenced(err)
		}
		for _, p := range ports {
			if contains(p.AddressIDs, aid) {
				return portRecord{}, errdefs.Conflictf("Address %s is already used by an interface of Machine %s", aid, p.MachineID)
			}
		}
		if a.MAC != "" && a.MAC != mac {
			return portRecord{}, errdefs.Conflictf("Address %s is reserved for MAC %s", aid, a.MAC)
		}
		a.MAC = mac
		if err := records.Put(tx, kindAddresses, aid, a); err != nil {
			return portRecord{}, err
		}
	}
	if err := tx.Delete(kindReleased, releasedKey(spec.NetworkID, mac)); err != nil {
		return portRecord{}, err
	}
	now := s.now()
	p := portRecord{meta: meta{ID: id, Name: fmt.Sprintf("nic%d", m.NextIndex), Created: now, Updated: now},
		NetworkID: spec.NetworkID, MachineID: m.MachineID, MAC: mac, Model: spec.Model,
		AddressIDs: spec.AddressIDs, State: state, Index: m.NextIndex}
	m.NextIndex++
	return p, records.Put(tx, kindPorts, p.ID, p)
}

func countMachinePorts(ports []portRecord, machineID string) int {
	n := 0
	for _, p := range ports {
		if p.MachineID == machineID {
			n++
		}
	}
	return n
}

// newMAC returns a random MAC in QEMU's 52:54:00 range that no interface
// of ours uses.
func newMAC(ports []portRecord) (string, error) {
	used := map[string]bool{}
	for _, p := range ports {
		used[p.MAC] = true
	}
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("generate a MAC address: %w", err)
		}
		mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
		if !used[mac] {
			return mac, nil
		}
	}
	return "", errors.New("generate a MAC address: no free one found")
}

// Devices are what a Machine's domain definition gets from this package.
type Devices struct {
	NICs []hypervisor.NIC
	// Seed is the cloud-init seed CD-ROM; nil when the Machine has none.
	Seed *hypervisor.Disk
}

// PrepareMachine runs in compute's create Job before the domain is
// defined: it waits for the Machine's networks to run, reserves its static
// addresses in their DHCP servers and writes its seed ISO. It is safe to
// run again after a crash.
func (s *Service) PrepareMachine(ctx context.Context, machineID string) (Devices, error) {
	m, err := load[machineNetRecord](s.db, kindMachineNets, machineID, "Machine network record")
	if err != nil {
		return Devices{}, err
	}
	ports, err := s.machinePorts(machineID)
	if err != nil {
		return Devices{}, err
	}
	for _, p := range ports {
		if err := s.waitStarted(ctx, p.NetworkID); err != nil {
			return Devices{}, err
		}
		if err := s.reserveStatic(ctx, p); err != nil {
			return Devices{}, err
		}
	}
	if m.Seed != nil {
		if err := s.writeSeed(m, ports); err != nil {
			return Devices{}, err
		}
	}
	return s.devices(m, ports)
}

// MachineDevices returns the devices of a Machine as recorded, for a
// definition written again; it touches neither libvirt nor files.
func (s *Service) MachineDevices(machineID string) (Devices, error) {
	m, err := load[machineNetRecord](s.db, kindMachineNets, machineID, "Machine network record")
	if errdefs.Is(err, errdefs.NotFound) {
		return Devices{}, nil
	}
	if err != nil {
		return Devices{}, err
	}
	ports, err := s.machinePorts(machineID)
	if err != nil {
		return Devices{}, err
	}
	return s.devices(m, ports)
}

func (s *Service) devices(m machineNetRecord, ports []portRecord) (Devices, error) {
	var d Devices
	nets := map[string]networkRecord{}
	for _, p := range ports {
		if p.State == cimi.InterfaceDetaching {
			continue
		}
		n, ok := nets[p.NetworkID]
		if !ok {
			var err error
			if n, err = load[networkRecord](s.db, kindNetworks, p.NetworkID, "Network"); err != nil {
				return Devices{}, err
			}
			nets[p.NetworkID] = n
		}
		d.NICs = append(d.NICs, hypervisor.NIC{Network: n.LibvirtName, MAC: p.MAC, Model: p.Model})
	}
	if m.Seed != nil {
		d.Seed = &hypervisor.Disk{Path: m.SeedPath, Format: "raw", Target: "hdc", Bus: "ide", Device: "cdrom", ReadOnly: true}
	}
	return d, nil
}

// writeSeed writes the seed ISO; the same plan always gives the same bytes.
func (s *Service) writeSeed(m machineNetRecord, ports []portRecord) error {
	seed := cloudinit.Seed{InstanceID: m.Seed.InstanceID, Hostname: m.Seed.Hostname, UserName: m.Seed.UserName,
		SSHKeys: m.Seed.SSHKeys, PasswordHash: m.Seed.PasswordHash}
	if m.Seed.UserData != "" {
		raw, err := base64.StdEncoding.DecodeString(m.Seed.UserData)
		if err != nil {
			return fmt.Errorf("seed of Machine %s: userData: %w", m.MachineID, err)
		}
		seed.UserData = raw
	}
	for _, p := range ports {
		if p.State != cimi.InterfaceDetaching {
			seed.NICs = append(seed.NICs, cloudinit.NIC{MAC: p.MAC})
		}
	}
	if err := os.MkdirAll(filepath.Dir(m.SeedPath), 0o711); err != nil {
		return fmt.Errorf("seed directory: %w", err)
	}
	return seed.WriteFile(m.SeedPath, m.Seed.Created)
}

// reserveStatic binds the static addresses of an interface to its MAC in
// the network's DHCP server.
func (s *Service) reserveStatic(ctx context.Context, p portRecord) error {
	for _, aid := range p.AddressIDs {
		a, err := load[addressRecord](s.db, kindAddresses, aid, "Address")
		if err != nil {
			return err
		}
		n, err := load[networkRecord](s.db, kindNetworks, a.NetworkID, "Network")
		if err != nil {
			return err
		}
		if err := s.drv.AddDHCPHost(ctx, n.LibvirtName, hypervisor.DHCPHost{MAC: p.MAC, IP: a.IP, Name: a.Hostname}); err != nil {
			return err
		}
	}
	return nil
}

// releasePort undoes reserveStatic and forgets the interface: static
// addresses stay reserved, free for another interface.
func (s *Service) releasePort(ctx context.Context, p portRecord) error {
	for _, aid := range p.AddressIDs {
		a, err := load[addressRecord](s.db, kindAddresses, aid, "Address")
		if errdefs.Is(err, errdefs.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		n, err := load[networkRecord](s.db, kindNetworks, a.NetworkID, "Network")
		if err == nil {
			if err := s.drv.RemoveDHCPHost(ctx, n.LibvirtName, hypervisor.DHCPHost{MAC: p.MAC}); err != nil && !isNotFound(err) {
				return err
			}
		} else if !errdefs.Is(err, errdefs.NotFound) {
			return err
		}
	}
	return s.db.Update(func(tx *store.Tx) error {
		for _, aid := range p.AddressIDs {
			a, err := records.Get[addressRecord](tx, kindAddresses, aid, "Address")
			if err != nil {
				continue
			}
			a.MAC = ""
			if err := records.Put(tx, kindAddresses, aid, a); err != nil {
				return err
			}
		}
		addrs, err := records.List[addressRecord](tx, kindAddresses)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.Allocation == cimi.AllocationDynamic && a.NetworkID == p.NetworkID && a.MAC == p.MAC {
				if err := tx.Delete(kindAddresses, a.ID); err != nil {
					return err
				}
			}
		}
		if err := records.Put(tx, kindReleased, releasedKey(p.NetworkID, p.MAC), releasedRecord{NetworkID: p.NetworkID, MAC: p.MAC, Released: s.now()}); err != nil {
			return err
		}
		return tx.Delete(kindPorts, p.ID)
	})
}

// ReleaseMachine runs when compute removes a Machine, after its domain is
// gone: it drops the static reservations of its interfaces, forgets its
// interfaces and their addresses, removes its seed ISO, then its record.
// A Machine this package has no record of is not an error.
func (s *Service) ReleaseMachine(ctx context.Context, machineID string) error {
	m, err := load[machineNetRecord](s.db, kindMachineNets, machineID, "Machine network record")
	if errdefs.Is(err, errdefs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ports, err := s.machinePorts(machineID)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := s.releasePort(ctx, p); err != nil {
			return fmt.Errorf("release interface %s: %w", p.MAC, err)
		}
	}
	if m.SeedPath != "" {
		if err := os.Remove(m.SeedPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove seed: %w", err)
		}
	}
	return s.db.Update(func(tx *store.Tx) error { return tx.Delete(kindMachineNets, machineID) })
}

// machinePorts lists the interfaces of a Machine in their order.
func (s *Service) machinePorts(machineID string) ([]portRecord, error) {
	all, err := loadAll[portRecord](s.db, kindPorts)
	if err != nil {
		return nil, err
	}
	var out []portRecord
	for _, p := range all {
		if p.MachineID == machineID {
			out = append(out, p)
		}
	}
	sortPorts(out)
	return out, nil
}

func sortPorts(ports []portRecord) {
	for i := 1; i < len(ports); i++ {
		for j := i; j > 0 && ports[j].Index < ports[j-1].Index; j-- {
			ports[j], ports[j-1] = ports[j-1], ports[j]
		}
	}
}

func isNotFound(err error) bool { return errors.Is(err, hypervisor.ErrNotFound) }
