package network

import (
	"cimid/agent/cimi"
)

func extAttr(name, typ, description string) cimi.AttributeMeta {
	return cimi.AttributeMeta{Name: name, Namespace: cimi.ExtNamespace, Type: typ, Description: description}
}

func extCapability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.ExtNamespace + "/capability/" + resource + "/" + name, Value: value, Description: description}
}

func capability(resource, name, value, description string) cimi.Capability {
	return cimi.Capability{Name: name, URI: cimi.CapabilityURI(resource, name), Value: value, Description: description}
}

// netAttrs are the extension attributes of a network's shape.
var netAttrs = []cimi.AttributeMeta{
	extAttr("forwardMode", "string", "nat (NAT to the host's uplink) or isolated; default nat, isolated for networkType PRIVATE"),
	extAttr("subnet", "string", "IPv4 CIDR, e.g. 10.231.7.0/24, prefix /8 to /29; the gateway is its first address; chosen free from 10.231.0.0/24 upwards when absent"),
	extAttr("dhcpRange", "string", "first-last addresses handed out by DHCP; default the upper half of the subnet, the lower half being for static Addresses"),
}

func (s *Service) metadata() []cimi.ResourceMetadata {
	nat, why := natPossible()
	natValue := "true"
	if !nat {
		natValue = "false: " + why
	}
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "Network"}, TypeURI: cimi.TypeURI("Network"),
			Attributes: append([]cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "networkType", Required: true}, {Name: "mtu"}, {Name: "networkPorts"}},
				append(netAttrs,
					extAttr("gateway", "string", "the host's address on the network (read-only)"),
					extAttr("bridge", "string", "the host bridge of the network (read-only)"))...),
			Capabilities: []cimi.Capability{
				capability("Network", "NetworkTemplateByValue", "true", ""),
				capability("Network", "NetworkConfigByValue", "true", ""),
				extCapability("Network", "ForwardModes", "nat,isolated", "forward modes a network may have"),
				extCapability("Network", "NAT", natValue, "whether NAT networks can work on this host"),
				extCapability("Network", "DefaultNetwork", "networks/"+defaultNetworkID, "the network a Machine is on when its template names no networkInterfaces"),
			}},
		{Common: cimi.Common{Name: "NetworkConfiguration"}, TypeURI: cimi.TypeURI("NetworkConfiguration"),
			Attributes: append([]cimi.AttributeMeta{{Name: "networkType"}, {Name: "mtu"}, {Name: "classOfService"}}, netAttrs...)},
		{Common: cimi.Common{Name: "NetworkTemplate"}, TypeURI: cimi.TypeURI("NetworkTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "networkConfig", Required: true}}},
		{Common: cimi.Common{Name: "NetworkPort"}, TypeURI: cimi.TypeURI("NetworkPort"),
			Attributes: []cimi.AttributeMeta{{Name: "state", Required: true}, {Name: "network", Required: true}, {Name: "portType"},
				extAttr("macAddress", "string", "MAC address of the Machine interface on this port"),
				extAttr("machine", "href", "the Machine the port belongs to")}},
		{Common: cimi.Common{Name: "Address"}, TypeURI: cimi.TypeURI("Address"),
			Attributes: []cimi.AttributeMeta{{Name: "ip", Required: true}, {Name: "allocation", Required: true}, {Name: "network", Required: true},
				{Name: "mask"}, {Name: "defaultGateway"}, {Name: "dns"}, {Name: "protocol"}, {Name: "hostname"}, {Name: "resource"},
				extAttr("macAddress", "string", "the interface holding the address, or the MAC a static address is reserved for")},
			Capabilities: []cimi.Capability{
				extCapability("Address", "Allocations", "dynamic,static", "dynamic: DHCP leases, read every few seconds; static: reservations created through AddressTemplates, outside the DHCP range"),
			}},
		{Common: cimi.Common{Name: "AddressTemplate"}, TypeURI: cimi.TypeURI("AddressTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "ip", Required: true}, {Name: "network", Required: true}, {Name: "hostname"},
				extAttr("macAddress", "string", "reserve the address for this MAC now; otherwise for the interface that names the Address")}},
		{Common: cimi.Common{Name: "Credential"}, TypeURI: cimi.TypeURI("Credential"),
			Attributes: []cimi.AttributeMeta{{Name: "userName"}, {Name: "key", Type: "string", Description: "an OpenSSH public key line as text: ssh-ed25519, ssh-rsa (2048 bits or more) or ecdsa-sha2-nistp256/384/521"},
				{Name: "password", Description: "write-only; stored as a salted SHA-512 crypt hash and set for userName in the guest"},
				extAttr("hasPassword", "boolean", "whether a password is set (read-only)")},
			Capabilities: []cimi.Capability{capability("Credential", "CredentialTemplateByValue", "true", "")}},
		{Common: cimi.Common{Name: "CredentialTemplate"}, TypeURI: cimi.TypeURI("CredentialTemplate"),
			Attributes: []cimi.AttributeMeta{{Name: "userName"}, {Name: "key"}, {Name: "password"}}},
		{Common: cimi.Common{Name: "MachineNetworkInterface"}, TypeURI: cimi.TypeURI("MachineNetworkInterface"),
			Attributes: []cimi.AttributeMeta{{Name: "network", Required: true}, {Name: "macAddress"}, {Name: "state"}, {Name: "mtu"}, {Name: "addresses"},
				extAttr("model", "string", "virtio (default), e1000, e1000e or rtl8139")}},
	}
}
