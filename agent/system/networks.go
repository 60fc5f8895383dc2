package system

import (
	"cimid/agent/records"
	"fmt"
	"net"
	"strings"

	"cimid/agent/cimi"
	"cimid/agent/network"
	"cimid/store"
)

// defaultNetworkID is the network the agent provides; a package's network
// that matches no agent network is mapped to it.
const defaultNetworkID = "default"

// networkView is what this package reads of a Network record: enough to
// map the networks an OVF package names to the agent's, and to name them
// in an export.
type networkView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

func (n networkView) usable() bool {
	return n.State != cimi.NetworkDeleting && n.State != cimi.NetworkError
}

// label is the name an export gives the network.
func (n networkView) label() string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

func listNetworks(tx *store.Tx) ([]networkView, error) {
	return records.List[networkView](tx, kindNetworks)
}

// networkMap maps the network names of a package to agent networks.
type networkMap struct {
	nets   []networkView
	mapped map[string]string // package name -> network id, "" when none
	warned map[string]bool
}

func newNetworkMap(nets []networkView) *networkMap {
	return &networkMap{nets: nets, mapped: map[string]string{}, warned: map[string]bool{}}
}

// resolve returns the id of the agent network a package's network maps
// to: the usable network of that name (or id), exactly, else without
// regard to case, else the default network. ok is false when there is no
// network to map to at all; warn is set the first time a name falls back.
func (m *networkMap) resolve(name string) (id string, ok bool, warn string) {
	if id, seen := m.mapped[name]; seen {
		return id, id != "", ""
	}
	pick := func(match func(networkView) bool) string {
		for _, n := range m.nets {
			if n.usable() && match(n) {
				return n.ID
			}
		}
		return ""
	}
	id = pick(func(n networkView) bool { return name != "" && (n.Name == name || n.ID == name) })
	if id == "" {
		id = pick(func(n networkView) bool {
			return name != "" && (strings.EqualFold(n.Name, name) || strings.EqualFold(n.ID, name))
		})
	}
	if id == "" {
		id = pick(func(n networkView) bool { return n.ID == defaultNetworkID })
		what := fmt.Sprintf("network %q", name)
		if name == "" {
			what = "a NIC without a network"
		}
		if id != "" {
			warn = fmt.Sprintf("%s matches no network of this host; it is mapped to the default network", what)
		} else {
			warn = fmt.Sprintf("%s matches no network of this host and there is no default network; its NICs are left out", what)
		}
	}
	m.mapped[name] = id
	return id, id != "", warn
}

// nicModel maps the NIC model a package names to one this host offers.
// The second result is a warning when the model had to change.
func nicModel(model string) (string, string) {
	switch m := strings.ToLower(strings.TrimSpace(model)); m {
	case "virtio", "virtio-net", "virtio_net":
		return "virtio", ""
	case "e1000", "":
		return "e1000", ""
	case "e1000e":
		return "e1000e", ""
	case "rtl8139":
		return "rtl8139", ""
	case "vmxnet3", "vmxnet", "vmxnet2":
		return "virtio", fmt.Sprintf("NIC model %s is not available on this host; virtio is used (the guest needs its driver)", model)
	default:
		return "e1000", fmt.Sprintf("NIC model %s is not available on this host; e1000 is used", model)
	}
}

// ovfNICModel is the ResourceSubType an export writes for a model.
func ovfNICModel(model string) string {
	switch model {
	case "e1000":
		return "E1000"
	case "e1000e":
		return "E1000e"
	case "":
		return "virtio"
	}
	return model
}

// packageMAC returns a package's MAC in the agent's form, or "" when it is
// absent or not a unicast Ethernet address.
func packageMAC(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
		return ""
	}
	return hw.String()
}

// interfaceSpec is the network service's form of one imported NIC.
func interfaceSpec(networkID, model, mac string) network.InterfaceSpec {
	return network.InterfaceSpec{NetworkID: networkID, Model: model, MAC: mac}
}
