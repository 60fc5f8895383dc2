// Package compute owns the Machine family of resources: MachineConfigurations,
// MachineImages, MachineTemplates and Machines with their disks. It keeps
// their records in the store, turns every change into a Job whose steps
// drive the hypervisor and qemu-img, and keeps the records in line with what
// the hypervisor reports (at start, on lifecycle events and periodically).
package compute

import (
	"time"

	"cimid/agent/network"
	"cimid/agent/resource"
)

// Store kinds (buckets) owned by this package.
const (
	kindConfigs   = "machineConfigs"
	kindImages    = "machineImages"
	kindTemplates = "machineTemplates"
	kindMachines  = "machines"
)

// meta is what every record shares.
type meta = resource.Meta

// diskConfig is one disk of a configuration.
type diskConfig struct {
	CapacityKiB     int64  `json:"capacityKiB"`
	Format          string `json:"format,omitempty"`
	InitialLocation string `json:"initialLocation,omitempty"`
}

// configSpec is the hardware of a MachineConfiguration.
type configSpec struct {
	CPU       int          `json:"cpu"`
	MemoryKiB int64        `json:"memoryKiB"`
	Disks     []diskConfig `json:"disks,omitempty"`
	CPUArch   string       `json:"cpuArch,omitempty"`
	CPUSpeed  int          `json:"cpuSpeed,omitempty"`
}

type configRecord struct {
	meta
	configSpec
	Provider bool `json:"provider,omitempty"` // defined by the agent, not a user
}

// Image states.
const (
	imageCreating  = "CREATING"
	imageAvailable = "AVAILABLE"
	imageDeleting  = "DELETING"
	imageError     = "ERROR"
)

type imageRecord struct {
	meta
	State          string `json:"state"`
	Type           string `json:"type"`           // IMAGE
	Source         string `json:"source"`         // imageLocation as given
	SourceFormat   string `json:"sourceFormat"`   // detected format of the source
	Path           string `json:"path,omitempty"` // file in the pool once copied
	Format         string `json:"format,omitempty"`
	VirtualSizeKiB int64  `json:"virtualSizeKiB,omitempty"`
	Error          string `json:"error,omitempty"`

	// Where an image made from a Machine comes from (snapshots.go).
	imageOrigin
}

type templateRecord struct {
	meta
	ConfigID     string      `json:"configId,omitempty"` // by reference
	Config       *configSpec `json:"config,omitempty"`   // by value
	ImageID      string      `json:"imageId,omitempty"`
	InitialState string      `json:"initialState,omitempty"`
	// Net is the template's interfaces, credential and userData, as the
	// network service resolved them.
	Net *network.TemplateSpec `json:"net,omitempty"`
	// UserData is where records written before Net kept the userData.
	UserData string `json:"userData,omitempty"`
}

// machineDisk is a local disk of a Machine, owned by it.
type machineDisk struct {
	ID          string `json:"id"`
	Path        string `json:"path"`
	Format      string `json:"format"`
	Target      string `json:"target"`
	CapacityKiB int64  `json:"capacityKiB"`
}

type machineRecord struct {
	meta
	State        string        `json:"state"`
	CPU          int           `json:"cpu"`
	MemoryKiB    int64         `json:"memoryKiB"`
	CPUArch      string        `json:"cpuArch"`
	ImageID      string        `json:"imageId,omitempty"`
	InitialState string        `json:"initialState"`
	Domain       string        `json:"domain"`
	Disks        []machineDisk `json:"disks"`
	ConsoleLog   string        `json:"consoleLog"`
	// Graceful stop in progress: its deadline and whether it may force.
	StopDeadline   time.Time `json:"stopDeadline,omitempty"`
	ForceOnTimeout bool      `json:"forceOnTimeout,omitempty"`
	StatusMessage  string    `json:"statusMessage,omitempty"`
	// Restarting tells that the graceful stop is the first half of a
	// restart: a forced stop must not escalate it (the Machine would be
	// started again).
	Restarting bool `json:"restarting,omitempty"`

	// Attached volumes and the latest snapshot (volumes.go).
	machineStorage
}
