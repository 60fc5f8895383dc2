package query

import (
	"fmt"
	"reflect"
	"strings"
)

// alwaysSelected are the attributes $select never removes.
var alwaysSelected = map[string]bool{"resourceURI": true, "id": true}

// Select trims doc, a pointer to a resource struct, to the attributes named
// by $select: every exported field whose JSON name is not selected is set to
// its zero value, looking into embedded structs such as cimi.Common the way
// encoding/json does. resourceURI and id are always kept; operations only
// when named or with "*". Fields tagged json:"-" (XMLName, Extra) are not
// attributes and are left alone. Since omitted attributes are zero values,
// the document then encodes the same selection in JSON and XML, except for
// attributes the wire model always writes (no omitempty), which show their
// zero value.
//
// Without $select, or with "*", doc is unchanged. Names that are not
// attributes of doc are ignored.
func (q *Query) Select(doc any) error {
	if q == nil || !q.sel.given || q.sel.all {
		return nil
	}
	v := reflect.ValueOf(doc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("query: Select needs a non-nil pointer to a struct, not %T", doc)
	}
	keep := make(map[string]bool, len(q.sel.list)+len(alwaysSelected))
	for name := range alwaysSelected {
		keep[name] = true
	}
	for _, name := range q.sel.list {
		top, _, _ := strings.Cut(name, "/")
		keep[top] = true
	}
	prune(v.Elem(), keep)
	return nil
}

// prune zeroes the fields of struct v whose JSON names are not in keep.
func prune(v reflect.Value, keep map[string]bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, promoted := jsonName(f)
		fv := v.Field(i)
		switch {
		case name == "-":
		case promoted:
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			prune(fv, keep)
		case !f.IsExported() || keep[name]:
		case fv.CanSet():
			fv.SetZero()
		}
	}
}

// jsonName returns the name encoding/json gives field f: "-" for an ignored
// field, or promoted=true for an untagged embedded struct whose fields are
// promoted into the parent.
func jsonName(f reflect.StructField) (name string, promoted bool) {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "-", false
	}
	name, _, _ = strings.Cut(tag, ",")
	if name != "" {
		return name, false
	}
	if f.Anonymous {
		t := f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Struct {
			return "", true
		}
	}
	return f.Name, false
}
