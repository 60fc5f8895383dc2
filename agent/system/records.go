package system

import (
	"cimid/agent/records"
	"encoding/json"
	"fmt"
	"net/http"
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
	kindSystems   = "systems"
	kindTemplates = "systemTemplates"
)

// kindNetworks is the network service's bucket, read (never written) to
// map the networks of a package by name.
const kindNetworks = "networks"

// meta is what every record shares.
type meta struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
}

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
	var rec systemRecord
	err := s.db.View(func(tx *store.Tx) (err error) {
		rec, err = records.Get[systemRecord](tx, kindSystems, id, "System")
		return err
	})
	return rec, err
}

// updateSystem applies fn to a System record in one transaction.
func (s *Service) updateSystemRecord(id string, fn func(*systemRecord) error) error {
	return s.db.Update(func(tx *store.Tx) error {
		rec, err := records.Get[systemRecord](tx, kindSystems, id, "System")
		if err != nil {
			return err
		}
		if err := fn(&rec); err != nil {
			return err
		}
		rec.Updated = s.now()
		return records.Put(tx, kindSystems, id, rec)
	})
}

func systemPath(id string) string   { return kindSystems + "/" + id }
func templatePath(id string) string { return kindTemplates + "/" + id }
func machinePath(id string) string  { return "machines/" + id }

// newMeta starts a record's shared attributes.
func newMeta(id, name, description string, props map[string]string, now time.Time) meta {
	if len(props) == 0 {
		props = nil
	}
	return meta{ID: id, Name: strings.TrimSpace(name), Description: description, Properties: props, Created: now, Updated: now}
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

// collection renders a list of member documents.
func collection(urls api.URLs, typeName, path, memberKey string, members []any, ops ...cimi.Operation) *cimi.Collection {
	return &cimi.Collection{
		ResourceURI: cimi.TypeURI(typeName + "Collection"),
		ID:          urls.Abs(path),
		Count:       len(members),
		MemberKey:   memberKey,
		Members:     members,
		Operations:  ops,
	}
}

// applyUpdate applies a PUT body's writable common attributes to m. With
// $select only the attributes it names change.
func applyUpdate(rq *api.Request, m *meta, body cimi.Common, now time.Time) error {
	selected, partial := rq.URL.Query()["$select"]
	if !partial {
		m.Name, m.Description, m.Properties = strings.TrimSpace(body.Name), body.Description, body.Properties
	} else {
		for _, part := range strings.Split(strings.Join(selected, ","), ",") {
			switch a := strings.TrimSpace(part); a {
			case "":
			case "name":
				m.Name = strings.TrimSpace(body.Name)
			case "description":
				m.Description = body.Description
			case "properties":
				m.Properties = body.Properties
			default:
				return errdefs.Invalidf("$select names %q, which cannot be updated (writable: name, description, properties)", a)
			}
		}
	}
	if len(m.Properties) == 0 {
		m.Properties = nil
	}
	m.Updated = now
	return nil
}

// syncUpdate performs a change made at once, recording a finished Job.
func (s *Service) syncUpdate(path string, apply func(tx *store.Tx) error) (api.Reply, error) {
	rec, err := s.jobs.Done(job.Record{Kind: "edit", Action: cimi.RelEdit, Name: "edit " + path, Target: path}, apply)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: rec.ID, Location: path}, nil
}

// submit starts a Job with params, writing prepare's intent with it.
func (s *Service) submit(rec job.Record, params any, prepare func(tx *store.Tx) error) (job.Record, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return job.Record{}, fmt.Errorf("encode job parameters: %w", err)
	}
	rec.Params = b
	return s.jobs.Submit(rec, prepare)
}

// refID resolves an href given in a request to the id of a resource in
// the named collection.
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

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
