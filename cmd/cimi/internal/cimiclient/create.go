package cimiclient

// MachineTemplate describes a machine to create: either a reference to a
// stored template (Href, optionally with overrides) or a template by
// value (MachineConfig and MachineImage).
type MachineTemplate struct {
	Href          string `json:"href,omitempty"`
	MachineConfig *Ref   `json:"machineConfig,omitempty"`
	MachineImage  *Ref   `json:"machineImage,omitempty"`
	InitialState  string `json:"initialState,omitempty"`
	// UserData is base64-encoded.
	UserData string `json:"userData,omitempty"`
	// NetworkInterfaces nil leaves the interfaces to the template or the
	// server (the default network); an empty list asks for none.
	NetworkInterfaces []NetworkInterface `json:"networkInterfaces,omitzero"`
	Credential        *Credential        `json:"credential,omitempty"`
}

// NetworkInterface puts a machine on a network.
type NetworkInterface struct {
	Network    Ref    `json:"network"`
	MACAddress string `json:"macAddress,omitempty"`
	Model      string `json:"model,omitempty"`
}

// Credential is a credential given by reference (Href) or by value.
type Credential struct {
	Href     string `json:"href,omitempty"`
	UserName string `json:"userName,omitempty"`
	Key      string `json:"key,omitempty"`
}

// MachineCreate is the body that creates a Machine.
type MachineCreate struct {
	ResourceURI     string            `json:"resourceURI"`
	Name            string            `json:"name"`
	Description     string            `json:"description,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`
	MachineTemplate MachineTemplate   `json:"machineTemplate"`
}

// MachineImageCreate is the body that registers a MachineImage.
type MachineImageCreate struct {
	ResourceURI   string            `json:"resourceURI"`
	Name          string            `json:"name"`
	Description   string            `json:"description,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
	ImageLocation string            `json:"imageLocation"`
}

// MachineTemplateCreate is the body that stores a MachineTemplate; the
// template itself is always given by value.
type MachineTemplateCreate struct {
	ResourceURI     string            `json:"resourceURI"`
	Name            string            `json:"name"`
	Description     string            `json:"description,omitempty"`
	Properties      map[string]string `json:"properties,omitempty"`
	MachineTemplate MachineTemplate   `json:"machineTemplate"`
}
