package cimi

import "encoding/xml"

// Machine states.
const (
	StateCreating   = "CREATING"
	StateStarting   = "STARTING"
	StateStarted    = "STARTED"
	StateStopping   = "STOPPING"
	StateStopped    = "STOPPED"
	StatePausing    = "PAUSING"
	StatePaused     = "PAUSED"
	StateSuspending = "SUSPENDING"
	StateSuspended  = "SUSPENDED"
	StateCapturing  = "CAPTURING"
	StateRestoring  = "RESTORING"
	StateDeleting   = "DELETING"
	StateError      = "ERROR"
	StateAvailable  = "AVAILABLE"
)

// Machine is a virtual machine.
type Machine struct {
	XMLName xml.Name `json:"-" xml:"Machine"`
	Common
	State             string `json:"state,omitempty" xml:"state,omitempty"`
	CPU               int    `json:"cpu,omitempty" xml:"cpu,omitempty"`
	Memory            int64  `json:"memory,omitempty" xml:"memory,omitempty"`
	Disks             *Ref   `json:"disks,omitempty" xml:"disks,omitempty"`
	CPUArch           string `json:"cpuArch,omitempty" xml:"cpuArch,omitempty"`
	CPUSpeed          int    `json:"cpuSpeed,omitempty" xml:"cpuSpeed,omitempty"`
	Volumes           *Ref   `json:"volumes,omitempty" xml:"volumes,omitempty"`
	NetworkInterfaces *Ref   `json:"networkInterfaces,omitempty" xml:"networkInterfaces,omitempty"`
	LatestSnapshot    *Ref   `json:"latestSnapshot,omitempty" xml:"latestSnapshot,omitempty"`
	Snapshots         *Ref   `json:"snapshots,omitempty" xml:"snapshots,omitempty"`
	// StatusMessage (extension) says why a Machine is in ERROR.
	StatusMessage string      `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	Operations    []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra         Extra       `json:"-" xml:",any"`
}

// MachineDisk is a local disk of a Machine.
type MachineDisk struct {
	XMLName xml.Name `json:"-" xml:"Disk"`
	Common
	Capacity        int64       `json:"capacity,omitempty" xml:"capacity,omitempty"`
	InitialLocation string      `json:"initialLocation,omitempty" xml:"initialLocation,omitempty"`
	Operations      []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// DiskConfig is a disk entry of a MachineConfiguration.
type DiskConfig struct {
	Capacity        int64  `json:"capacity" xml:"capacity"`
	Format          string `json:"format,omitempty" xml:"format,omitempty"`
	InitialLocation string `json:"initialLocation,omitempty" xml:"initialLocation,omitempty"`
	Extra           Extra  `json:"-" xml:",any"`
}

// MachineConfiguration is a hardware size.
type MachineConfiguration struct {
	XMLName xml.Name `json:"-" xml:"MachineConfiguration"`
	Common
	CPU        int          `json:"cpu,omitempty" xml:"cpu,omitempty"`
	Memory     int64        `json:"memory,omitempty" xml:"memory,omitempty"`
	Disks      []DiskConfig `json:"disks,omitempty" xml:"disk,omitempty"`
	CPUArch    string       `json:"cpuArch,omitempty" xml:"cpuArch,omitempty"`
	CPUSpeed   int          `json:"cpuSpeed,omitempty" xml:"cpuSpeed,omitempty"`
	Operations []Operation  `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra        `json:"-" xml:",any"`
}

// MachineImage is a bootable disk image.
type MachineImage struct {
	XMLName xml.Name `json:"-" xml:"MachineImage"`
	Common
	State         string `json:"state,omitempty" xml:"state,omitempty"`
	Type          string `json:"type,omitempty" xml:"type,omitempty"`
	ImageLocation string `json:"imageLocation,omitempty" xml:"imageLocation,omitempty"`
	RelatedImage  *Ref   `json:"relatedImage,omitempty" xml:"relatedImage,omitempty"`
	// DiskFormat (extension) is the format of the stored image file.
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	// Capacity (extension) is the virtual size of the image in KiB.
	Capacity   int64       `json:"capacity,omitempty" xml:"capacity,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra       `json:"-" xml:",any"`
}

// MachineTemplate is a recipe for Machines.
type MachineTemplate struct {
	XMLName xml.Name `json:"-" xml:"MachineTemplate"`
	Common
	MachineConfig *MachineConfigInput `json:"machineConfig,omitempty" xml:"machineConfig,omitempty"`
	MachineImage  *MachineImageInput  `json:"machineImage,omitempty" xml:"machineImage,omitempty"`
	InitialState  string              `json:"initialState,omitempty" xml:"initialState,omitempty"`
	UserData      string              `json:"userData,omitempty" xml:"userData,omitempty"`
	// NetworkInterfaces are the interfaces of the Machines made from the
	// template; absent means the default network, an empty list (JSON
	// only) none.
	NetworkInterfaces []MachineNetworkInterfaceInput `json:"networkInterfaces,omitzero" xml:"networkInterface,omitempty"`
	Credential        *CredentialInput               `json:"credential,omitempty" xml:"credential,omitempty"`
	Operations        []Operation                    `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra             Extra                          `json:"-" xml:",any"`
}

// MachineConfigInput is a MachineConfiguration given by reference (Href) or
// by value (the other fields).
type MachineConfigInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	CPU      int          `json:"cpu,omitempty" xml:"cpu,omitempty"`
	Memory   int64        `json:"memory,omitempty" xml:"memory,omitempty"`
	Disks    []DiskConfig `json:"disks,omitempty" xml:"disk,omitempty"`
	CPUArch  string       `json:"cpuArch,omitempty" xml:"cpuArch,omitempty"`
	CPUSpeed int          `json:"cpuSpeed,omitempty" xml:"cpuSpeed,omitempty"`
	Extra    Extra        `json:"-" xml:",any"`
}

// MachineImageInput is a MachineImage given by reference.
type MachineImageInput struct {
	Href        string `json:"href,omitempty" xml:"href,attr,omitempty"`
	ResourceURI string `json:"resourceURI,omitempty" xml:"-"`
	Extra       Extra  `json:"-" xml:",any"`
}

// MachineTemplateInput is a MachineTemplate given by reference (Href, with
// optional overrides) or by value.
type MachineTemplateInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	MachineConfig *MachineConfigInput `json:"machineConfig,omitempty" xml:"machineConfig,omitempty"`
	MachineImage  *MachineImageInput  `json:"machineImage,omitempty" xml:"machineImage,omitempty"`
	InitialState  string              `json:"initialState,omitempty" xml:"initialState,omitempty"`
	UserData      *string             `json:"userData,omitempty" xml:"userData,omitempty"`
	// NetworkInterfaces nil means the attribute is absent (the default
	// network, or what a referenced template says); an empty list means
	// no interface at all.
	NetworkInterfaces []MachineNetworkInterfaceInput `json:"networkInterfaces,omitempty" xml:"networkInterface,omitempty"`
	Credential        *CredentialInput               `json:"credential,omitempty" xml:"credential,omitempty"`
	Extra             Extra                          `json:"-" xml:",any"`
}

// MachineCreate is the body of a Machine create.
type MachineCreate struct {
	XMLName         xml.Name              `json:"-"`
	ResourceURI     string                `json:"resourceURI,omitempty" xml:"-"`
	Name            string                `json:"name,omitempty" xml:"name,omitempty"`
	Description     string                `json:"description,omitempty" xml:"description,omitempty"`
	Properties      Properties            `json:"properties,omitempty" xml:"property,omitempty"`
	MachineTemplate *MachineTemplateInput `json:"machineTemplate" xml:"machineTemplate"`
	Extra           Extra                 `json:"-" xml:",any"`
}

// MachineTemplateCreate is the body of a MachineTemplate create; a bare
// MachineTemplate document is accepted too.
type MachineTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	MachineTemplate *MachineTemplateInput `json:"machineTemplate,omitempty" xml:"machineTemplate,omitempty"`
	// Fields of a bare MachineTemplate body.
	MachineConfig *MachineConfigInput `json:"machineConfig,omitempty" xml:"machineConfig,omitempty"`
	MachineImage  *MachineImageInput  `json:"machineImage,omitempty" xml:"machineImage,omitempty"`
	InitialState  string              `json:"initialState,omitempty" xml:"initialState,omitempty"`
	UserData      *string             `json:"userData,omitempty" xml:"userData,omitempty"`
	// NetworkInterfaces and Credential as in MachineTemplateInput.
	NetworkInterfaces []MachineNetworkInterfaceInput `json:"networkInterfaces,omitempty" xml:"networkInterface,omitempty"`
	Credential        *CredentialInput               `json:"credential,omitempty" xml:"credential,omitempty"`
	Extra             Extra                          `json:"-" xml:",any"`
}

// MachineConfigurationCreate is the body of a MachineConfiguration create; a
// bare MachineConfiguration document is accepted too.
type MachineConfigurationCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	CPU      int          `json:"cpu" xml:"cpu"`
	Memory   int64        `json:"memory" xml:"memory"`
	Disks    []DiskConfig `json:"disks,omitempty" xml:"disk,omitempty"`
	CPUArch  string       `json:"cpuArch,omitempty" xml:"cpuArch,omitempty"`
	CPUSpeed int          `json:"cpuSpeed,omitempty" xml:"cpuSpeed,omitempty"`
	Extra    Extra        `json:"-" xml:",any"`
}

// MachineImageCreate is the body of a MachineImage create; a bare
// MachineImage document is accepted too.
type MachineImageCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	Type          string `json:"type,omitempty" xml:"type,omitempty"`
	ImageLocation string `json:"imageLocation" xml:"imageLocation"`
	RelatedImage  *Ref   `json:"relatedImage,omitempty" xml:"relatedImage,omitempty"`
	Extra         Extra  `json:"-" xml:",any"`
}
