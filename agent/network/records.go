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
	"cimid/agent/records"
	"net/http"
	"reflect"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
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
type meta struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
}

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
	var rec T
	err := db.View(func(tx *store.Tx) (err error) {
		rec, err = records.Get[T](tx, kind, id, what)
		return err
	})
	return rec, err
}

// loadAll reads every record of a kind in its own transaction.
func loadAll[T any](db *store.DB, kind string) ([]T, error) {
	var recs []T
	err := db.View(func(tx *store.Tx) (err error) {
		recs, err = records.List[T](tx, kind)
		return err
	})
	return recs, err
}

// commonDoc renders the shared attributes of a record.
func commonDoc(urls api.URLs, typeName, path string, m meta) cimi.Common {
	return cimi.Common{
		ResourceURI: cimi.TypeURI(typeName),
		ID:          urls.Abs(path),
		Name:        m.Name,
		Description: m.Description,
		Created:     cimi.TimePtr(m.Created),
		Updated:     cimi.TimePtr(m.Updated),
		Properties:  cimi.Properties(m.Properties),
	}
}

// newMeta starts a record's shared attributes from a create request.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	if len(props) == 0 {
		props = nil
	}
	return meta{ID: id, Name: strings.TrimSpace(name), Description: description, Properties: props, Created: now, Updated: now}
}

// applyUpdate applies a PUT body's writable common attributes to m; with
// $select only the attributes it names.
func applyUpdate(m *meta, body cimi.Common, selected []string, now time.Time) error {
	if selected == nil {
		m.Name, m.Description, m.Properties = strings.TrimSpace(body.Name), body.Description, body.Properties
	} else {
		set := map[string]bool{}
		for _, a := range selected {
			switch a {
			case "name", "description", "properties":
				set[a] = true
			default:
				return errdefs.Invalidf("$select names %q, which cannot be updated (writable: name, description, properties)", a)
			}
		}
		if body.Name != "" && !set["name"] || body.Description != "" && !set["description"] || len(body.Properties) > 0 && !set["properties"] {
			return errdefs.Invalidf("the body carries attributes that $select does not name")
		}
		if set["name"] {
			m.Name = strings.TrimSpace(body.Name)
		}
		if set["description"] {
			m.Description = body.Description
		}
		if set["properties"] {
			m.Properties = body.Properties
		}
	}
	if len(m.Properties) == 0 {
		m.Properties = nil
	}
	m.Updated = now
	return nil
}

// selectedAttrs parses $select on a PUT; nil means a full update.
func selectedAttrs(rq *api.Request) []string {
	v, ok := rq.URL.Query()["$select"]
	if !ok {
		return nil
	}
	var out []string
	for _, part := range strings.Split(strings.Join(v, ","), ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// collection renders a list of member documents.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, canAdd bool) *cimi.Collection {
	c := &cimi.Collection{
		ResourceURI: cimi.TypeURI(typeName + "Collection"),
		ID:          urls.Abs(path),
		Count:       len(members),
		MemberKey:   memberKey,
		Members:     members,
	}
	if canAdd {
		c.Operations = []cimi.Operation{{Rel: cimi.RelAdd, Href: urls.Abs(path)}}
	}
	return c
}

// refID resolves an href given in a request to the id of a resource in
// the named collection, refusing hrefs that point elsewhere.
func refID(urls api.URLs, href, collection, what string) (string, error) {
	path, ok := urls.Path(href)
	if !ok {
		return "", errdefs.Invalidf("%s reference %q does not point into this provider", what, href)
	}
	id, found := strings.CutPrefix(path, collection+"/")
	if !found || id == "" || strings.Contains(id, "/") {
		return "", errdefs.Invalidf("%s reference %q is not a %s href (expected %s)", what, href, what, urls.Abs(collection+"/ID"))
	}
	return id, nil
}

// referenced turns "does not exist" of a resource named in a request body
// into a bad request: the request URL itself was found.
func referenced(err error) error {
	if errdefs.Is(err, errdefs.NotFound) {
		return errdefs.Invalidf("%v", err)
	}
	return err
}

// simple serves the list, get, update and delete of a kind whose records
// change only through the API, at once (recorded as finished Jobs).
type simple[T any] struct {
	s         *Service
	kind      string
	what      string // resource type name, e.g. "NetworkConfiguration"
	memberKey string
	doc       func(api.URLs, T) any
	metaOf    func(*T) *meta
	// decode reads the body of a PUT: the resource document.
	decode func(rq *api.Request) (cimi.Common, error)
	// inUse, when set, refuses a delete while something refers to the record.
	inUse func(tx *store.Tx, rec T) error
}

func (k simple[T]) routes(create api.HandlerFunc) []api.Route {
	p := "/" + k.kind
	return []api.Route{
		{Method: http.MethodGet, Path: p, Handler: k.list},
		{Method: http.MethodPost, Path: p, Handler: create},
		{Method: http.MethodGet, Path: p + "/{id}", Handler: k.get},
		{Method: http.MethodPut, Path: p + "/{id}", Handler: k.update},
		{Method: http.MethodDelete, Path: p + "/{id}", Handler: k.delete},
	}
}

func (k simple[T]) list(rq *api.Request) (api.Reply, error) {
	recs, err := loadAll[T](k.s.db, k.kind)
	if err != nil {
		return api.Reply{}, err
	}
	members := make([]any, len(recs))
	for i, r := range recs {
		members[i] = k.doc(rq.URLs, r)
	}
	return api.Reply{Body: collection(rq.URLs, k.what, k.kind, k.memberKey, members, true)}, nil
}

func (k simple[T]) get(rq *api.Request) (api.Reply, error) {
	rec, err := load[T](k.s.db, k.kind, rq.Vars["id"], k.what)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: k.doc(rq.URLs, rec)}, nil
}

func (k simple[T]) update(rq *api.Request) (api.Reply, error) {
	body, err := k.decode(rq)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	path := k.kind + "/" + id
	j, err := k.s.jobs.Done(job.Record{Kind: "edit", Action: cimi.RelEdit, Name: "edit " + path, Target: path}, func(tx *store.Tx) error {
		rec, err := records.Get[T](tx, k.kind, id, k.what)
		if err != nil {
			return err
		}
		if err := applyUpdate(k.metaOf(&rec), body, selectedAttrs(rq), k.s.now()); err != nil {
			return err
		}
		return records.Put(tx, k.kind, id, rec)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID, Location: path}, nil
}

func (k simple[T]) delete(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	path := k.kind + "/" + id
	j, err := k.s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete " + k.what, Target: path}, func(tx *store.Tx) error {
		rec, err := records.Get[T](tx, k.kind, id, k.what)
		if err != nil {
			return err
		}
		if k.inUse != nil {
			if err := k.inUse(tx, rec); err != nil {
				return err
			}
		}
		return tx.Delete(k.kind, id)
	})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}

// created records a create made at once and answers 201.
func (s *Service) created(rq *api.Request, kind, what, id string, apply func(tx *store.Tx) error, doc func() any) (api.Reply, error) {
	path := kind + "/" + id
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create " + what, Target: kind, Affected: []string{kind, path}}, apply)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: doc(), Location: path, JobID: j.ID}, nil
}

// decodeDoc reads a PUT body as the resource document D (a cimi type that
// embeds cimi.Common) and returns its common attributes.
func decodeDoc[D any](typeName string) func(rq *api.Request) (cimi.Common, error) {
	return func(rq *api.Request) (cimi.Common, error) {
		var d D
		if err := rq.Decode(&d, typeName); err != nil {
			return cimi.Common{}, err
		}
		c, _ := reflect.ValueOf(d).FieldByName("Common").Interface().(cimi.Common)
		return c, nil
	}
}
