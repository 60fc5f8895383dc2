// Package network owns the Network family of resources and what a guest
// needs to be reachable and configured on first boot: NetworkConfigurations,
// NetworkTemplates and Networks (backed by libvirt networks), NetworkPorts
// (one per Machine interface), Addresses (DHCP leases and static
// reservations) with their AddressTemplates, and Credentials with their
// CredentialTemplates. It also gives the compute service what it needs to
// put a Machine on networks: the interfaces of a template resolved into NICs,
// the cloud-init seed built from a credential and userData, and the
// interfaces and addresses of a Machine.
package network

import (
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// Store kinds (buckets) owned by this package.
const (
	kindConfigs             = "networkConfigs"
	kindTemplates           = "networkTemplates"
	kindNetworks            = "networks"
	kindPorts               = "networkPorts"
	kindAddresses           = "addresses"
	kindAddressTemplates    = "addressTemplates"
	kindCredentials         = "credentials"
	kindCredentialTemplates = "credentialTemplates"
	kindMachineNets         = "machineNetworks"
	kindReleased            = "releasedLeases"
)

// meta is what every record shares.
type meta = resource.Meta

// netSpec is the shape of a network as a configuration gives it.
type netSpec struct {
	NetworkType    string `json:"networkType,omitempty"`
	MTU            int    `json:"mtu,omitempty"`
	ClassOfService string `json:"classOfService,omitempty"`
	ForwardMode    string `json:"forwardMode,omitempty"` // nat or isolated
	Subnet         string `json:"subnet,omitempty"`      // CIDR; chosen free when empty
	DHCPRange      string `json:"dhcpRange,omitempty"`   // first-last; a default when empty
}

type configRecord struct {
	meta
	netSpec
}

type templateRecord struct {
	meta
	ConfigID string   `json:"configId,omitempty"` // by reference
	Config   *netSpec `json:"config,omitempty"`   // by value
}

type networkRecord struct {
	meta
	netSpec              // every field resolved: forward mode, subnet and range set
	State         string `json:"state"`
	StatusMessage string `json:"statusMessage,omitempty"`
	LibvirtName   string `json:"libvirtName"`
	Bridge        string `json:"bridge,omitempty"`
	Default       bool   `json:"default,omitempty"` // the network the agent provides
	// SubnetChosen tells that the agent chose the subnet: a create that
	// finds it taken meanwhile moves the Network to another free one.
	SubnetChosen bool `json:"subnetChosen,omitempty"`
}

// portRecord is one interface of a Machine on a Network: the NetworkPort
// and the MachineNetworkInterface are two views of it.
type portRecord struct {
	meta
	NetworkID  string   `json:"networkId"`
	MachineID  string   `json:"machineId"`
	MAC        string   `json:"mac"`
	Model      string   `json:"model"`
	AddressIDs []string `json:"addressIds,omitempty"` // static Addresses bound to this MAC
	State      string   `json:"state"`
	Index      int      `json:"index"` // order among the Machine's interfaces
}

// addressRecord is an Address: a static reservation, or a DHCP lease seen
// on one of our networks.
type addressRecord struct {
	meta
	NetworkID  string    `json:"networkId"`
	IP         string    `json:"ip"`
	Prefix     int       `json:"prefix"`
	Hostname   string    `json:"hostname,omitempty"`
	MAC        string    `json:"mac,omitempty"`
	Allocation string    `json:"allocation"` // dynamic or static
	Expiry     time.Time `json:"expiry,omitempty"`
}

type addressTemplateRecord struct {
	meta
	IP        string `json:"ip,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	NetworkID string `json:"networkId,omitempty"`
	MAC       string `json:"mac,omitempty"`
}

// credSpec is what a Credential or CredentialTemplate holds.
type credSpec struct {
	UserName     string `json:"userName,omitempty"`
	Key          string `json:"key,omitempty"`
	PasswordHash string `json:"passwordHash,omitempty"`
}

type credentialRecord struct {
	meta
	credSpec
}

type credentialTemplateRecord struct {
	meta
	credSpec
}

// seedPlan is what a Machine's cloud-init seed is made of, fixed when the
// Machine is created.
type seedPlan struct {
	InstanceID   string    `json:"instanceId"`
	Hostname     string    `json:"hostname"`
	UserData     string    `json:"userData,omitempty"` // base64
	UserName     string    `json:"userName,omitempty"`
	SSHKeys      []string  `json:"sshKeys,omitempty"`
	PasswordHash string    `json:"passwordHash,omitempty"`
	Created      time.Time `json:"created"`
}

// machineNetRecord is what this package knows of one Machine.
type machineNetRecord struct {
	MachineID string    `json:"machineId"`
	Domain    string    `json:"domain"`
	Seed      *seedPlan `json:"seed,omitempty"`
	SeedPath  string    `json:"seedPath,omitempty"`
	NextIndex int       `json:"nextIndex"`
}

// releasedRecord remembers a MAC whose interface was removed while its
// DHCP lease may still be valid, so that the lease is not shown as an
// Address of an unknown guest.
type releasedRecord struct {
	NetworkID string    `json:"networkId"`
	MAC       string    `json:"mac"`
	Released  time.Time `json:"released"`
}

func releasedKey(networkID, mac string) string { return networkID + "/" + mac }

// load reads one record in its own transaction.
func load[T any](db *store.DB, kind, id, what string) (T, error) {
	return records.View[T](db, kind, id, what)
}

// loadAll reads every record of a kind in its own transaction.
func loadAll[T any](db *store.DB, kind string) ([]T, error) {
	return records.ViewAll[T](db, kind)
}

// commonDoc renders the shared attributes of a record.
func commonDoc(urls api.URLs, typeName, path string, m meta) cimi.Common {
	return resource.CommonDoc(urls, typeName, path, m)
}

// newMeta starts a record's shared attributes from a create request.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	return resource.NewMeta(id, name, description, props, now)
}

// backend is how this package's kinds are served.
func (s *Service) backend() resource.Backend {
	return resource.Backend{DB: s.db, Jobs: s.jobs, Now: func() time.Time { return s.now() }}
}

// collection renders a list of member documents.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, canAdd bool) *cimi.Collection {
	return resource.Collection(urls, typeName, path, memberKey, members, canAdd)
}

// refID resolves an href given in a request to the id of a resource in
// the named collection, refusing hrefs that point elsewhere.
func refID(urls api.URLs, href, collection, what string) (string, error) {
	return resource.RefID(urls, href, collection, what)
}

// referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func referenced(err error) error { return resource.Referenced(err) }
