package compute

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/network"
	"cimid/hypervisor"
	"cimid/store"
)

// Networks is what Machines need from the service that owns Networks,
// Credentials and the cloud-init seed. The methods taking a transaction
// work inside the caller's, so that a template's or Machine's record and
// the network side of it are written together.
type Networks interface {
	// ResolveTemplate checks the interfaces, credential and userData of a
	// template (or of a create's overrides on base) and returns what the
	// template record keeps.
	ResolveTemplate(tx *store.Tx, urls api.URLs, base *network.TemplateSpec, in network.TemplateInput) (network.TemplateSpec, error)
	// TemplateDoc renders the network part of a template.
	TemplateDoc(urls api.URLs, t network.TemplateSpec) ([]cimi.MachineNetworkInterfaceInput, *cimi.CredentialInput)
	// AttachMachine records the interfaces and the seed plan of a Machine
	// being created.
	AttachMachine(tx *store.Tx, m network.MachineInfo, t network.TemplateSpec) error
	// PrepareMachine readies what the domain of a new Machine needs (its
	// networks running, static addresses reserved, the seed ISO written)
	// and returns its devices. It may be run again.
	PrepareMachine(ctx context.Context, machineID string) (network.Devices, error)
	// MachineInterfaces lists the interfaces of a Machine with their
	// addresses.
	MachineInterfaces(machineID string) ([]network.InterfaceInfo, error)
	// ReleaseMachine forgets the network side of a Machine whose domain is
	// gone, and removes its seed.
	ReleaseMachine(ctx context.Context, machineID string) error
	// Refresh asks for an early reading of DHCP leases.
	Refresh()
}

// SetNetworks gives the service the one that owns Networks. It is called
// once, before the service prepares or runs.
func (s *Service) SetNetworks(n Networks) { s.cfg.Networks = n }

// errNoNetworks refuses first-boot and network attributes when no service
// serves them.
var errNoNetworks = errdefs.New(errdefs.NotImplemented, "networkInterfaces, credential and userData are not served by this agent")

// templateNet returns the network part of a template record. A record
// written before templates had one keeps its userData in its own field.
func (t templateRecord) templateNet() network.TemplateSpec {
	if t.Net != nil {
		return *t.Net
	}
	return network.TemplateSpec{UserData: t.UserData}
}

// netInput is the network part of a template as a request gives it.
func netInput(in *cimi.MachineTemplateInput) network.TemplateInput {
	return network.TemplateInput{NetworkInterfaces: in.NetworkInterfaces, Credential: in.Credential, UserData: in.UserData}
}

// resolveNet checks the network part of a template given by value (base
// nil) or of a create's overrides on a stored template's base.
func (s *Service) resolveNet(tx *store.Tx, urls api.URLs, base *network.TemplateSpec, in *cimi.MachineTemplateInput) (*network.TemplateSpec, error) {
	if s.cfg.Networks == nil {
		if in.NetworkInterfaces != nil || in.Credential != nil || in.UserData != nil && strings.TrimSpace(*in.UserData) != "" {
			return nil, errNoNetworks
		}
		return base, nil
	}
	spec, err := s.cfg.Networks.ResolveTemplate(tx, urls, base, netInput(in))
	if err != nil {
		return nil, err
	}
	return &spec, nil
}

// attachNetworks records, in the create's transaction, the interfaces and
// seed of a new Machine.
func (s *Service) attachNetworks(tx *store.Tx, m machineRecord, t templateRecord) error {
	if s.cfg.Networks == nil {
		return nil
	}
	return s.cfg.Networks.AttachMachine(tx, network.MachineInfo{ID: m.ID, Name: m.Name, Domain: m.Domain}, t.templateNet())
}

// prepareNetworks readies the network devices of a Machine being created.
func (s *Service) prepareNetworks(ctx context.Context, id string) (network.Devices, error) {
	if s.cfg.Networks == nil {
		return network.Devices{}, nil
	}
	dev, err := s.cfg.Networks.PrepareMachine(ctx, id)
	if err != nil {
		return dev, fmt.Errorf("prepare networks and seed: %w", err)
	}
	return dev, nil
}

// releaseNetworks forgets the network side of a Machine whose domain is
// gone.
func (s *Service) releaseNetworks(ctx context.Context, id string) error {
	if s.cfg.Networks == nil {
		return nil
	}
	if err := s.cfg.Networks.ReleaseMachine(ctx, id); err != nil {
		return fmt.Errorf("release networks and seed: %w", err)
	}
	return nil
}

// refreshLeases asks the network service for an early reading of leases
// after a domain started.
func (s *Service) refreshLeases(kind hypervisor.EventKind) {
	if s.cfg.Networks != nil && (kind == hypervisor.EventStarted || kind == hypervisor.EventResumed) {
		s.cfg.Networks.Refresh()
	}
}

// interfaceMACs returns the MACs of a Machine's interfaces, sorted.
func (s *Service) interfaceMACs(id string) ([]string, error) {
	if s.cfg.Networks == nil {
		return nil, nil
	}
	ifaces, err := s.cfg.Networks.MachineInterfaces(id)
	if err != nil {
		return nil, fmt.Errorf("interfaces of Machine %s: %w", id, err)
	}
	var macs []string
	for _, i := range ifaces {
		if i.State != cimi.InterfaceActive {
			return nil, errdefs.Conflictf("interface %s of Machine %s is %s; try again when it is attached or removed", i.MAC, id, i.State)
		}
		macs = append(macs, i.MAC)
	}
	slices.Sort(macs)
	return macs, nil
}

// sameInterfaces refuses a restore when the Machine's interfaces are not
// those it had when the snapshot was taken: the snapshot brings back the
// domain's definition of that time.
func (s *Service) sameInterfaces(m machineRecord, im imageRecord) error {
	now, err := s.interfaceMACs(m.ID)
	if err != nil {
		return err
	}
	var missing, extra []string
	for _, mac := range im.SnapshotNICs {
		if !slices.Contains(now, mac) {
			missing = append(missing, mac)
		}
	}
	for _, mac := range now {
		if !slices.Contains(im.SnapshotNICs, mac) {
			extra = append(extra, mac)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	var why []string
	if len(missing) > 0 {
		why = append(why, "add back the interfaces with MAC "+strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		why = append(why, "remove the interfaces with MAC "+strings.Join(extra, ", ")+", added after the snapshot")
	}
	return errdefs.Conflictf("Machine %s has other network interfaces than when snapshot %s was taken: %s, then restore", m.ID, im.ID, strings.Join(why, "; "))
}
