// Package storage owns the Volume family of resources: VolumeConfigurations,
// VolumeTemplates, Volumes and VolumeImages, whose bits are image files in
// the agent's storage pool. It keeps their records in the store, turns every
// change into a Job whose steps drive qemu-img (and the hypervisor, for the
// volumes a running guest uses), records which resources use a Volume so
// that nothing is deleted from under its users, and runs the periodic pass
// that compares the pool's files with the store.
//
// Machines attach Volumes through Use and Release, called by the Machine
// side inside its own store transactions.
package storage

import (
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// Store kinds (buckets) owned by this package.
const (
	kindConfigs   = "volumeConfigs"
	kindTemplates = "volumeTemplates"
	kindVolumes   = "volumes"
	kindImages    = "volumeImages"
)

// Disk image formats a Volume may have.
const (
	diskQCOW2 = "qcow2"
	diskRaw   = "raw"
)

// meta is what every record shares.
type meta = resource.Meta

// configSpec is what a VolumeConfiguration fixes.
type configSpec struct {
	Type        string `json:"type,omitempty"`
	Format      string `json:"format,omitempty"` // file system; empty: unformatted
	CapacityKiB int64  `json:"capacityKiB"`
	DiskFormat  string `json:"diskFormat"`
	// Shareable volumes attach to several Machines at once; they are raw.
	Shareable bool `json:"shareable,omitempty"`
}

type configRecord struct {
	meta
	configSpec
	Provider bool `json:"provider,omitempty"` // defined by the agent, not a user
}

type templateRecord struct {
	meta
	ConfigID string      `json:"configId,omitempty"` // by reference
	Config   *configSpec `json:"config,omitempty"`   // by value
	ImageID  string      `json:"imageId,omitempty"`
}

// Use is one resource using a Volume: a Machine it is attached to (Target
// set), or a snapshot of a Machine that lives inside the Volume's file. A
// shareable Volume may have several attachments, one per Machine; any
// other Volume has at most one.
type Use struct {
	// User is the path of the using resource, e.g. "machines/<id>" or
	// "machineImages/<id>".
	User string `json:"user"`
	// Machine is the id of the Machine concerned.
	Machine string `json:"machine"`
	// Domain and Target are set for an attachment: the libvirt domain and
	// the guest device name.
	Domain string `json:"domain,omitempty"`
	Target string `json:"target,omitempty"`
}

// Attached reports whether the use is an attachment to a Machine.
func (u Use) Attached() bool { return u.Target != "" }

type volumeRecord struct {
	meta
	State       string `json:"state"`
	Type        string `json:"type"`
	CapacityKiB int64  `json:"capacityKiB"`
	DiskFormat  string `json:"diskFormat"`
	Format      string `json:"format,omitempty"` // file system made at creation
	Shareable   bool   `json:"shareable,omitempty"`
	Bootable    bool   `json:"bootable,omitempty"`
	Path        string `json:"path"`
	ImageID     string `json:"imageId,omitempty"` // the VolumeImage it was made from
	Users       []Use  `json:"users,omitempty"`
	Error       string `json:"error,omitempty"`
}

type imageRecord struct {
	meta
	State          string `json:"state"`
	Source         string `json:"source,omitempty"`   // imageLocation as given
	VolumeID       string `json:"volumeId,omitempty"` // the Volume it was taken from
	Path           string `json:"path,omitempty"`
	Format         string `json:"format,omitempty"`
	SourceFormat   string `json:"sourceFormat,omitempty"`
	VirtualSizeKiB int64  `json:"virtualSizeKiB,omitempty"`
	Bootable       bool   `json:"bootable,omitempty"`
}

// view reads one record in its own transaction.
func view[T any](db *store.DB, kind, id, what string) (T, error) {
	return records.View[T](db, kind, id, what)
}

// update changes one record in its own transaction.
func update[T any](db *store.DB, kind, id, what string, fn func(*T) error) error {
	return records.Update(db, kind, id, what, fn)
}
