package cimi

import "encoding/xml"

// System states beyond the Machine ones: MIXED when the member Machines
// are in different states or there are none.
const StateMixed = "MIXED"

// MediaTypeOVF is the format of the packages systems are imported from and
// exported to.
const MediaTypeOVF = "application/ovf"

// System is a group of resources created and managed together: the
// Machines of an imported OVF package, or of a SystemTemplate.
type System struct {
	XMLName xml.Name `json:"-" xml:"System"`
	Common
	State    string `json:"state,omitempty" xml:"state,omitempty"`
	Machines *Ref   `json:"machines,omitempty" xml:"machines,omitempty"`
	Volumes  *Ref   `json:"volumes,omitempty" xml:"volumes,omitempty"`
	Networks *Ref   `json:"networks,omitempty" xml:"networks,omitempty"`
	// StatusMessage (extension) says why a System is in ERROR.
	StatusMessage string      `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	Operations    []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra         Extra       `json:"-" xml:",any"`
}

// SystemMachine is an entry of a System's machines collection.
type SystemMachine struct {
	XMLName xml.Name `json:"-" xml:"SystemMachine"`
	Common
	Machine    *Ref        `json:"machine,omitempty" xml:"machine,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// SystemVolume is an entry of a System's volumes collection.
type SystemVolume struct {
	XMLName xml.Name `json:"-" xml:"SystemVolume"`
	Common
	Volume     *Ref        `json:"volume,omitempty" xml:"volume,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// SystemNetwork is an entry of a System's networks collection.
type SystemNetwork struct {
	XMLName xml.Name `json:"-" xml:"SystemNetwork"`
	Common
	Network    *Ref        `json:"network,omitempty" xml:"network,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// ComponentDescriptor describes one kind of component a SystemTemplate
// creates. Only Machine components are produced by this provider.
type ComponentDescriptor struct {
	Name            string                `json:"name,omitempty" xml:"name,omitempty"`
	Description     string                `json:"description,omitempty" xml:"description,omitempty"`
	Properties      Properties            `json:"properties,omitempty" xml:"property,omitempty"`
	Type            string                `json:"type,omitempty" xml:"type,omitempty"`
	MachineTemplate *MachineTemplateInput `json:"machineTemplate,omitempty" xml:"machineTemplate,omitempty"`
	Quantity        int                   `json:"quantity,omitempty" xml:"quantity,omitempty"`
	Extra           Extra                 `json:"-" xml:",any"`
}

// SystemTemplate is a recipe for Systems. A SystemTemplate made from an
// OVF package names it in importImage; its component descriptors show
// what the package describes.
type SystemTemplate struct {
	XMLName xml.Name `json:"-" xml:"SystemTemplate"`
	Common
	ComponentDescriptors []ComponentDescriptor `json:"componentDescriptors,omitempty" xml:"componentDescriptor,omitempty"`
	ImportImage          string                `json:"importImage,omitempty" xml:"importImage,omitempty"`
	Operations           []Operation           `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra                Extra                 `json:"-" xml:",any"`
}

// SystemTemplateInput is a SystemTemplate given by reference (Href) or by
// value.
type SystemTemplateInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	ComponentDescriptors []ComponentDescriptor `json:"componentDescriptors,omitempty" xml:"componentDescriptor,omitempty"`
	ImportImage          string                `json:"importImage,omitempty" xml:"importImage,omitempty"`
	Extra                Extra                 `json:"-" xml:",any"`
}

// SystemCreate is the body of a System create.
type SystemCreate struct {
	XMLName        xml.Name             `json:"-"`
	ResourceURI    string               `json:"resourceURI,omitempty" xml:"-"`
	Name           string               `json:"name,omitempty" xml:"name,omitempty"`
	Description    string               `json:"description,omitempty" xml:"description,omitempty"`
	Properties     Properties           `json:"properties,omitempty" xml:"property,omitempty"`
	SystemTemplate *SystemTemplateInput `json:"systemTemplate" xml:"systemTemplate"`
	Extra          Extra                `json:"-" xml:",any"`
}

// SystemTemplateCreate is the body of a SystemTemplate create; a bare
// SystemTemplate document is accepted too.
type SystemTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	ComponentDescriptors []ComponentDescriptor `json:"componentDescriptors,omitempty" xml:"componentDescriptor,omitempty"`
	ImportImage          string                `json:"importImage,omitempty" xml:"importImage,omitempty"`
	Extra                Extra                 `json:"-" xml:",any"`
}
