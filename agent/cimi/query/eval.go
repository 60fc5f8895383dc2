package query

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// op is a comparison operator.
type op int

const (
	opEQ op = iota
	opNE
	opLT
	opLE
	opGT
	opGE
)

var opNames = [...]string{opEQ: "=", opNE: "!=", opLT: "<", opLE: "<=", opGT: ">", opGE: ">="}

func (o op) String() string { return opNames[o] }

func (o op) ordering() bool { return o >= opLT }

// mirror returns the operator for the operands swapped: 3 < cpu is cpu > 3.
func (o op) mirror() op {
	switch o {
	case opLT:
		return opGT
	case opLE:
		return opGE
	case opGT:
		return opLT
	case opGE:
		return opLE
	}
	return o
}

// holds reports whether o accepts a comparison result c (-1, 0 or +1).
func (o op) holds(c int) bool {
	switch o {
	case opEQ:
		return c == 0
	case opNE:
		return c != 0
	case opLT:
		return c < 0
	case opLE:
		return c <= 0
	case opGT:
		return c > 0
	}
	return c >= 0
}

// node is a $filter expression over the JSON form of a document.
type node interface {
	eval(doc any) (bool, error)
}

// anyOf holds if one of its terms holds ("or").
type anyOf []node

func (n anyOf) eval(doc any) (bool, error) {
	for _, t := range n {
		if ok, err := t.eval(doc); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// allOf holds if all its terms hold ("and").
type allOf []node

func (n allOf) eval(doc any) (bool, error) {
	for _, t := range n {
		if ok, err := t.eval(doc); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

// comparison is attribute op value, with the attribute on the left.
type comparison struct {
	keys  []string
	attr  string // as written, for messages
	op    op
	value any // string, float64 or bool
	pos   int // of the operator, for evaluation errors
}

func (c *comparison) eval(doc any) (bool, error) {
	values := collect(doc, c.keys, nil)
	if c.op == opNE {
		for _, v := range values {
			if n, ok := compareValues(v, c.value); ok && n == 0 {
				return false, nil
			}
		}
		return len(values) > 0, nil
	}
	for _, v := range values {
		if _, ok := v.(bool); ok && c.op.ordering() {
			return false, &Error{Param: "$filter", Pos: c.pos,
				Msg: fmt.Sprintf("%s is a boolean: booleans only compare with = or !=, not '%s'", c.attr, c.op)}
		}
		if n, ok := compareValues(v, c.value); ok && c.op.holds(n) {
			return true, nil
		}
	}
	return false, nil
}

// collect appends to out the values found at keys in v, a JSON form. Arrays
// met on the way contribute each of their elements; nulls count as absent.
func collect(v any, keys []string, out []any) []any {
	switch x := v.(type) {
	case nil:
		return out
	case []any:
		for _, e := range x {
			out = collect(e, keys, out)
		}
		return out
	}
	if len(keys) == 0 {
		return append(out, v)
	}
	if m, ok := v.(map[string]any); ok {
		return collect(m[keys[0]], keys[1:], out)
	}
	return out
}

// compareValues orders two JSON scalars of the same type. Strings that both
// hold a dateTime compare as instants, other strings bytewise. ok is false
// for values of different types, or that are not scalars.
func compareValues(a, b any) (n int, ok bool) {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		if tx, ok := parseTime(x); ok {
			if ty, ok := parseTime(y); ok {
				return tx.Compare(ty), true
			}
		}
		return strings.Compare(x, y), true
	case float64:
		y, ok := b.(float64)
		return cmp.Compare(x, y), ok
	case bool:
		y, ok := b.(bool)
		return cmp.Compare(boolRank(x), boolRank(y)), ok
	}
	return 0, false
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// timeLayouts are the accepted lexical forms of xs:dateTime and xs:date.
// time.Parse takes fractional seconds after the seconds field without the
// layout asking for them. A missing UTC offset means UTC.
var timeLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02Z07:00",
	"2006-01-02",
}

func parseTime(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02") || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func isTime(s string) bool {
	_, ok := parseTime(s)
	return ok
}

// entry is a member being sorted, with its $orderby values (nil where the
// member lacks one).
type entry struct {
	index int
	keys  []any
}

func (q *Query) newEntry(index int, doc any) entry {
	e := entry{index: index}
	if q.orderBy != nil {
		e.keys = make([]any, len(q.orderBy))
		for i, k := range q.orderBy {
			e.keys[i] = sortValue(doc, k.keys)
		}
	}
	return e
}

// sortValue is the first value at keys, if it is a scalar. dateTimes are
// parsed once here, and sort before other strings, so that the order stays
// total when they are mixed.
func sortValue(doc any, keys []string) any {
	if values := collect(doc, keys, nil); len(values) > 0 {
		switch v := values[0].(type) {
		case string:
			if t, ok := parseTime(v); ok {
				return t
			}
			return v
		case float64, bool:
			return v
		}
	}
	return nil
}

// compareEntries orders members by the $orderby keys. Missing values go
// last in either direction; values of different types order by type, so
// that the order is total.
func (q *Query) compareEntries(a, b entry) int {
	for i, k := range q.orderBy {
		x, y := a.keys[i], b.keys[i]
		switch {
		case x == nil && y == nil:
			continue
		case x == nil:
			return 1
		case y == nil:
			return -1
		}
		var n int
		tx, xIsTime := x.(time.Time)
		ty, yIsTime := y.(time.Time)
		switch c, ok := compareValues(x, y); {
		case xIsTime && yIsTime:
			n = tx.Compare(ty)
		case ok:
			n = c
		default:
			n = cmp.Compare(typeRank(x), typeRank(y))
		}
		if k.desc {
			n = -n
		}
		if n != 0 {
			return n
		}
	}
	return 0
}

func typeRank(v any) int {
	switch v.(type) {
	case bool:
		return 0
	case float64:
		return 1
	case time.Time:
		return 2
	}
	return 3
}
