// Package query owns the CIMI query parameters of a read: it parses $filter,
// $orderby, $first, $last, $select and $expand from a request URI, filters,
// sorts and pages a collection's members, and trims a document to the
// selected attributes. $expand is only parsed: inlining references needs the
// store, so the caller does it. $format belongs to content negotiation
// (package cimi) and is ignored here. The package is pure: no I/O, and no
// knowledge of HTTP beyond url.Values.
//
// Each parameter is read from its first occurrence; parameters this package
// does not know are ignored. An empty $filter, $orderby, $first, $last or
// $select counts as absent; an empty $expand means all references.
//
// # $filter
//
// The grammar is the standard one, extended with nested paths and ordering
// on strings:
//
//	filter     = and { "or" and }
//	and        = primary { "and" primary }
//	primary    = "(" filter ")" | attribute op value | value op attribute
//	op         = "=" | "!=" | "<" | "<=" | ">" | ">="
//	attribute  = step { "/" step }
//	step       = name [ "[" string "]" ]
//	value      = string | integer | "true" | "false"
//
// Names are [A-Za-z_][A-Za-z0-9_]*. "and", "or", "true" and "false" are
// lower case. A string is quoted with ' or "; inside it the quote is written
// doubled or escaped with a backslash, \\ is a backslash, and any other
// backslash stands for itself:
//
//	name='it''s'    name='it\'s'    name="say \"hi\""    name='C:\dir'
//
// Integers are decimal, optionally negative. dateTime values are written as
// strings ('2026-01-02T03:04:05Z', or an xs:date such as '2026-01-02',
// meaning midnight UTC); they compare as instants when the attribute holds a
// dateTime.
//
// A step may address a key of a map attribute: property['k'] and
// properties['k'] both read key k of the properties map, whose values are
// strings. Nested paths such as machineConfig/cpu or targetResource/href
// read sub-attributes; a path that crosses an array holds if it holds for
// some element, and != holds if no element is equal.
//
// Numbers and strings allow all six operators; booleans allow only = and !=,
// so an ordering against a boolean is an error. A comparison on an attribute
// the document lacks is false, whatever the operator. Values of different
// types are never equal and never ordered.
//
// # $orderby
//
// A comma-separated list of attributes (same path syntax), each optionally
// followed by ":asc", ":desc", " asc" or " desc". Sorting is stable; strings
// compare bytewise, dateTimes as instants, false sorts before true, and
// documents lacking the attribute sort last in either direction.
//
// # $first, $last
//
// 1-based inclusive ordinals into the filtered, sorted members. Either may be
// left out; a range beyond the members yields an empty page, never an error.
//
// # $select, $expand
//
// Comma-separated attribute names, or "*" for all. Names may be paths
// (disks/name); Select keeps the whole top-level attribute they start with.
package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error reports a malformed or inapplicable query parameter; it calls for a
// 400 Bad Request.
type Error struct {
	Param string // the parameter, e.g. "$filter"
	Pos   int    // 1-based character position in the parameter's value; 0 if none applies
	Msg   string
}

func (e *Error) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("%s: position %d: %s", e.Param, e.Pos, e.Msg)
	}
	return e.Param + ": " + e.Msg
}

// Query holds parsed query parameters. A nil *Query is valid and stands for
// a request without any.
type Query struct {
	filter  node      // nil without $filter
	orderBy []sortKey // nil without $orderby
	first   int       // 0 without $first
	last    int       // 0 without $last
	sel     nameList
	expand  nameList
}

// nameList is a parsed $select or $expand.
type nameList struct {
	given bool
	all   bool     // "*" was listed
	list  []string // the other names as written, without duplicates
}

// Parse reads the query parameters from v.
func Parse(v url.Values) (*Query, error) {
	q := new(Query)
	var err error
	if s, ok := param(v, "$filter"); ok && !blank(s) {
		if q.filter, err = parseFilter(s); err != nil {
			return nil, err
		}
	}
	if s, ok := param(v, "$orderby"); ok && !blank(s) {
		if q.orderBy, err = parseOrderBy(s); err != nil {
			return nil, err
		}
	}
	if s, ok := param(v, "$first"); ok {
		if q.first, err = parseOrdinal("$first", s); err != nil {
			return nil, err
		}
	}
	if s, ok := param(v, "$last"); ok {
		if q.last, err = parseOrdinal("$last", s); err != nil {
			return nil, err
		}
	}
	if s, ok := param(v, "$select"); ok && !blank(s) {
		if q.sel, err = parseNames("$select", s); err != nil {
			return nil, err
		}
	}
	if s, ok := param(v, "$expand"); ok {
		if blank(s) {
			q.expand = nameList{given: true, all: true}
		} else if q.expand, err = parseNames("$expand", s); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// param returns the first value of the named parameter.
func param(v url.Values, name string) (string, bool) {
	vals := v[name]
	if len(vals) == 0 {
		return "", false
	}
	return vals[0], true
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// parseOrdinal reads $first or $last: a positive integer, or nothing. Values
// too large for an int are clamped, since they only ever mean "past the end".
func parseOrdinal(name, s string) (int, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	pos := utf8.RuneCountInString(s[:strings.Index(s, t)]) + 1
	n, err := strconv.Atoi(t)
	switch {
	case errors.Is(err, strconv.ErrRange) && t[0] != '-':
		n = math.MaxInt
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return 0, &Error{Param: name, Pos: pos, Msg: fmt.Sprintf("expected a positive integer, found %q", t)}
	case err != nil || n < 1:
		return 0, &Error{Param: name, Pos: pos, Msg: fmt.Sprintf("must be at least 1 (members count from 1), found %s", t)}
	}
	return n, nil
}

// Empty reports whether none of the parameters this package owns was given.
func (q *Query) Empty() bool {
	return q == nil || q.filter == nil && q.orderBy == nil && q.first == 0 && q.last == 0 &&
		!q.sel.given && !q.expand.given
}

// Reshapes tells whether the query changes the members' documents
// ($select other than *, or $expand), beyond choosing, ordering and
// paging them.
func (q *Query) Reshapes() bool {
	return q != nil && (q.sel.given && !q.sel.all || q.expand.given)
}

// Expand returns the parsed $expand: all is true for "*" or an empty value;
// otherwise attrs lists the names given. Without $expand both are zero.
func (q *Query) Expand() (all bool, attrs []string) {
	if q == nil {
		return false, nil
	}
	return q.expand.all, slices.Clone(q.expand.list)
}

// Selection returns the parsed $select, for callers that need the names
// themselves (a partial update, collection-level attributes): all is true
// when "*" was listed; otherwise attrs lists the names given. Without
// $select both are zero.
func (q *Query) Selection() (all bool, attrs []string) {
	if q == nil {
		return false, nil
	}
	return q.sel.all, slices.Clone(q.sel.list)
}

// Apply filters members, sorts them and cuts out the requested page. The
// members are pointers to resource documents and are evaluated through
// their JSON form. count is the number of members that pass the filter,
// before paging. members itself is left untouched.
func (q *Query) Apply(members []any) (count int, page []any, err error) {
	count, kept, err := q.apply(len(members), func(i int) ([]byte, error) { return json.Marshal(members[i]) })
	if err != nil {
		return 0, nil, err
	}
	return count, pick(members, kept), nil
}

// ApplyJSON is Apply for members whose JSON documents are at hand: docs[i]
// is the JSON of members[i]. It also returns the documents of the page.
// members may be nil when only the documents are wanted.
func (q *Query) ApplyJSON(members []any, docs [][]byte) (count int, page []any, pageDocs [][]byte, err error) {
	if members != nil && len(docs) != len(members) {
		return 0, nil, nil, fmt.Errorf("query: %d documents for %d members", len(docs), len(members))
	}
	count, kept, err := q.apply(len(docs), func(i int) ([]byte, error) { return docs[i], nil })
	if err != nil {
		return 0, nil, nil, err
	}
	return count, pick(members, kept), pick(docs, kept), nil
}

// apply filters, sorts and pages n members, read through doc, their JSON
// documents; it returns the number that pass the filter and the indexes
// of the page, in order.
func (q *Query) apply(n int, doc func(i int) ([]byte, error)) (count int, page []int, err error) {
	kept := make([]int, 0, n)
	if q != nil && (q.filter != nil || q.orderBy != nil) {
		roots := q.roots()
		entries := make([]entry, 0, n)
		for i := 0; i < n; i++ {
			b, err := doc(i)
			if err != nil {
				return 0, nil, fmt.Errorf("query: member %d: %w", i, err)
			}
			v, err := view(b, roots)
			if err != nil {
				return 0, nil, fmt.Errorf("query: member %d: %w", i, err)
			}
			if q.filter != nil {
				ok, err := q.filter.eval(v)
				if err != nil {
					return 0, nil, err
				}
				if !ok {
					continue
				}
			}
			entries = append(entries, q.newEntry(i, v))
		}
		if q.orderBy != nil {
			slices.SortStableFunc(entries, q.compareEntries)
		}
		for _, e := range entries {
			kept = append(kept, e.index)
		}
	} else {
		for i := 0; i < n; i++ {
			kept = append(kept, i)
		}
	}
	return len(kept), q.page(kept), nil
}

func pick[T any](from []T, indexes []int) []T {
	if len(indexes) == 0 || from == nil {
		return nil
	}
	out := make([]T, len(indexes))
	for i, j := range indexes {
		out[i] = from[j]
	}
	return out
}

// page cuts the $first..$last range out of indexes.
func (q *Query) page(indexes []int) []int {
	first, last := 1, len(indexes)
	if q != nil && q.first > 0 {
		first = q.first
	}
	if q != nil && q.last > 0 && q.last < last {
		last = q.last
	}
	if first > last {
		return nil
	}
	return indexes[first-1 : last]
}

// roots are the attributes at the document root that $filter and
// $orderby read.
func (q *Query) roots() map[string]bool {
	roots := map[string]bool{}
	var walk func(n node)
	walk = func(n node) {
		switch n := n.(type) {
		case anyOf:
			for _, t := range n {
				walk(t)
			}
		case allOf:
			for _, t := range n {
				walk(t)
			}
		case *comparison:
			if len(n.keys) > 0 {
				roots[n.keys[0]] = true
			}
		}
	}
	if q.filter != nil {
		walk(q.filter)
	}
	for _, k := range q.orderBy {
		if len(k.keys) > 0 {
			roots[k.keys[0]] = true
		}
	}
	return roots
}
