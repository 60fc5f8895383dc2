package libvirt

import (
	"context"
	"errors"

	"cimid/hypervisor"
)

// errNotYet marks driver methods whose implementation is being written.
var errNotYet = errors.New("not implemented by the libvirt driver yet")

func (d *Driver) AttachDisk(context.Context, string, hypervisor.Disk, bool) error { return errNotYet }
func (d *Driver) DetachDisk(context.Context, string, string, bool) error          { return errNotYet }
func (d *Driver) ResizeDisk(context.Context, string, string, uint64) error        { return errNotYet }
func (d *Driver) AttachNIC(context.Context, string, hypervisor.NIC, bool) error   { return errNotYet }
func (d *Driver) DetachNIC(context.Context, string, string, bool) error           { return errNotYet }
func (d *Driver) DomainNICs(context.Context, string) ([]hypervisor.NIC, error)    { return nil, errNotYet }
func (d *Driver) CreateSnapshot(context.Context, string, string) error            { return errNotYet }
func (d *Driver) RevertSnapshot(context.Context, string, string) error            { return errNotYet }
func (d *Driver) DeleteSnapshot(context.Context, string, string) error            { return errNotYet }
func (d *Driver) ListSnapshots(context.Context, string) ([]hypervisor.SnapshotInfo, error) {
	return nil, errNotYet
}
func (d *Driver) DefineNetwork(context.Context, hypervisor.NetworkSpec) error { return errNotYet }
func (d *Driver) UndefineNetwork(context.Context, string) error               { return errNotYet }
func (d *Driver) ListNetworks(context.Context) ([]hypervisor.NetworkStatus, error) {
	return nil, errNotYet
}
func (d *Driver) DHCPLeases(context.Context, string) ([]hypervisor.Lease, error) {
	return nil, errNotYet
}
func (d *Driver) AddDHCPHost(context.Context, string, hypervisor.DHCPHost) error { return errNotYet }
func (d *Driver) RemoveDHCPHost(context.Context, string, hypervisor.DHCPHost) error {
	return errNotYet
}
func (d *Driver) AllDomainStats(context.Context) ([]hypervisor.DomainStats, error) {
	return nil, errNotYet
}
