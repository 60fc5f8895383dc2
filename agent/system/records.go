package system

import (
	"encoding/json"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/job"
	"cimid/agent/records"
	"cimid/agent/resource"
	"cimid/store"
)

// Store kinds (buckets) owned by this package.
const (
	kindSystems   = "systems"
	kindTemplates = "systemTemplates"
)

// kindNetworks is the network service's bucket, read (never written) to
// map the networks of a package by name.
const kindNetworks = "networks"

// meta is what every record shares.
type meta = resource.Meta

// System states this package records; otherwise a System's state is
// derived from its Machines'.
const (
	stateCreating = cimi.StateCreating
	stateDeleting = cimi.StateDeleting
	stateError    = cimi.StateError
)

// member is a Machine of a System. The Machine itself is the compute
// service's; a member whose Machine is gone is not shown.
type member struct {
	MachineID string `json:"machineId"`
	// OS and firmware as the package described them, written again by
	// an export.
	OSType   string `json:"osType,omitempty"`
	OSID     int    `json:"osId,omitempty"`
	Firmware string `json:"firmware,omitempty"`
}

type systemRecord struct {
	meta
	// State is CREATING while the import runs, DELETING while the delete
	// runs, ERROR after a failed delete; empty otherwise.
	State         string   `json:"state,omitempty"`
	StatusMessage string   `json:"statusMessage,omitempty"`
	Source        string   `json:"source,omitempty"`
	TemplateID    string   `json:"templateId,omitempty"`
	Members       []member `json:"members,omitempty"`
}

func (r *systemRecord) member(machineID string) (member, bool) {
	for _, m := range r.Members {
		if m.MachineID == machineID {
			return m, true
		}
	}
	return member{}, false
}

// component is one VirtualSystem of a SystemTemplate's package.
type component struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	CPU         int      `json:"cpu"`
	MemoryKiB   int64    `json:"memoryKiB"`
	DiskKiB     []int64  `json:"diskKiB,omitempty"`
	Networks    []string `json:"networks,omitempty"` // of the NICs, as named by the package
}

// Template states.
const (
	templateCreating  = cimi.StateCreating
	templateAvailable = cimi.StateAvailable
)

type templateRecord struct {
	meta
	State string `json:"state"`
	// ImportImage is the source URI of the package.
	ImportImage string `json:"importImage"`
	// DescriptorSHA256 is the digest of the descriptor read when the
	// template was made: a System made from it refuses a package whose
	// descriptor changed since.
	DescriptorSHA256 string      `json:"descriptorSha256,omitempty"`
	Components       []component `json:"components,omitempty"`
	Warnings         []string    `json:"warnings,omitempty"`
}

func (s *Service) loadSystem(id string) (systemRecord, error) {
	return records.View[systemRecord](s.db, kindSystems, id, "System")
}

// updateSystemRecord applies fn to a System record in one transaction.
func (s *Service) updateSystemRecord(id string, fn func(*systemRecord) error) error {
	return records.Update(s.db, kindSystems, id, "System", func(rec *systemRecord) error {
		if err := fn(rec); err != nil {
			return err
		}
		rec.Updated = s.now()
		return nil
	})
}

func systemPath(id string) string   { return kindSystems + "/" + id }
func templatePath(id string) string { return kindTemplates + "/" + id }
func machinePath(id string) string  { return "machines/" + id }

// newMeta starts a record's shared attributes.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	return resource.NewMeta(id, name, description, props, now)
}

// commonDoc renders the shared attributes of a record.
func commonDoc(urls api.URLs, typeName, path string, m meta) cimi.Common {
	return resource.CommonDoc(urls, typeName, path, m)
}

// collection renders a list of member documents offering ops.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, ops ...cimi.Operation) *cimi.Collection {
	c := resource.Collection(urls, typeName, path, memberKey, members, false)
	c.Operations = ops
	return c
}

// syncUpdate performs a change made at once, recording a finished Job.
func (s *Service) syncUpdate(path string, apply func(tx *store.Tx) error) (api.Reply, error) {
	return resource.Edited(s.jobs, path, apply)
}

// submit starts a Job with params, writing prepare's intent with it.
func (s *Service) submit(rec job.Record, params any, prepare func(tx *store.Tx) error) (job.Record, error) {
	return resource.Submit(s.jobs, rec, params, prepare)
}

// refID resolves an href given in a request to the id of a resource in
// the named collection.
func refID(urls api.URLs, href, collection, what string) (string, error) {
	return resource.RefID(urls, href, collection, what)
}

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
