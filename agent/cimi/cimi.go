// Package cimi holds the CIMI 1.1 wire model: resource and request types,
// URIs, and the JSON and XML codecs with content negotiation. It is pure
// data: no I/O beyond the readers and writers it is handed, no knowledge of
// the store or the hypervisor.
//
// One Go type describes each document for both formats. JSON documents carry
// a top-level "resourceURI"; XML documents are rooted in an element named
// after the resource, in the CIMI namespace, with 1.x conventions: maps as
// repeated <property key="k">v</property>, operations as repeated
// <operation rel="" href=""/>, collection members directly inside
// <Collection>.
package cimi

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"sort"
	"time"
)

// Namespace is the CIMI 1.x namespace and URI prefix.
const Namespace = "http://schemas.dmtf.org/cimi/1"

// SpecVersion is the version served in the CIMI-Specification-Version header.
const SpecVersion = "1.1.0"

// TypeURI names a resource type, e.g. TypeURI("Machine").
func TypeURI(name string) string { return Namespace + "/" + name }

// ActionURI names an action, e.g. ActionURI("start").
func ActionURI(name string) string { return Namespace + "/action/" + name }

// CapabilityURI names a capability of a resource type.
func CapabilityURI(resource, name string) string {
	return Namespace + "/capability/" + resource + "/" + name
}

// Core operation rels.
const (
	RelAdd    = "add"
	RelEdit   = "edit"
	RelDelete = "delete"
)

// Ref is a reference to another resource. When Expanded is set (by
// $expand) the referenced document is written inline beside the href.
type Ref struct {
	Href     string         `json:"href" xml:"href,attr"`
	Expanded map[string]any `json:"-" xml:"-"`
}

// MarshalJSON writes {"href": ...}, merged with the expanded document.
func (r Ref) MarshalJSON() ([]byte, error) {
	if r.Expanded == nil {
		return appendHrefJSON(make([]byte, 0, len(r.Href)+12), r.Href), nil
	}
	m := make(map[string]any, len(r.Expanded)+1)
	for k, v := range r.Expanded {
		if k != "resourceURI" {
			m[k] = v
		}
	}
	m["href"] = r.Href
	return json.Marshal(m)
}

// MarshalXML writes <name href="..."/>, with the expanded document's
// attributes as child elements.
func (r Ref) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "href"}, Value: r.Href})
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for _, k := range sortedAnyKeys(r.Expanded) {
		if k == "resourceURI" || k == "href" {
			continue
		}
		if err := encodeValueXML(e, k, r.Expanded[k]); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// encodeValueXML writes a generic JSON value as XML elements named name:
// objects nest, arrays repeat the element.
func encodeValueXML(e *xml.Encoder, name string, v any) error {
	switch val := v.(type) {
	case []any:
		for _, item := range val {
			if err := encodeValueXML(e, name, item); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		start := xml.StartElement{Name: xml.Name{Local: name}}
		if href, ok := val["href"].(string); ok {
			start.Attr = []xml.Attr{{Name: xml.Name{Local: "href"}, Value: href}}
		}
		if err := e.EncodeToken(start); err != nil {
			return err
		}
		for _, k := range sortedAnyKeys(val) {
			if k == "href" || k == "resourceURI" {
				continue
			}
			if err := encodeValueXML(e, k, val[k]); err != nil {
				return err
			}
		}
		return e.EncodeToken(start.End())
	case nil:
		return nil
	default:
		return e.EncodeElement(fmt.Sprint(val), xml.StartElement{Name: xml.Name{Local: name}})
	}
}

func sortedAnyKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NewRef returns a reference, or nil for an empty href.
func NewRef(href string) *Ref {
	if href == "" {
		return nil
	}
	return &Ref{Href: href}
}

// Operation is one entry of a resource's operations list.
type Operation struct {
	Rel  string `json:"rel" xml:"rel,attr"`
	Href string `json:"href" xml:"href,attr"`
}

// Properties is the consumer-owned string map every resource carries.
// In XML it is a sequence of <property key="k">v</property> elements.
type Properties map[string]string

// MarshalXML writes one <property> element per entry, in key order.
func (p Properties) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	for _, k := range sortedKeys(p) {
		el := xml.StartElement{Name: start.Name, Attr: []xml.Attr{{Name: xml.Name{Local: "key"}, Value: k}}}
		if err := e.EncodeElement(p[k], el); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalXML adds one <property> element to the map.
func (p *Properties) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var v struct {
		Key   string `xml:"key,attr"`
		Value string `xml:",chardata"`
	}
	if err := d.DecodeElement(&v, &start); err != nil {
		return err
	}
	if *p == nil {
		*p = Properties{}
	}
	(*p)[v.Key] = v.Value
	return nil
}

// Extra collects XML elements a request type does not define, so that the
// decoder can reject unknown attributes as the standard requires.
type Extra []struct {
	XMLName xml.Name
}

// Common holds the attributes shared by every resource.
type Common struct {
	ResourceURI string     `json:"resourceURI" xml:"-"`
	ID          string     `json:"id,omitempty" xml:"id,omitempty"`
	Name        string     `json:"name,omitempty" xml:"name,omitempty"`
	Description string     `json:"description,omitempty" xml:"description,omitempty"`
	Created     *time.Time `json:"created,omitempty" xml:"created,omitempty"`
	Updated     *time.Time `json:"updated,omitempty" xml:"updated,omitempty"`
	Properties  Properties `json:"properties,omitempty" xml:"property,omitempty"`
}

// InputCommon holds the common attributes a request may carry for the
// resource it creates or describes by value; the agent sets the rest.
type InputCommon struct {
	ResourceURI string     `json:"resourceURI,omitempty" xml:"-"`
	ID          string     `json:"id,omitempty" xml:"id,omitempty"`
	Name        string     `json:"name,omitempty" xml:"name,omitempty"`
	Description string     `json:"description,omitempty" xml:"description,omitempty"`
	Properties  Properties `json:"properties,omitempty" xml:"property,omitempty"`
}

// TimePtr returns a pointer to t in UTC, or nil for the zero time.
func TimePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Millisecond)
	return &u
}

// ExtNamespace is the namespace of the attributes and capabilities this
// provider adds to the standard.
const ExtNamespace = "urn:x-cimid:1"

// appendHrefJSON appends {"href":"..."} with the JSON string escapes.
func appendHrefJSON(b []byte, href string) []byte {
	b = append(b, `{"href":"`...)
	for i := 0; i < len(href); i++ {
		c := href[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, c)...)
		default:
			b = append(b, c) // UTF-8 passes through unchanged
		}
	}
	return append(b, `"}`...)
}
