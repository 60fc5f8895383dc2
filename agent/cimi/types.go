package cimi

import (
	"encoding/xml"
	"time"
)

// CloudEntryPoint is the root of discovery. Only implemented collections are
// set; the XML element order follows the 1.1 schema.
type CloudEntryPoint struct {
	XMLName xml.Name `json:"-" xml:"CloudEntryPoint"`
	Common
	BaseURI             string      `json:"baseURI" xml:"baseURI"`
	ResourceMetadata    *Ref        `json:"resourceMetadata,omitempty" xml:"resourceMetadata,omitempty"`
	Systems             *Ref        `json:"systems,omitempty" xml:"systems,omitempty"`
	SystemTemplates     *Ref        `json:"systemTemplates,omitempty" xml:"systemTemplates,omitempty"`
	Machines            *Ref        `json:"machines,omitempty" xml:"machines,omitempty"`
	MachineTemplates    *Ref        `json:"machineTemplates,omitempty" xml:"machineTemplates,omitempty"`
	MachineConfigs      *Ref        `json:"machineConfigs,omitempty" xml:"machineConfigs,omitempty"`
	MachineImages       *Ref        `json:"machineImages,omitempty" xml:"machineImages,omitempty"`
	Credentials         *Ref        `json:"credentials,omitempty" xml:"credentials,omitempty"`
	CredentialTemplates *Ref        `json:"credentialTemplates,omitempty" xml:"credentialTemplates,omitempty"`
	Volumes             *Ref        `json:"volumes,omitempty" xml:"volumes,omitempty"`
	VolumeTemplates     *Ref        `json:"volumeTemplates,omitempty" xml:"volumeTemplates,omitempty"`
	VolumeConfigs       *Ref        `json:"volumeConfigs,omitempty" xml:"volumeConfigs,omitempty"`
	VolumeImages        *Ref        `json:"volumeImages,omitempty" xml:"volumeImages,omitempty"`
	Networks            *Ref        `json:"networks,omitempty" xml:"networks,omitempty"`
	NetworkTemplates    *Ref        `json:"networkTemplates,omitempty" xml:"networkTemplates,omitempty"`
	NetworkConfigs      *Ref        `json:"networkConfigs,omitempty" xml:"networkConfigs,omitempty"`
	NetworkPorts        *Ref        `json:"networkPorts,omitempty" xml:"networkPorts,omitempty"`
	Addresses           *Ref        `json:"addresses,omitempty" xml:"addresses,omitempty"`
	AddressTemplates    *Ref        `json:"addressTemplates,omitempty" xml:"addressTemplates,omitempty"`
	Jobs                *Ref        `json:"jobs,omitempty" xml:"jobs,omitempty"`
	Meters              *Ref        `json:"meters,omitempty" xml:"meters,omitempty"`
	EventLogs           *Ref        `json:"eventLogs,omitempty" xml:"eventLogs,omitempty"`
	Operations          []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// Job states.
const (
	JobQueued   = "QUEUED"
	JobRunning  = "RUNNING"
	JobSuccess  = "SUCCESS"
	JobFailed   = "FAILED"
	JobStopping = "STOPPING"
	JobStopped  = "STOPPED"
)

// Job reports an asynchronous operation. It is also the shape of every error
// body.
type Job struct {
	XMLName xml.Name `json:"-" xml:"Job"`
	Common
	State              string      `json:"state,omitempty" xml:"state,omitempty"`
	TargetResource     *Ref        `json:"targetResource,omitempty" xml:"targetResource,omitempty"`
	AffectedResources  []Ref       `json:"affectedResources,omitempty" xml:"affectedResource,omitempty"`
	Action             string      `json:"action,omitempty" xml:"action,omitempty"`
	ReturnCode         int         `json:"returnCode" xml:"returnCode"`
	Progress           int         `json:"progress" xml:"progress"`
	StatusMessage      string      `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	TimeOfStatusChange *time.Time  `json:"timeOfStatusChange,omitempty" xml:"timeOfStatusChange,omitempty"`
	ParentJob          *Ref        `json:"parentJob,omitempty" xml:"parentJob,omitempty"`
	NestedJobs         []Ref       `json:"nestedJobs,omitempty" xml:"nestedJob,omitempty"`
	Operations         []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}

// ResourceMetadata describes what this provider supports for one type.
type ResourceMetadata struct {
	XMLName xml.Name `json:"-" xml:"ResourceMetadata"`
	Common
	TypeURI      string          `json:"typeURI" xml:"typeURI"`
	Attributes   []AttributeMeta `json:"attributes,omitempty" xml:"attribute,omitempty"`
	Capabilities []Capability    `json:"capabilities,omitempty" xml:"capability,omitempty"`
	Actions      []ActionMeta    `json:"actions,omitempty" xml:"action,omitempty"`
	Operations   []Operation     `json:"operations,omitempty" xml:"operation,omitempty"`
}

// AttributeMeta describes one attribute. Namespace and Type are set for the
// attributes this provider adds beyond the standard.
type AttributeMeta struct {
	Name        string `json:"name" xml:"name,attr"`
	Namespace   string `json:"namespace,omitempty" xml:"namespace,attr,omitempty"`
	Type        string `json:"type,omitempty" xml:"type,attr,omitempty"`
	Required    bool   `json:"required" xml:"required,attr"`
	Description string `json:"description,omitempty" xml:"description,attr,omitempty"`
}

// Capability advertises a feature; an empty value means true.
type Capability struct {
	Name        string `json:"name,omitempty" xml:"name,attr,omitempty"`
	URI         string `json:"uri" xml:"uri,attr"`
	Description string `json:"description,omitempty" xml:"description,attr,omitempty"`
	Value       string `json:"value,omitempty" xml:",chardata"`
}

// ActionMeta describes one operation defined for the type.
type ActionMeta struct {
	Name          string `json:"name" xml:"name,attr"`
	URI           string `json:"uri" xml:"uri,attr"`
	Description   string `json:"description,omitempty" xml:"description,attr,omitempty"`
	Method        string `json:"method" xml:"method,attr"`
	InputMessage  string `json:"inputMessage,omitempty" xml:"inputMessage,attr,omitempty"`
	OutputMessage string `json:"outputMessage,omitempty" xml:"outputMessage,attr,omitempty"`
}

// Action is the body of every custom operation.
type Action struct {
	XMLName     xml.Name   `json:"-"`
	ResourceURI string     `json:"resourceURI,omitempty" xml:"-"`
	Action      string     `json:"action" xml:"action"`
	Force       *bool      `json:"force,omitempty" xml:"force,omitempty"`
	Image       *Ref       `json:"image,omitempty" xml:"image,omitempty"`
	Source      string     `json:"source,omitempty" xml:"source,omitempty"`
	Format      string     `json:"format,omitempty" xml:"format,omitempty"`
	Destination string     `json:"destination,omitempty" xml:"destination,omitempty"`
	Properties  Properties `json:"properties,omitempty" xml:"property,omitempty"`
	// StopTimeout (extension, seconds) bounds a graceful stop.
	StopTimeout *int `json:"stopTimeout,omitempty" xml:"stopTimeout,omitempty"`
	// ForceOnTimeout (extension) powers the machine off when the graceful
	// stop has not finished by the deadline.
	ForceOnTimeout *bool `json:"forceOnTimeout,omitempty" xml:"forceOnTimeout,omitempty"`
	Extra          Extra `json:"-" xml:",any"`
}
