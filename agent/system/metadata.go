package system

import (
	"strconv"

	"cimid/agent/cimi"
)

func extCapability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.ExtNamespace + "/capability/" + resource + "/" + name, Value: value, Description: description}
}

func action(name, description string) cimi.ActionMeta {
	return cimi.ActionMeta{Name: name, URI: cimi.ActionURI(name), Method: "POST", Description: description, InputMessage: "application/json"}
}

func metadata() []cimi.ResourceMetadata {
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "System"}, TypeURI: cimi.TypeURI("System"),
			Attributes: []cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "machines"}, {Name: "volumes"}, {Name: "networks"},
				{Name: "statusMessage", Namespace: cimi.ExtNamespace, Type: "string", Description: "why the System is in ERROR"}},
			Capabilities: []cimi.Capability{
				{Name: "SystemComponentTemplateByValue", URI: cimi.CapabilityURI("System", "SystemComponentTemplateByValue"), Value: "false",
					Description: "a System is made by importing an OVF package, or from a SystemTemplate made from one"},
				extCapability("System", "ImportSourceSchemes", "file,http,https", "where the import action reads packages from: an .ova, or an .ovf with its files beside it"),
				extCapability("System", "ImportMaxMachines", strconv.Itoa(maxImportMachines), "VirtualSystems one package may hold"),
				extCapability("System", "ImportDisks", "machine", "every disk of an imported package becomes a local disk of its Machine, converted to qcow2"),
				extCapability("System", "ExportFormats", cimi.MediaTypeOVF, "exports are OVAs: descriptor, SHA256 manifest, streamOptimized VMDK disks"),
				extCapability("System", "ExportDestinationSchemes", "file", "exports are written to a path on this host"),
				extCapability("System", "ExportNeedsStopped", "true", "Machines are exported STOPPED; an export of a running Machine is refused"),
			},
			Actions: []cimi.ActionMeta{
				action("import", "on the SystemCollection: create a System from the OVF package at source (file:// or http(s)://; properties username and password authenticate to http)"),
				action("export", "write the System's STOPPED Machines as an OVA at destination (file://...ova); Machines have the same export operation at <machine>/export"),
				action("start", "start every Machine of the System that can be started"),
				action("stop", "stop every Machine of the System that can be stopped (force, stopTimeout and forceOnTimeout as for a Machine)"),
				action("restart", "restart every Machine of the System that can be restarted"),
			}},
		{Common: cimi.Common{Name: "SystemTemplate"}, TypeURI: cimi.TypeURI("SystemTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "componentDescriptors"}, {Name: "importImage", Required: true}},
			Actions: []cimi.ActionMeta{
				action("import", "on the SystemTemplateCollection: make a SystemTemplate from the OVF package at source"),
			}},
	}
}
