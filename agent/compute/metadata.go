package compute

import (
	"strconv"

	"cimid/agent/cimi"
	"cimid/agent/network"
)

func capability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.CapabilityURI(resource, name), Value: value, Description: description}
}

func extCapability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.ExtNamespace + "/capability/" + resource + "/" + name, Value: value, Description: description}
}

func action(name, description string) cimi.ActionMeta {
	return cimi.ActionMeta{Name: name, URI: cimi.ActionURI(name), Method: "POST", Description: description, InputMessage: "application/json"}
}

func (s *Service) metadata() []cimi.ResourceMetadata {
	return s.networkMetadata(s.baseMetadata())
}

// networkMetadata adds what Machines and MachineTemplates get from the
// network service, when there is one.
func (s *Service) networkMetadata(list []cimi.ResourceMetadata) []cimi.ResourceMetadata {
	if s.cfg.Networks == nil {
		return list
	}
	for i := range list {
		md := &list[i]
		switch md.Name {
		case "Machine":
			md.Attributes = append(md.Attributes, cimi.AttributeMeta{Name: "networkInterfaces"})
			md.Capabilities = append(md.Capabilities,
				capability("Machine", "UserData", "disk", "userData (and the credential) reach the guest on a CD-ROM: a cloud-init NoCloud ISO 9660 volume labelled cidata with user-data, meta-data and network-config at its root"),
				capability("Machine", "MachineCredentialByValue", "true", "a template's credential may be given by value (userName, key, password) or by reference"),
				extCapability("Machine", "MaxUserData", strconv.Itoa(network.MaxUserData), "bytes userData may decode to"),
				extCapability("Machine", "HotPlugNetworkInterfaces", "true", "interfaces are added to and removed from a STARTED Machine while the guest runs"))
		case "MachineTemplate":
			md.Attributes = append(md.Attributes, cimi.AttributeMeta{Name: "userData"},
				cimi.AttributeMeta{Name: "networkInterfaces", Description: "absent: one interface on the default network; empty: none"},
				cimi.AttributeMeta{Name: "credential"})
		}
	}
	return list
}

func (s *Service) baseMetadata() []cimi.ResourceMetadata {
	maxMem := strconv.FormatInt(s.host.MemoryKiB, 10)
	maxCPU := strconv.Itoa(s.maxCPUs())
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "Machine"}, TypeURI: cimi.TypeURI("Machine"),
			Attributes: []cimi.AttributeMeta{{Name: "cpu", Required: true}, {Name: "memory", Required: true}, {Name: "cpuArch", Required: true}, {Name: "disks", Required: true},
				{Name: "statusMessage", Namespace: cimi.ExtNamespace, Type: "string", Description: "why the Machine is in ERROR, or what was last observed outside the API"}},
			Capabilities: []cimi.Capability{
				capability("Machine", "InitialStates", "STARTED,STOPPED", "states a Machine can be created in"),
				capability("Machine", "DefaultInitialState", defaultInitialState, "state of a new Machine whose template names none"),
				capability("Machine", "MachineTemplateByValue", "true", ""),
				capability("Machine", "MachineConfigByValue", "true", ""),
				capability("Machine", "MachineStopForce", "true", "stop and restart accept force"),
				capability("Machine", "MachineStopForceDefault", "false", "without force, stop is a graceful ACPI shutdown"),
				extCapability("Machine", "DomainType", string(s.cfg.DomainType), "kvm: hardware virtualization; qemu: software emulation (TCG)"),
				extCapability("Machine", "MaxCPU", maxCPU, "vCPUs a Machine may have on this host"),
				extCapability("Machine", "MaxMemory", maxMem, "KiB of memory a Machine may have on this host"),
				extCapability("Machine", "DefaultStopTimeout", strconv.Itoa(int(s.cfg.DefaultStopTimeout.Seconds())), "seconds a graceful stop waits when the request names no stopTimeout"),
			},
			Actions: []cimi.ActionMeta{
				action("start", "boot a STOPPED Machine, or resume a PAUSED or SUSPENDED one"),
				action("stop", "graceful ACPI shutdown re-sent until a deadline; force=true powers off at once; extension parameters stopTimeout (seconds) and forceOnTimeout (boolean)"),
				action("restart", "graceful stop then start; force=true resets the Machine"),
				action("pause", "keep the Machine in memory without running it"),
				action("suspend", "save the Machine's memory to disk and stop it"),
			}},
		{Common: cimi.Common{Name: "Action"}, TypeURI: cimi.TypeURI("Action"),
			Attributes: []cimi.AttributeMeta{
				{Name: "action", Required: true},
				{Name: "stopTimeout", Namespace: cimi.ExtNamespace, Type: "integer", Description: "seconds a graceful stop or restart may take"},
				{Name: "forceOnTimeout", Namespace: cimi.ExtNamespace, Type: "boolean", Description: "power off when the graceful stop's deadline passes (default false)"},
			}},
		{Common: cimi.Common{Name: "MachineConfiguration"}, TypeURI: cimi.TypeURI("MachineConfiguration"),
			Attributes: []cimi.AttributeMeta{{Name: "cpu", Required: true}, {Name: "memory", Required: true}, {Name: "disks"}, {Name: "cpuArch"}}},
		{Common: cimi.Common{Name: "MachineImage"}, TypeURI: cimi.TypeURI("MachineImage"),
			Attributes: []cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "type", Required: true}, {Name: "imageLocation", Required: true},
				{Name: "diskFormat", Namespace: cimi.ExtNamespace, Type: "string", Description: "format of the stored image file (qcow2)"},
				{Name: "capacity", Namespace: cimi.ExtNamespace, Type: "integer", Description: "virtual size of the image in KiB"}},
			Capabilities: []cimi.Capability{extCapability("MachineImage", "ImageLocationSchemes", "file,http,https", "where images can be registered from"),
				extCapability("MachineImage", "SourceFormats", "qcow2,raw,vmdk", "disk formats accepted, detected from content")}},
		{Common: cimi.Common{Name: "MachineTemplate"}, TypeURI: cimi.TypeURI("MachineTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "machineConfig", Required: true}, {Name: "machineImage", Required: true}, {Name: "initialState"}}},
		{Common: cimi.Common{Name: "MachineDisk"}, TypeURI: cimi.TypeURI("MachineDisk"),
			Attributes: []cimi.AttributeMeta{{Name: "capacity", Required: true}, {Name: "initialLocation"}}},
	}
}
