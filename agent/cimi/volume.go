package cimi

import "encoding/xml"

// VolumeTypeBlock is the type of the volumes this provider makes: a disk
// image handed to a guest as a virtio block device.
const VolumeTypeBlock = ExtNamespace + "/volumeType/block"

// Volume is a block device that lives independently of Machines.
type Volume struct {
	XMLName xml.Name `json:"-" xml:"Volume"`
	Common
	State    string `json:"state,omitempty" xml:"state,omitempty"`
	Type     string `json:"type,omitempty" xml:"type,omitempty"`
	Capacity int64  `json:"capacity,omitempty" xml:"capacity,omitempty"`
	Bootable *bool  `json:"bootable,omitempty" xml:"bootable,omitempty"`
	Images   *Ref   `json:"images,omitempty" xml:"images,omitempty"`
	// DiskFormat (extension) is the format of the volume's image file.
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	// Format (extension on Volume) is the file system made on the volume
	// at creation; empty when it was left unformatted.
	Format string `json:"format,omitempty" xml:"format,omitempty"`
	// Shareable (extension) tells whether the volume may be attached to
	// several Machines at once.
	Shareable *bool `json:"shareable,omitempty" xml:"shareable,omitempty"`
	// Machines (extension, read-only) are the Machines the volume is
	// attached to.
	Machines   []Ref       `json:"machines,omitempty" xml:"machine,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra       `json:"-" xml:",any"`
}

// VolumeConfiguration is a size and format of volumes.
type VolumeConfiguration struct {
	XMLName xml.Name `json:"-" xml:"VolumeConfiguration"`
	Common
	Type     string `json:"type,omitempty" xml:"type,omitempty"`
	Format   string `json:"format,omitempty" xml:"format,omitempty"`
	Capacity int64  `json:"capacity" xml:"capacity"`
	// DiskFormat (extension) is the image format: qcow2 (default) or raw.
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	// Shareable (extension) makes volumes that attach to several Machines
	// at once; they are raw.
	Shareable  *bool       `json:"shareable,omitempty" xml:"shareable,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra       `json:"-" xml:",any"`
}

// VolumeConfigurationCreate is the body of a VolumeConfiguration create; a
// bare VolumeConfiguration document is accepted too.
type VolumeConfigurationCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	Type       string `json:"type,omitempty" xml:"type,omitempty"`
	Format     string `json:"format,omitempty" xml:"format,omitempty"`
	Capacity   int64  `json:"capacity" xml:"capacity"`
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	Shareable  *bool  `json:"shareable,omitempty" xml:"shareable,omitempty"`
	Extra      Extra  `json:"-" xml:",any"`
}

// VolumeConfigInput is a VolumeConfiguration given by reference (Href) or
// by value (the other fields).
type VolumeConfigInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	Type       string `json:"type,omitempty" xml:"type,omitempty"`
	Format     string `json:"format,omitempty" xml:"format,omitempty"`
	Capacity   int64  `json:"capacity,omitempty" xml:"capacity,omitempty"`
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	Shareable  *bool  `json:"shareable,omitempty" xml:"shareable,omitempty"`
	Extra      Extra  `json:"-" xml:",any"`
}

// VolumeImageInput is a VolumeImage given by reference.
type VolumeImageInput struct {
	Href        string `json:"href,omitempty" xml:"href,attr,omitempty"`
	ResourceURI string `json:"resourceURI,omitempty" xml:"-"`
	Extra       Extra  `json:"-" xml:",any"`
}

// VolumeTemplate is a recipe for Volumes.
type VolumeTemplate struct {
	XMLName xml.Name `json:"-" xml:"VolumeTemplate"`
	Common
	VolumeConfig *VolumeConfigInput `json:"volumeConfig,omitempty" xml:"volumeConfig,omitempty"`
	VolumeImage  *VolumeImageInput  `json:"volumeImage,omitempty" xml:"volumeImage,omitempty"`
	Operations   []Operation        `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra        Extra              `json:"-" xml:",any"`
}

// VolumeTemplateInput is a VolumeTemplate given by reference (Href, with
// optional overrides) or by value.
type VolumeTemplateInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	VolumeConfig *VolumeConfigInput `json:"volumeConfig,omitempty" xml:"volumeConfig,omitempty"`
	VolumeImage  *VolumeImageInput  `json:"volumeImage,omitempty" xml:"volumeImage,omitempty"`
	Extra        Extra              `json:"-" xml:",any"`
}

// VolumeTemplateCreate is the body of a VolumeTemplate create; a bare
// VolumeTemplate document is accepted too.
type VolumeTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	VolumeTemplate *VolumeTemplateInput `json:"volumeTemplate,omitempty" xml:"volumeTemplate,omitempty"`
	// Fields of a bare VolumeTemplate body.
	VolumeConfig *VolumeConfigInput `json:"volumeConfig,omitempty" xml:"volumeConfig,omitempty"`
	VolumeImage  *VolumeImageInput  `json:"volumeImage,omitempty" xml:"volumeImage,omitempty"`
	Extra        Extra              `json:"-" xml:",any"`
}

// VolumeCreate is the body of a Volume create.
type VolumeCreate struct {
	XMLName        xml.Name             `json:"-"`
	ResourceURI    string               `json:"resourceURI,omitempty" xml:"-"`
	Name           string               `json:"name,omitempty" xml:"name,omitempty"`
	Description    string               `json:"description,omitempty" xml:"description,omitempty"`
	Properties     Properties           `json:"properties,omitempty" xml:"property,omitempty"`
	VolumeTemplate *VolumeTemplateInput `json:"volumeTemplate" xml:"volumeTemplate"`
	Extra          Extra                `json:"-" xml:",any"`
}

// VolumeImage is a standalone copy of a volume's content.
type VolumeImage struct {
	XMLName xml.Name `json:"-" xml:"VolumeImage"`
	Common
	State         string `json:"state,omitempty" xml:"state,omitempty"`
	ImageLocation string `json:"imageLocation,omitempty" xml:"imageLocation,omitempty"`
	Bootable      *bool  `json:"bootable,omitempty" xml:"bootable,omitempty"`
	// DiskFormat (extension) is the format of the stored image file.
	DiskFormat string `json:"diskFormat,omitempty" xml:"diskFormat,omitempty"`
	// Capacity (extension) is the virtual size of the image in KiB.
	Capacity int64 `json:"capacity,omitempty" xml:"capacity,omitempty"`
	// Volume (extension) is the Volume the image was taken from.
	Volume     *Ref        `json:"volume,omitempty" xml:"volume,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra       `json:"-" xml:",any"`
}

// VolumeImageCreate is the body of a VolumeImage create; a bare VolumeImage
// document is accepted too. An imageLocation naming a Volume snapshots it.
type VolumeImageCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	ImageLocation string `json:"imageLocation" xml:"imageLocation"`
	Bootable      *bool  `json:"bootable,omitempty" xml:"bootable,omitempty"`
	Extra         Extra  `json:"-" xml:",any"`
}

// VolumeVolumeImage is an entry of a Volume's images collection.
type VolumeVolumeImage struct {
	XMLName xml.Name `json:"-" xml:"VolumeVolumeImage"`
	Common
	VolumeImage *Ref        `json:"volumeImage,omitempty" xml:"volumeImage,omitempty"`
	Operations  []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// MachineVolume is a Volume attached to a Machine, an entry of the
// Machine's volumes collection.
type MachineVolume struct {
	XMLName xml.Name `json:"-" xml:"MachineVolume"`
	Common
	InitialLocation string `json:"initialLocation,omitempty" xml:"initialLocation,omitempty"`
	Volume          *Ref   `json:"volume,omitempty" xml:"volume,omitempty"`
	// State (extension) tells whether the attachment is done: ATTACHING,
	// ATTACHED or DETACHING.
	State      string      `json:"state,omitempty" xml:"state,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// MachineVolumeCreate is the body POSTed to a Machine's volumes collection
// to attach a Volume; a MachineVolume document is accepted as well.
type MachineVolumeCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	InitialLocation string `json:"initialLocation,omitempty" xml:"initialLocation,omitempty"`
	Volume          *Ref   `json:"volume" xml:"volume"`
	Extra           Extra  `json:"-" xml:",any"`
}

// MachineSnapshot is an entry of a Machine's snapshots collection: a
// reference to a MachineImage of type SNAPSHOT.
type MachineSnapshot struct {
	XMLName xml.Name `json:"-" xml:"MachineSnapshot"`
	Common
	Snapshot   *Ref        `json:"snapshot,omitempty" xml:"snapshot,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}
