package ovf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what a descriptor may cost to read. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// MaxDescriptorBytes caps the size of the descriptor as stored.
	MaxDescriptorBytes int64
	// MaxDepth caps element nesting.
	MaxDepth int
	// MaxElements caps the number of elements.
	MaxElements int
	// MaxStringBytes caps the length of one attribute value or one text node.
	MaxStringBytes int
	// MaxAttributes caps the number of attributes on one element.
	MaxAttributes int
}

// DefaultLimits are generous for every real descriptor (the largest known
// is about 0.5 MiB and less than 15 levels deep) and small enough to make
// hostile ones cheap to refuse.
var DefaultLimits = Limits{
	MaxDescriptorBytes: 16 << 20,
	MaxDepth:           64,
	MaxElements:        200_000,
	MaxStringBytes:     1 << 20,
	MaxAttributes:      256,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxDescriptorBytes > 0 {
		d.MaxDescriptorBytes = l.MaxDescriptorBytes
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxElements > 0 {
		d.MaxElements = l.MaxElements
	}
	if l.MaxStringBytes > 0 {
		d.MaxStringBytes = l.MaxStringBytes
	}
	if l.MaxAttributes > 0 {
		d.MaxAttributes = l.MaxAttributes
	}
	return d
}

// node is one element of a descriptor with namespaces resolved.
type node struct {
	name     xml.Name
	attrs    []xml.Attr
	children []*node
	text     string
	line     int
	// xsiType is the resolved QName of an xsi:type attribute, used by
	// OVF 0.9 and oVirt to name sections ("ovf:DiskSection_Type").
	xsiType xml.Name
}

// readLimited reads all of r, failing if it holds more than max bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read descriptor: %w", err)
	}
	if int64(len(data)) > max {
		return nil, unsafef(0, "descriptor is larger than %d bytes", max)
	}
	return data, nil
}

// decodeTree parses a descriptor into a tree of nodes, enforcing limits and
// refusing DOCTYPEs. It returns warnings about the encoding.
func decodeTree(data []byte, lim Limits) (*node, []string, error) {
	data, cs, err := toUTF8(data)
	if err != nil {
		return nil, nil, err
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.CharsetReader = cs.reader
	var (
		root     *node
		stack    []*node
		scopes   []map[string]string
		elements int
		text     strings.Builder
	)
	for {
		line, _ := dec.InputPos()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ue *unsupportedEncoding
			if errors.As(err, &ue) {
				return nil, nil, unsupportedf(line, "%s", ue.msg)
			}
			return nil, nil, invalidf(0, "malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, nil, unsafef(line, "descriptor contains a DOCTYPE or other XML directive; refused")
		case xml.StartElement:
			elements++
			if elements > lim.MaxElements {
				return nil, nil, unsafef(line, "descriptor has more than %d elements", lim.MaxElements)
			}
			if len(stack) >= lim.MaxDepth {
				return nil, nil, unsafef(line, "descriptor nests elements deeper than %d levels", lim.MaxDepth)
			}
			if len(t.Attr) > lim.MaxAttributes {
				return nil, nil, unsafef(line, "element %s has more than %d attributes", t.Name.Local, lim.MaxAttributes)
			}
			for _, a := range t.Attr {
				if len(a.Value) > lim.MaxStringBytes {
					return nil, nil, unsafef(line, "attribute %s of %s is longer than %d bytes", a.Name.Local, t.Name.Local, lim.MaxStringBytes)
				}
			}
			n := &node{name: t.Name, attrs: t.Copy().Attr, line: line}
			scopes = append(scopes, nsDecls(t.Attr))
			n.xsiType = resolveXSIType(t.Attr, scopes)
			if len(stack) == 0 {
				if root != nil {
					return nil, nil, invalidf(line, "malformed XML: more than one root element")
				}
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
			text.Reset()
		case xml.EndElement:
			n := stack[len(stack)-1]
			if len(n.children) == 0 {
				n.text = text.String()
			}
			stack = stack[:len(stack)-1]
			scopes = scopes[:len(scopes)-1]
			text.Reset()
		case xml.CharData:
			if len(stack) == 0 {
				continue
			}
			if text.Len()+len(t) > lim.MaxStringBytes {
				return nil, nil, unsafef(line, "text in %s is longer than %d bytes", stack[len(stack)-1].name.Local, lim.MaxStringBytes)
			}
			text.Write(t)
		}
	}
	if root == nil {
		return nil, nil, invalidf(0, "descriptor holds no XML element")
	}
	return root, cs.warnings, nil
}

// attr returns the value of the attribute with the given namespace and
// local name.
func (n *node) attr(space, local string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// trimmed returns the element's text without surrounding white space.
func (n *node) trimmed() string { return strings.TrimSpace(n.text) }

// nsDecls returns the namespace declarations among attrs, by prefix; the
// default namespace has the empty prefix.
func nsDecls(attrs []xml.Attr) map[string]string {
	var m map[string]string
	for _, a := range attrs {
		var prefix string
		switch {
		case a.Name.Space == "xmlns":
			prefix = a.Name.Local
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			prefix = ""
		default:
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[prefix] = a.Value
	}
	return m
}

// resolveXSIType resolves the QName value of an xsi:type attribute against
// the namespace declarations in scope.
func resolveXSIType(attrs []xml.Attr, scopes []map[string]string) xml.Name {
	for _, a := range attrs {
		if a.Name.Space != nsXSI || a.Name.Local != "type" {
			continue
		}
		prefix, local, ok := strings.Cut(strings.TrimSpace(a.Value), ":")
		if !ok {
			prefix, local = "", prefix
		}
		for i := len(scopes) - 1; i >= 0; i-- {
			if uri, ok := scopes[i][prefix]; ok {
				return xml.Name{Space: uri, Local: local}
			}
		}
		return xml.Name{Local: local}
	}
	return xml.Name{}
}
