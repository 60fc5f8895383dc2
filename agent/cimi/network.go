package cimi

import "encoding/xml"

// Network states.
const (
	NetworkCreating = "CREATING"
	NetworkStarted  = "STARTED"
	NetworkStopped  = "STOPPED"
	NetworkDeleting = "DELETING"
	NetworkError    = "ERROR"
)

// Network is a virtual network (CIMI 1.1). ForwardMode, Subnet, DHCPRange,
// Gateway and Bridge are extension attributes.
type Network struct {
	XMLName xml.Name `json:"-" xml:"Network"`
	Common
	State           string `json:"state,omitempty" xml:"state,omitempty"`
	NetworkType     string `json:"networkType,omitempty" xml:"networkType,omitempty"`
	MTU             int    `json:"mtu,omitempty" xml:"mtu,omitempty"`
	ClassOfService  string `json:"classOfService,omitempty" xml:"classOfService,omitempty"`
	NetworkPorts    *Ref   `json:"networkPorts,omitempty" xml:"networkPorts,omitempty"`
	ForwardingGroup *Ref   `json:"forwardingGroup,omitempty" xml:"forwardingGroup,omitempty"`
	ForwardMode     string `json:"forwardMode,omitempty" xml:"forwardMode,omitempty"`
	Subnet          string `json:"subnet,omitempty" xml:"subnet,omitempty"`
	DHCPRange       string `json:"dhcpRange,omitempty" xml:"dhcpRange,omitempty"`
	Gateway         string `json:"gateway,omitempty" xml:"gateway,omitempty"`
	Bridge          string `json:"bridge,omitempty" xml:"bridge,omitempty"`
	// StatusMessage (extension) says why a Network is in ERROR.
	StatusMessage string      `json:"statusMessage,omitempty" xml:"statusMessage,omitempty"`
	Operations    []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra         Extra       `json:"-" xml:",any"`
}

// NetworkConfiguration is the shape of a Network.
type NetworkConfiguration struct {
	XMLName xml.Name `json:"-" xml:"NetworkConfiguration"`
	Common
	NetworkType    string      `json:"networkType,omitempty" xml:"networkType,omitempty"`
	MTU            int         `json:"mtu,omitempty" xml:"mtu,omitempty"`
	ClassOfService string      `json:"classOfService,omitempty" xml:"classOfService,omitempty"`
	ForwardMode    string      `json:"forwardMode,omitempty" xml:"forwardMode,omitempty"`
	Subnet         string      `json:"subnet,omitempty" xml:"subnet,omitempty"`
	DHCPRange      string      `json:"dhcpRange,omitempty" xml:"dhcpRange,omitempty"`
	Operations     []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra          Extra       `json:"-" xml:",any"`
}

// NetworkConfigInput is a NetworkConfiguration given by reference (Href)
// or by value.
type NetworkConfigInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	NetworkType    string `json:"networkType,omitempty" xml:"networkType,omitempty"`
	MTU            int    `json:"mtu,omitempty" xml:"mtu,omitempty"`
	ClassOfService string `json:"classOfService,omitempty" xml:"classOfService,omitempty"`
	ForwardMode    string `json:"forwardMode,omitempty" xml:"forwardMode,omitempty"`
	Subnet         string `json:"subnet,omitempty" xml:"subnet,omitempty"`
	DHCPRange      string `json:"dhcpRange,omitempty" xml:"dhcpRange,omitempty"`
	Extra          Extra  `json:"-" xml:",any"`
}

// NetworkConfigurationCreate is the body of a NetworkConfiguration create;
// a bare NetworkConfiguration document is accepted too.
type NetworkConfigurationCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	NetworkType    string `json:"networkType,omitempty" xml:"networkType,omitempty"`
	MTU            int    `json:"mtu,omitempty" xml:"mtu,omitempty"`
	ClassOfService string `json:"classOfService,omitempty" xml:"classOfService,omitempty"`
	ForwardMode    string `json:"forwardMode,omitempty" xml:"forwardMode,omitempty"`
	Subnet         string `json:"subnet,omitempty" xml:"subnet,omitempty"`
	DHCPRange      string `json:"dhcpRange,omitempty" xml:"dhcpRange,omitempty"`
	Extra          Extra  `json:"-" xml:",any"`
}

// NetworkTemplate is a recipe for Networks.
type NetworkTemplate struct {
	XMLName xml.Name `json:"-" xml:"NetworkTemplate"`
	Common
	NetworkConfig   *NetworkConfigInput `json:"networkConfig,omitempty" xml:"networkConfig,omitempty"`
	ForwardingGroup *Ref                `json:"forwardingGroup,omitempty" xml:"forwardingGroup,omitempty"`
	Operations      []Operation         `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra           Extra               `json:"-" xml:",any"`
}

// NetworkTemplateInput is a NetworkTemplate given by reference (Href) or
// by value.
type NetworkTemplateInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	NetworkConfig   *NetworkConfigInput `json:"networkConfig,omitempty" xml:"networkConfig,omitempty"`
	ForwardingGroup *Ref                `json:"forwardingGroup,omitempty" xml:"forwardingGroup,omitempty"`
	Extra           Extra               `json:"-" xml:",any"`
}

// NetworkTemplateCreate is the body of a NetworkTemplate create; a bare
// NetworkTemplate document is accepted too.
type NetworkTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	NetworkTemplate *NetworkTemplateInput `json:"networkTemplate,omitempty" xml:"networkTemplate,omitempty"`
	NetworkConfig   *NetworkConfigInput   `json:"networkConfig,omitempty" xml:"networkConfig,omitempty"`
	ForwardingGroup *Ref                  `json:"forwardingGroup,omitempty" xml:"forwardingGroup,omitempty"`
	Extra           Extra                 `json:"-" xml:",any"`
}

// NetworkCreate is the body of a Network create.
type NetworkCreate struct {
	XMLName         xml.Name              `json:"-"`
	ResourceURI     string                `json:"resourceURI,omitempty" xml:"-"`
	Name            string                `json:"name,omitempty" xml:"name,omitempty"`
	Description     string                `json:"description,omitempty" xml:"description,omitempty"`
	Properties      Properties            `json:"properties,omitempty" xml:"property,omitempty"`
	NetworkTemplate *NetworkTemplateInput `json:"networkTemplate" xml:"networkTemplate"`
	Extra           Extra                 `json:"-" xml:",any"`
}

// NetworkPort is the attachment point of one interface on a Network.
// MACAddress and Machine are extension attributes.
type NetworkPort struct {
	XMLName xml.Name `json:"-" xml:"NetworkPort"`
	Common
	State          string      `json:"state,omitempty" xml:"state,omitempty"`
	Network        *Ref        `json:"network,omitempty" xml:"network,omitempty"`
	PortType       string      `json:"portType,omitempty" xml:"portType,omitempty"`
	ClassOfService string      `json:"classOfService,omitempty" xml:"classOfService,omitempty"`
	MACAddress     string      `json:"macAddress,omitempty" xml:"macAddress,omitempty"`
	Machine        *Ref        `json:"machine,omitempty" xml:"machine,omitempty"`
	Operations     []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra          Extra       `json:"-" xml:",any"`
}

// Address allocation values.
const (
	AllocationDynamic = "dynamic"
	AllocationStatic  = "static"
)

// Address is an IP address on a Network. MACAddress (extension) is the
// interface it belongs to, or the one a static address is reserved for.
type Address struct {
	XMLName xml.Name `json:"-" xml:"Address"`
	Common
	IP             string      `json:"ip,omitempty" xml:"ip,omitempty"`
	Hostname       string      `json:"hostname,omitempty" xml:"hostname,omitempty"`
	Allocation     string      `json:"allocation,omitempty" xml:"allocation,omitempty"`
	DefaultGateway string      `json:"defaultGateway,omitempty" xml:"defaultGateway,omitempty"`
	DNS            []string    `json:"dns,omitempty" xml:"dns,omitempty"`
	Protocol       string      `json:"protocol,omitempty" xml:"protocol,omitempty"`
	Mask           string      `json:"mask,omitempty" xml:"mask,omitempty"`
	Network        *Ref        `json:"network,omitempty" xml:"network,omitempty"`
	Resource       *Ref        `json:"resource,omitempty" xml:"resource,omitempty"`
	MACAddress     string      `json:"macAddress,omitempty" xml:"macAddress,omitempty"`
	Operations     []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra          Extra       `json:"-" xml:",any"`
}

// AddressTemplate is a recipe for a static Address.
type AddressTemplate struct {
	XMLName xml.Name `json:"-" xml:"AddressTemplate"`
	Common
	AddressValues
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra      Extra       `json:"-" xml:",any"`
}

// AddressTemplateInput is an AddressTemplate given by reference (Href) or
// by value.
type AddressTemplateInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	AddressValues
	Extra Extra `json:"-" xml:",any"`
}

// AddressValues are the attributes an AddressTemplate gives an Address,
// in the template's document, in a template by value and in a bare
// AddressTemplate create alike.
type AddressValues struct {
	IP             string   `json:"ip,omitempty" xml:"ip,omitempty"`
	Hostname       string   `json:"hostname,omitempty" xml:"hostname,omitempty"`
	Allocation     string   `json:"allocation,omitempty" xml:"allocation,omitempty"`
	DefaultGateway string   `json:"defaultGateway,omitempty" xml:"defaultGateway,omitempty"`
	DNS            []string `json:"dns,omitempty" xml:"dns,omitempty"`
	Protocol       string   `json:"protocol,omitempty" xml:"protocol,omitempty"`
	Mask           string   `json:"mask,omitempty" xml:"mask,omitempty"`
	Network        *Ref     `json:"network,omitempty" xml:"network,omitempty"`
	MACAddress     string   `json:"macAddress,omitempty" xml:"macAddress,omitempty"`
}

// AddressTemplateCreate is the body of an AddressTemplate create; a bare
// AddressTemplate document is accepted too.
type AddressTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	AddressTemplate *AddressTemplateInput `json:"addressTemplate,omitempty" xml:"addressTemplate,omitempty"`
	AddressValues
	Extra Extra `json:"-" xml:",any"`
}

// AddressCreate is the body of an Address create.
type AddressCreate struct {
	XMLName         xml.Name              `json:"-"`
	ResourceURI     string                `json:"resourceURI,omitempty" xml:"-"`
	Name            string                `json:"name,omitempty" xml:"name,omitempty"`
	Description     string                `json:"description,omitempty" xml:"description,omitempty"`
	Properties      Properties            `json:"properties,omitempty" xml:"property,omitempty"`
	AddressTemplate *AddressTemplateInput `json:"addressTemplate" xml:"addressTemplate"`
	Extra           Extra                 `json:"-" xml:",any"`
}

// Credential holds what a guest's user logs in with: a user name, an
// OpenSSH public key line (as text) and, when one was given, a password,
// which is stored hashed and never shown.
type Credential struct {
	XMLName xml.Name `json:"-" xml:"Credential"`
	Common
	UserName string `json:"userName,omitempty" xml:"userName,omitempty"`
	Key      string `json:"key,omitempty" xml:"key,omitempty"`
	// HasPassword (extension) tells whether a password is set.
	HasPassword bool        `json:"hasPassword,omitempty" xml:"hasPassword,omitempty"`
	Operations  []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra       Extra       `json:"-" xml:",any"`
}

// CredentialTemplate is a recipe for Credentials.
type CredentialTemplate struct {
	XMLName xml.Name `json:"-" xml:"CredentialTemplate"`
	Common
	UserName    string      `json:"userName,omitempty" xml:"userName,omitempty"`
	Key         string      `json:"key,omitempty" xml:"key,omitempty"`
	HasPassword bool        `json:"hasPassword,omitempty" xml:"hasPassword,omitempty"`
	Operations  []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra       Extra       `json:"-" xml:",any"`
}

// CredentialInput is a Credential or CredentialTemplate given by reference
// (Href) or by value; a MachineTemplate's credential takes this shape.
type CredentialInput struct {
	Href string `json:"href,omitempty" xml:"href,attr,omitempty"`
	InputCommon
	UserName string `json:"userName,omitempty" xml:"userName,omitempty"`
	Password string `json:"password,omitempty" xml:"password,omitempty"`
	Key      string `json:"key,omitempty" xml:"key,omitempty"`
	Extra    Extra  `json:"-" xml:",any"`
}

// CredentialTemplateCreate is the body of a CredentialTemplate create; a
// bare CredentialTemplate document is accepted too.
type CredentialTemplateCreate struct {
	XMLName xml.Name `json:"-"`
	InputCommon
	CredentialTemplate *CredentialInput `json:"credentialTemplate,omitempty" xml:"credentialTemplate,omitempty"`
	UserName           string           `json:"userName,omitempty" xml:"userName,omitempty"`
	Password           string           `json:"password,omitempty" xml:"password,omitempty"`
	Key                string           `json:"key,omitempty" xml:"key,omitempty"`
	Extra              Extra            `json:"-" xml:",any"`
}

// CredentialCreate is the body of a Credential create.
type CredentialCreate struct {
	XMLName            xml.Name         `json:"-"`
	ResourceURI        string           `json:"resourceURI,omitempty" xml:"-"`
	Name               string           `json:"name,omitempty" xml:"name,omitempty"`
	Description        string           `json:"description,omitempty" xml:"description,omitempty"`
	Properties         Properties       `json:"properties,omitempty" xml:"property,omitempty"`
	CredentialTemplate *CredentialInput `json:"credentialTemplate" xml:"credentialTemplate"`
	Extra              Extra            `json:"-" xml:",any"`
}

// Machine network interface states.
const (
	InterfaceAttaching = "ATTACHING"
	InterfaceActive    = "ACTIVE"
	InterfaceDetaching = "DETACHING"
	InterfaceError     = "ERROR"
)

// MachineNetworkInterface is one NIC of a Machine. Model is an extension
// attribute.
type MachineNetworkInterface struct {
	XMLName xml.Name `json:"-" xml:"MachineNetworkInterface"`
	Common
	Addresses   *Ref        `json:"addresses,omitempty" xml:"addresses,omitempty"`
	Network     *Ref        `json:"network,omitempty" xml:"network,omitempty"`
	NetworkPort *Ref        `json:"networkPort,omitempty" xml:"networkPort,omitempty"`
	State       string      `json:"state,omitempty" xml:"state,omitempty"`
	MACAddress  string      `json:"macAddress,omitempty" xml:"macAddress,omitempty"`
	MTU         int         `json:"mtu,omitempty" xml:"mtu,omitempty"`
	Model       string      `json:"model,omitempty" xml:"model,omitempty"`
	Operations  []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
	Extra       Extra       `json:"-" xml:",any"`
}

// MachineNetworkInterfaceInput is one entry of a MachineTemplate's
// networkInterfaces, and the body that hot-adds an interface to a Machine.
// Addresses name static Addresses the interface is to receive.
type MachineNetworkInterfaceInput struct {
	XMLName     xml.Name   `json:"-"`
	ResourceURI string     `json:"resourceURI,omitempty" xml:"-"`
	Name        string     `json:"name,omitempty" xml:"name,omitempty"`
	Description string     `json:"description,omitempty" xml:"description,omitempty"`
	Properties  Properties `json:"properties,omitempty" xml:"property,omitempty"`
	Addresses   []Ref      `json:"addresses,omitempty" xml:"address,omitempty"`
	Network     *Ref       `json:"network,omitempty" xml:"network,omitempty"`
	MACAddress  string     `json:"macAddress,omitempty" xml:"macAddress,omitempty"`
	Model       string     `json:"model,omitempty" xml:"model,omitempty"`
	Extra       Extra      `json:"-" xml:",any"`
}

// MachineNetworkInterfaceAddress links an interface to one of its Addresses.
type MachineNetworkInterfaceAddress struct {
	XMLName xml.Name `json:"-" xml:"MachineNetworkInterfaceAddress"`
	Common
	Address    *Ref        `json:"address,omitempty" xml:"address,omitempty"`
	Operations []Operation `json:"operations,omitempty" xml:"operation,omitempty"`
}
