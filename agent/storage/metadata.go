package storage

import (
	"strconv"
	"strings"

	"cimid/agent/cimi"
)

func capability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.CapabilityURI(resource, name), Value: value, Description: description}
}

func extCapability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.ExtNamespace + "/capability/" + resource + "/" + name, Value: value, Description: description}
}

func extAttribute(name, typ, description string) cimi.AttributeMeta {
	return cimi.AttributeMeta{Name: name, Namespace: cimi.ExtNamespace, Type: typ, Description: description}
}

var (
	diskFormatAttribute = extAttribute("diskFormat", "string", "format of the volume's image file: qcow2 (default, raw when shareable) or raw; only qcow2 volumes can be part of a Machine snapshot")
	shareableAttribute  = extAttribute("shareable", "boolean", "true: the volume may be attached to several Machines at once (raw only); false (default): to one Machine at a time")
)

func (s *Service) metadata() []cimi.ResourceMetadata {
	filesystems := strings.Join(s.mkfs.names(), ",")
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "Volume"}, TypeURI: cimi.TypeURI("Volume"),
			Attributes: []cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "type", Required: true},
				{Name: "capacity", Required: true, Description: "KiB; a PUT with a larger capacity grows the volume, a smaller one is refused"},
				{Name: "bootable"}, {Name: "images"}, diskFormatAttribute, shareableAttribute,
				extAttribute("format", "string", "file system made on the volume when it was created; absent when unformatted"),
				extAttribute("machines", "array", "read-only: references to the Machines the volume is attached to, in the order they attached it")},
			Capabilities: []cimi.Capability{
				capability("Volume", "SharedVolumeSupport", "true", "a volume created with shareable true (raw) attaches to several Machines at once; other volumes attach to one Machine at a time"),
				capability("Volume", "VolumeConfigByValue", "true", ""),
				capability("Volume", "VolumeTemplateByValue", "true", ""),
				capability("Volume", "VolumeImageByValue", "false", "a volume is made from a VolumeImage given by reference"),
				capability("Volume", "VolumeSnapshot", "true", "a VolumeImage is a standalone copy of a volume that is detached or whose Machines are all stopped"),
				extCapability("Volume", "DiskFormats", "qcow2,raw", "image formats of volumes (diskFormat)"),
				extCapability("Volume", "DefaultDiskFormat", diskQCOW2, ""),
				extCapability("Volume", "FileSystems", filesystems, "values of format this host can make on a new volume"),
				extCapability("Volume", "MinCapacity", strconv.Itoa(minCapacityKiB), "KiB"),
				extCapability("Volume", "MaxCapacity", strconv.FormatInt(maxCapacityKiB, 10), "KiB"),
				extCapability("Volume", "OnlineResize", "true", "a volume attached to a running Machine grows while the guest runs"),
			},
			Actions: []cimi.ActionMeta{{Name: "snapshot", URI: cimi.ActionURI("snapshot"), Method: "POST",
				Description:  "make a VolumeImage of the volume; the body is an optional VolumeImageCreate (name, description, properties)",
				InputMessage: "application/json"}}},
		{Common: cimi.Common{Name: "VolumeConfiguration"}, TypeURI: cimi.TypeURI("VolumeConfiguration"),
			Attributes: []cimi.AttributeMeta{{Name: "type"}, {Name: "format", Description: "file system; absent: unformatted"},
				{Name: "capacity", Required: true, Description: "KiB"}, diskFormatAttribute, shareableAttribute}},
		{Common: cimi.Common{Name: "VolumeTemplate"}, TypeURI: cimi.TypeURI("VolumeTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "volumeConfig"}, {Name: "volumeImage"}}},
		{Common: cimi.Common{Name: "VolumeImage"}, TypeURI: cimi.TypeURI("VolumeImage"),
			Attributes: []cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "imageLocation", Required: true}, {Name: "bootable"},
				extAttribute("diskFormat", "string", "format of the stored image file (qcow2)"),
				extAttribute("capacity", "integer", "virtual size of the image in KiB"),
				extAttribute("volume", "ref", "the Volume the image was taken from")},
			Capabilities: []cimi.Capability{extCapability("VolumeImage", "ImageLocationSchemes", "file", "besides a Volume URI (a snapshot of that volume), where images can be registered from")}},
	}
}
