package cimi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Format is a wire representation.
type Format int

const (
	JSON Format = iota
	XML
)

// ContentType is the media type written for f.
func (f Format) ContentType() string {
	if f == XML {
		return "application/xml"
	}
	return "application/json"
}

func (f Format) String() string {
	if f == XML {
		return "xml"
	}
	return "json"
}

// ErrNotAcceptable means no format the client accepts is served.
var ErrNotAcceptable = errors.New("none of the media types in Accept is served: use application/json or application/xml")

// ErrUnsupportedMedia means the request body's media type is not understood.
var ErrUnsupportedMedia = errors.New("unsupported Content-Type: send application/json or application/xml")

// Negotiate picks the response format: a $format query value wins, then the
// Accept header (with q-values), then JSON.
func Negotiate(formatParam, accept string) (Format, error) {
	if formatParam != "" {
		switch strings.ToLower(strings.TrimSpace(formatParam)) {
		case "json":
			return JSON, nil
		case "xml":
			return XML, nil
		default:
			return JSON, fmt.Errorf("$format=%s: %w", formatParam, ErrNotAcceptable)
		}
	}
	if strings.TrimSpace(accept) == "" {
		return JSON, nil
	}
	best, bestQ, found := JSON, -1.0, false
	for i, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil {
				q = v
			}
		}
		if q <= 0 {
			continue
		}
		var f Format
		switch mt {
		case "application/json", "text/json":
			f = JSON
		case "application/xml", "text/xml":
			f = XML
		case "*/*", "application/*":
			f = JSON
			q -= 0.0001 // an explicit type of equal weight wins over a wildcard
		default:
			continue
		}
		// earlier entries win ties
		if q > bestQ || (q == bestQ && i == 0) {
			best, bestQ, found = f, q, true
		}
	}
	if !found {
		return JSON, ErrNotAcceptable
	}
	return best, nil
}

// BodyFormat tells how to parse a request body from its Content-Type. An
// absent Content-Type is sniffed from the first non-space byte.
func BodyFormat(contentType string, body []byte) (Format, error) {
	if strings.TrimSpace(contentType) == "" {
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) > 0 && trimmed[0] == '<' {
			return XML, nil
		}
		return JSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return JSON, fmt.Errorf("Content-Type %q: %w", contentType, ErrUnsupportedMedia)
	}
	switch {
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return JSON, nil
	case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
		return XML, nil
	}
	return JSON, fmt.Errorf("Content-Type %q: %w", contentType, ErrUnsupportedMedia)
}

// Encode writes v in format f. XML documents are rooted in the element named
// by v's XMLName field and placed in the CIMI namespace.
func Encode(w io.Writer, f Format, v any) error {
	if f == JSON {
		if c, ok := v.(*Collection); ok {
			return c.writeJSON(w)
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	root := xml.StartElement{
		Name: xml.Name{Local: rootName(v)},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: Namespace}},
	}
	if err := enc.EncodeElement(v, root); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// EncodeJSON returns v's JSON document as Encode writes it, a collection
// member included: what a Collection's MemberJSON holds.
func EncodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rootName reads the element name from the XMLName field's tag.
func rootName(v any) string {
	if _, ok := v.(*Collection); ok {
		return "Collection"
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if f, ok := t.FieldByName("XMLName"); ok {
		if name := strings.Fields(strings.Split(f.Tag.Get("xml"), ",")[0]); len(name) > 0 {
			return name[len(name)-1]
		}
	}
	return t.Name()
}

// ErrEmptyBody is returned for a request without a body.
var ErrEmptyBody = errors.New("request body is empty")

// SyntaxError describes a body that could not be parsed.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return e.Msg }

// Decode parses body in format f into v. Unknown JSON keys and unknown XML
// elements are rejected, naming the offender, as are XML elements of the
// wrong shape (see checkXMLShape) and anything after the document. XML is
// accepted with or without the CIMI namespace.
func Decode(body []byte, f Format, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return ErrEmptyBody
	}
	if f == JSON {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return &SyntaxError{Msg: "malformed JSON body: " + jsonErrorText(err)}
		}
		if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
			return &SyntaxError{Msg: "malformed JSON body: data after the top-level value"}
		}
		return nil
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	if err := dec.Decode(v); err != nil {
		return &SyntaxError{Msg: "malformed XML body: " + xmlErrorText(body, err)}
	}
	if name := firstExtra(reflect.ValueOf(v)); name != "" {
		return &SyntaxError{Msg: fmt.Sprintf("unknown attribute %q", name)}
	}
	return checkXMLShape(body, reflect.TypeOf(v))
}

// xmlErrorText says what was wrong in an XML body. encoding/xml reports a
// value of the wrong type by the strconv error alone; the element holding
// that value is then looked up, so that the message names it as the JSON
// decoder's does.
func xmlErrorText(body []byte, err error) string {
	var numErr *strconv.NumError
	if !errors.As(err, &numErr) {
		return err.Error()
	}
	kind := map[string]string{"ParseBool": "a boolean (true or false)", "ParseInt": "an integer",
		"ParseUint": "a non-negative integer", "ParseFloat": "a number"}[numErr.Func]
	if kind == "" {
		return err.Error()
	}
	if path := xmlElementWithText(body, numErr.Num); path != "" {
		return fmt.Sprintf("%s must be %s, not %q", path, kind, numErr.Num)
	}
	return fmt.Sprintf("%q is not %s", numErr.Num, kind)
}

// xmlElementWithText returns the path (below the root, dot-separated) of
// the first element whose trimmed text is text, or "".
func xmlElementWithText(body []byte, text string) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	var path []string
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			path = append(path, tok.Name.Local)
		case xml.EndElement:
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		case xml.CharData:
			if len(path) > 1 && strings.TrimSpace(string(tok)) == text {
				return strings.Join(path[1:], ".")
			}
		}
	}
}

func jsonErrorText(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "the document"
		}
		return fmt.Sprintf("%s must be %s, not %s", field, jsonKind(typeErr.Type), typeErr.Value)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown attribute " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return strings.TrimPrefix(msg, "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return t.String()
}

var extraType = reflect.TypeOf(Extra(nil))

// firstExtra finds the first unknown XML element collected anywhere in v.
func firstExtra(v reflect.Value) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() {
				continue
			}
			if f.Type() == extraType {
				if f.Len() > 0 {
					return f.Index(0).Field(0).Interface().(xml.Name).Local
				}
				continue
			}
			if name := firstExtra(f); name != "" {
				return name
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return ""
		}
		for i := 0; i < v.Len(); i++ {
			if name := firstExtra(v.Index(i)); name != "" {
				return name
			}
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Collection is a collection document. Its JSON member key and the XML
// element of each member vary with the member type.
type Collection struct {
	ResourceURI string
	ID          string
	Count       int
	MemberKey   string // JSON key of the member array, e.g. "machineConfigurations"
	Members     []any  // resource documents with an XMLName field
	// MemberJSON, when set, holds the members already encoded (by
	// EncodeJSON), in the order of Members: the JSON document is written
	// from them. It may stand alone where the members themselves are not
	// needed: not for XML, nor for a $select or $expand.
	MemberJSON [][]byte
	Operations []Operation
}

// SizeHint is about the size of the collection's JSON document when its
// members are already encoded, 0 otherwise.
func (c *Collection) SizeHint() int {
	n := 0
	for _, m := range c.MemberJSON {
		n += len(m) + 1
	}
	if n > 0 {
		n += 1024
	}
	return n
}

// MarshalJSON writes the collection with its attributes in a fixed order.
func (c *Collection) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	if err := c.writeJSON(&buf); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// writeJSON streams the collection member by member: a large collection
// is never held twice in memory nor re-validated as one value.
func (c *Collection) writeJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	field := func(first bool, key string, v any) error {
		if !first {
			bw.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		bw.Write(k)
		bw.WriteByte(':')
		return enc.Encode(v) // its trailing newline is valid JSON white space
	}
	bw.WriteByte('{')
	if err := field(true, "resourceURI", c.ResourceURI); err != nil {
		return err
	}
	if err := field(false, "id", c.ID); err != nil {
		return err
	}
	if err := field(false, "count", c.Count); err != nil {
		return err
	}
	switch {
	case len(c.MemberJSON) > 0:
		k, _ := json.Marshal(c.MemberKey)
		bw.WriteString(",")
		bw.Write(k)
		bw.WriteString(":[")
		for i, m := range c.MemberJSON {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.Write(m)
		}
		bw.WriteByte(']')
	case len(c.Members) > 0:
		k, _ := json.Marshal(c.MemberKey)
		bw.WriteString(",")
		bw.Write(k)
		bw.WriteString(":[")
		for i, m := range c.Members {
			if i > 0 {
				bw.WriteByte(',')
			}
			if err := enc.Encode(m); err != nil {
				return err
			}
		}
		bw.WriteByte(']')
	}
	if len(c.Operations) > 0 {
		if err := field(false, "operations", c.Operations); err != nil {
			return err
		}
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// MarshalXML writes <Collection resourceURI=""> with id, count, the members
// directly inside, then the operations, as CIMI 1.x does.
func (c *Collection) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	start.Name = xml.Name{Local: "Collection"}
	start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "resourceURI"}, Value: c.ResourceURI})
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	if err := e.EncodeElement(c.ID, xml.StartElement{Name: xml.Name{Local: "id"}}); err != nil {
		return err
	}
	if err := e.EncodeElement(c.Count, xml.StartElement{Name: xml.Name{Local: "count"}}); err != nil {
		return err
	}
	for _, m := range c.Members {
		if err := e.EncodeElement(m, xml.StartElement{Name: xml.Name{Local: rootName(m)}}); err != nil {
			return err
		}
	}
	for _, op := range c.Operations {
		if err := e.EncodeElement(op, xml.StartElement{Name: xml.Name{Local: "operation"}}); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// DecodeRequest decodes a request body like Decode and checks the document
// type: the XML root element, or the JSON resourceURI when one is given,
// must name one of types (e.g. "MachineCreate", "Machine"). Surrounding
// white space in the resourceURI is tolerated.
func DecodeRequest(body []byte, f Format, v any, types ...string) error {
	if err := Decode(body, f, v); err != nil {
		return err
	}
	rv := reflect.ValueOf(v).Elem()
	var got string
	if f == XML {
		if fv := rv.FieldByName("XMLName"); fv.IsValid() {
			got = fv.Interface().(xml.Name).Local
		}
	} else if fv := rv.FieldByName("ResourceURI"); fv.IsValid() {
		uri := strings.TrimSpace(fv.String())
		if uri == "" {
			return nil
		}
		got = strings.TrimPrefix(uri, Namespace+"/")
		if got == uri { // another namespace, e.g. cimi/2
			return &SyntaxError{Msg: fmt.Sprintf("resourceURI %q is not a CIMI 1 type: expected %s", uri, TypeURI(types[0]))}
		}
	}
	for _, t := range types {
		if got == t {
			return nil
		}
	}
	if f == XML {
		return &SyntaxError{Msg: fmt.Sprintf("root element <%s> is not accepted here: expected <%s>", got, strings.Join(types, "> or <"))}
	}
	return &SyntaxError{Msg: fmt.Sprintf("resourceURI %q is not accepted here: expected %s", TypeURI(got), TypeURI(types[0]))}
}
