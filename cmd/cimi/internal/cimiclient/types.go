package cimiclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
)

// Ref is a CIMI reference attribute.
type Ref struct {
	Href string `json:"href"`
}

// Operation is one entry of a resource's operations list.
type Operation struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

// Operations is the list of what may be done to a resource now.
type Operations []Operation

// Find returns the operation named name: either a core rel such as "add"
// or "delete", or the last segment of an action URI such as "start" for
// http://schemas.dmtf.org/cimi/1/action/start. A full rel URI also matches.
func (ops Operations) Find(name string) (Operation, bool) {
	for _, op := range ops {
		if op.Rel == name || ShortRel(op.Rel) == name {
			return op, true
		}
	}
	return Operation{}, false
}

// Names returns the short names of the operations, without "edit", which
// has no command of its own.
func (ops Operations) Names() []string {
	names := make([]string, 0, len(ops))
	for _, op := range ops {
		if n := ShortRel(op.Rel); n != "edit" {
			names = append(names, n)
		}
	}
	return names
}

// ShortRel turns an action URI into its short name; core rels are returned
// unchanged.
func ShortRel(rel string) string {
	if i := strings.LastIndex(rel, "/action/"); i >= 0 {
		return rel[i+len("/action/"):]
	}
	return rel
}

// LastSegment returns the last path segment of a URI, which for CIMI ids
// laid out as <collection>/<id> is the resource's short id.
func LastSegment(href string) string {
	if u, err := url.Parse(href); err == nil && u.Path != "" {
		return path.Base(strings.TrimSuffix(u.Path, "/"))
	}
	return path.Base(href)
}

// PrefixOf returns the namespace of a type URI, for instance
// http://schemas.dmtf.org/cimi/1 for http://schemas.dmtf.org/cimi/1/Machine.
func PrefixOf(typeURI string) string {
	i := strings.LastIndex(typeURI, "/")
	if i <= 0 || !strings.Contains(typeURI, "://") {
		return DefaultPrefix
	}
	return typeURI[:i]
}

// Resource is any CIMI resource: the common attributes, decoded, plus every
// attribute in Attrs and the document as received in Raw.
type Resource struct {
	ResourceURI string            `json:"resourceURI"`
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Created     string            `json:"created"`
	Updated     string            `json:"updated"`
	State       string            `json:"state"`
	Properties  map[string]string `json:"properties"`
	Operations  Operations        `json:"operations"`

	Attrs map[string]any  `json:"-"`
	Raw   json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the common attributes and keeps all the others.
func (r *Resource) UnmarshalJSON(data []byte) error {
	type common Resource
	var c common
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&c.Attrs); err != nil {
		return err
	}
	c.Raw = append(json.RawMessage(nil), data...)
	*r = Resource(c)
	return nil
}

// String returns a string attribute, or "" if absent or not a string.
func (r *Resource) String(name string) string {
	s, _ := r.Attrs[name].(string)
	return s
}

// Int returns an integer attribute.
func (r *Resource) Int(name string) (int64, bool) {
	return asInt(r.Attrs[name])
}

// Href returns the href of a reference attribute.
func (r *Resource) Href(name string) string {
	return hrefOf(r.Attrs[name])
}

// Object returns a structured attribute, such as an inline
// machineConfig inside a template.
func (r *Resource) Object(name string) map[string]any {
	m, _ := r.Attrs[name].(map[string]any)
	return m
}

// Objects returns an array-of-structures attribute, such as the disks of a
// MachineConfiguration.
func (r *Resource) Objects(name string) []map[string]any {
	items, _ := r.Attrs[name].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Label names the resource for messages: its name if it has one, else its
// short id.
func (r *Resource) Label() string {
	if r.Name != "" {
		return fmt.Sprintf("%s (%s)", LastSegment(r.ID), r.Name)
	}
	return LastSegment(r.ID)
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			f, ferr := n.Float64()
			return int64(f), ferr == nil
		}
		return i, true
	case float64:
		return int64(n), true
	}
	return 0, false
}

func hrefOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["href"].(string)
	return s
}

// IntField reads an integer from a decoded structure.
func IntField(m map[string]any, name string) (int64, bool) {
	return asInt(m[name])
}

// Collection is a CIMI collection. Its members are found under the one
// array-valued key other than "operations", whatever its name.
type Collection struct {
	ResourceURI string
	ID          string
	Count       int
	MemberKey   string
	Members     []Resource
	Operations  Operations
	Raw         json.RawMessage
}

// UnmarshalJSON decodes a collection of any member type.
func (c *Collection) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	var head struct {
		ResourceURI string     `json:"resourceURI"`
		ID          string     `json:"id"`
		Count       int        `json:"count"`
		Operations  Operations `json:"operations"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	key, err := memberKey(fields)
	if err != nil {
		return err
	}
	*c = Collection{
		ResourceURI: head.ResourceURI,
		ID:          head.ID,
		Count:       head.Count,
		MemberKey:   key,
		Operations:  head.Operations,
		Raw:         append(json.RawMessage(nil), data...),
	}
	if key == "" {
		return nil
	}
	if err := json.Unmarshal(fields[key], &c.Members); err != nil {
		return fmt.Errorf("decoding %s: %w", key, err)
	}
	return nil
}

func memberKey(fields map[string]json.RawMessage) (string, error) {
	var keys []string
	for k, v := range fields {
		if k != "operations" && bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
			keys = append(keys, k)
		}
	}
	switch len(keys) {
	case 0:
		return "", nil
	case 1:
		return keys[0], nil
	}
	sort.Strings(keys)
	return "", fmt.Errorf("collection has several member arrays: %s", strings.Join(keys, ", "))
}

// Job states.
const (
	JobQueued   = "QUEUED"
	JobRunning  = "RUNNING"
	JobSuccess  = "SUCCESS"
	JobFailed   = "FAILED"
	JobStopping = "STOPPING"
	JobStopped  = "STOPPED"
)

// Job is the record of an asynchronous operation.
type Job struct {
	ResourceURI        string     `json:"resourceURI"`
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	Description        string     `json:"description"`
	Created            string     `json:"created"`
	Updated            string     `json:"updated"`
	State              string     `json:"state"`
	Action             string     `json:"action"`
	TargetResource     Ref        `json:"targetResource"`
	AffectedResources  []Ref      `json:"affectedResources"`
	Progress           int        `json:"progress"`
	ReturnCode         int        `json:"returnCode"`
	StatusMessage      string     `json:"statusMessage"`
	TimeOfStatusChange string     `json:"timeOfStatusChange"`
	Operations         Operations `json:"operations"`
}

// Done reports whether the job has reached a final state.
func (j *Job) Done() bool {
	switch j.State {
	case JobSuccess, JobFailed, JobStopped:
		return true
	}
	return false
}

// Succeeded reports whether the job finished successfully.
func (j *Job) Succeeded() bool { return j.State == JobSuccess }

// Label names the job for messages.
func (j *Job) Label() string {
	id := LastSegment(j.ID)
	if j.Name != "" {
		return fmt.Sprintf("job %s (%s)", id, j.Name)
	}
	return "job " + id
}

// CreatedResource returns the href of the resource a create job produced: the
// first affected resource that is not the job's target collection.
func (j *Job) CreatedResource() string {
	for _, r := range j.AffectedResources {
		if r.Href != "" && r.Href != j.TargetResource.Href {
			return r.Href
		}
	}
	return ""
}

// EntryPoint is the Cloud Entry Point.
type EntryPoint struct {
	ResourceURI string
	ID          string
	BaseURI     string
	// Collections maps each CEP key (machines, machineConfigs, jobs, …) to
	// the collection's href.
	Collections map[string]string
	Raw         json.RawMessage
}

// UnmarshalJSON treats every attribute holding a reference as a
// collection, so collections the client does not know are still listed.
func (e *EntryPoint) UnmarshalJSON(data []byte) error {
	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	str := func(k string) string { s, _ := fields[k].(string); return s }
	*e = EntryPoint{
		ResourceURI: str("resourceURI"),
		ID:          str("id"),
		BaseURI:     str("baseURI"),
		Collections: make(map[string]string),
		Raw:         append(json.RawMessage(nil), data...),
	}
	for k, v := range fields {
		if href := hrefOf(v); href != "" {
			e.Collections[k] = href
		}
	}
	return nil
}

// Prefix is the CIMI namespace the server speaks.
func (e *EntryPoint) Prefix() string { return PrefixOf(e.ResourceURI) }

// Keys returns the collection keys, sorted.
func (e *EntryPoint) Keys() []string {
	keys := make([]string, 0, len(e.Collections))
	for k := range e.Collections {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
