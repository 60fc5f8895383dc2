package cimi

import (
	"bytes"
	"encoding"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

var (
	propertiesType      = reflect.TypeOf(Properties(nil))
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	xmlUnmarshalerType  = reflect.TypeOf((*xml.Unmarshaler)(nil)).Elem()
)

// checkXMLShape walks an XML body that decoded into a value of type t and
// reports what encoding/xml passes over without a word: child elements
// where a value (text, number, boolean, time, property) belongs, text where
// a structure belongs, unknown elements in a structure that has no field
// to collect them, and text or a second element outside the root element.
// Without it <cpu><x/>1</cpu> would pass as 1, <name><first>a</first></name>
// as "", and <volumeConfig>big</volumeConfig> as a configuration with
// every attribute left out.
func checkXMLShape(body []byte, t reflect.Type) error {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	root := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) && root {
			return nil
		}
		if err != nil {
			// Decode parsed the same bytes, so this is not expected.
			return &SyntaxError{Msg: "malformed XML body: " + err.Error()}
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root {
				return &SyntaxError{Msg: fmt.Sprintf("malformed XML body: element <%s> after the root element", tok.Name.Local)}
			}
			root = true
			if err := checkElement(dec, tok, t); err != nil {
				var syntax *SyntaxError
				if errors.As(err, &syntax) {
					return syntax
				}
				return &SyntaxError{Msg: "malformed XML body: " + err.Error()}
			}
		case xml.CharData:
			// a byte order mark may open the document
			if len(bytes.TrimSpace(bytes.TrimPrefix(tok, []byte("\uFEFF")))) > 0 {
				return &SyntaxError{Msg: fmt.Sprintf("malformed XML body: text %q outside the root element", shorten(string(tok)))}
			}
		}
	}
}

// checkElement consumes the element opened by start, whose content the
// decoder stored in a value of type t.
func checkElement(dec *xml.Decoder, start xml.StartElement, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == propertiesType || reflect.PointerTo(t).Implements(textUnmarshalerType):
		return checkValue(dec, start)
	case reflect.PointerTo(t).Implements(xmlUnmarshalerType):
		return dec.Skip() // the type reads its own content
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		return checkElement(dec, start, t.Elem()) // one element per item
	case t.Kind() == reflect.Struct:
		return checkStruct(dec, start, t)
	}
	return checkValue(dec, start)
}

// checkStruct consumes an element decoded into struct type t.
func checkStruct(dec *xml.Decoder, start xml.StartElement, t reflect.Type) error {
	fields, open, text := elementFields(t)
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			ft, ok := fields[tok.Name.Local]
			switch {
			case ok:
				if err := checkElement(dec, tok, ft); err != nil {
					return err
				}
			case open:
				// collected in Extra, which Decode reports by name
				if err := dec.Skip(); err != nil {
					return err
				}
			default:
				return &SyntaxError{Msg: fmt.Sprintf("unknown attribute %q in <%s>", tok.Name.Local, start.Name.Local)}
			}
		case xml.CharData:
			if !text && len(bytes.TrimSpace(tok)) > 0 {
				return &SyntaxError{Msg: fmt.Sprintf("<%s> must hold elements, not the text %q", start.Name.Local, shorten(string(tok)))}
			}
		case xml.EndElement:
			return nil
		}
	}
}

// checkValue consumes an element that must hold only text.
func checkValue(dec *xml.Decoder, start xml.StartElement) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return &SyntaxError{Msg: fmt.Sprintf("<%s> must hold a value, not the element <%s>", start.Name.Local, tok.Name.Local)}
		case xml.EndElement:
			return nil
		}
	}
}

// elementFields maps the child element names of struct type t to the types
// of the fields that receive them, looking into embedded structs the way
// encoding/xml does. open tells whether t collects unknown elements in an
// ",any" field, text whether it keeps its character data.
func elementFields(t reflect.Type) (fields map[string]reflect.Type, open, text bool) {
	fields = map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("xml")
		if tag == "-" || f.Name == "XMLName" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			embedded, embeddedOpen, embeddedText := elementFields(f.Type)
			for k, v := range embedded {
				if _, ok := fields[k]; !ok {
					fields[k] = v
				}
			}
			open, text = open || embeddedOpen, text || embeddedText
			continue
		}
		flags := "," + opts + ","
		open = open || strings.Contains(flags, ",any,")
		text = text || strings.Contains(flags, ",chardata,") || strings.Contains(flags, ",innerxml,")
		if !f.IsExported() || opts != "" && opts != "omitempty" {
			continue // attributes, character data, ",any" and the like
		}
		if name == "" {
			name = f.Name
		}
		if i := strings.LastIndexByte(name, ' '); i >= 0 {
			name = name[i+1:] // "namespace local"
		}
		fields[name] = f.Type
	}
	return fields, open, text
}

// shorten cuts s for an error message.
func shorten(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= 40 {
		return s
	}
	cut := 40
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
