package query

import (
	"fmt"
	"slices"
	"strings"
)

// parser is a recursive-descent parser over a lexer, with one token of
// lookahead. Every syntax error goes through unexpected or errorf, so that
// a lexical error met on the way is the one reported.
type parser struct {
	lex     lexer
	tok     token
	prevEnd int // end of the token before tok
}

func newParser(param, src string) *parser {
	p := &parser{lex: lexer{param: param, src: src}}
	p.next()
	return p
}

func (p *parser) next() {
	p.prevEnd = p.tok.end
	p.tok = p.lex.next()
}

func (p *parser) isPunct(s string) bool { return p.tok.kind == tokPunct && p.tok.text == s }

func (p *parser) isKeyword(word string) bool { return p.tok.kind == tokIdent && p.tok.text == word }

func (p *parser) errorf(off int, format string, args ...any) *Error {
	return p.lex.errorf(off, format, args...)
}

// unexpected reports that the current token is not what the grammar wants
// here, naming the token unless it is the end of the text.
func (p *parser) unexpected(format string, args ...any) *Error {
	if p.tok.kind == tokError {
		return p.tok.err
	}
	msg := fmt.Sprintf(format, args...)
	if p.tok.kind != tokEOF {
		msg += ", found " + p.tok.describe(p.lex.src)
	}
	return p.errorf(p.tok.off, "%s", msg)
}

// attribute is a parsed attribute path.
type attribute struct {
	keys     []string // JSON keys from the document root
	text     string   // as written, for messages
	property bool     // ends in a key of the properties map
}

// attribute parses step { "/" step }, step = name [ "[" string "]" ]. The
// current token is a name.
func (p *parser) attribute() (attribute, error) {
	start := p.tok.off
	var a attribute
	for {
		if p.tok.kind != tokIdent {
			return a, p.unexpected("expected an attribute name after '/'")
		}
		name := p.tok.text
		p.next()
		a.property = false
		if p.isPunct("[") {
			if name == "property" {
				name = "properties"
			}
			p.next()
			if p.tok.kind != tokString {
				return a, p.unexpected("expected a quoted key after '['")
			}
			key := p.tok.text
			p.next()
			if !p.isPunct("]") {
				return a, p.unexpected("expected ']' after the key")
			}
			p.next()
			a.keys = append(a.keys, name, key)
			a.property = name == "properties"
		} else {
			a.keys = append(a.keys, name)
		}
		if !p.isPunct("/") {
			break
		}
		p.next()
	}
	a.text = p.lex.src[start:p.prevEnd]
	return a, nil
}

// maxDepth bounds the nesting of parentheses in $filter.
const maxDepth = 64

func parseFilter(src string) (node, error) {
	p := newParser("$filter", src)
	n, err := p.or(0, "")
	if err != nil {
		return nil, err
	}
	switch {
	case p.tok.kind == tokEOF:
		return n, nil
	case p.isPunct(")"):
		return nil, p.errorf(p.tok.off, "unexpected ')' without a matching '('")
	}
	return nil, p.unexpected("expected 'and', 'or' or the end of the filter")
}

// or parses and { "or" and }. after tells what precedes, for messages.
func (p *parser) or(depth int, after string) (node, error) {
	n, err := p.and(depth, after)
	if err != nil {
		return nil, err
	}
	terms := []node{n}
	for p.isKeyword("or") {
		p.next()
		if n, err = p.and(depth, " after 'or'"); err != nil {
			return nil, err
		}
		terms = append(terms, n)
	}
	if len(terms) == 1 {
		return n, nil
	}
	return anyOf(terms), nil
}

// and parses primary { "and" primary }.
func (p *parser) and(depth int, after string) (node, error) {
	n, err := p.primary(depth, after)
	if err != nil {
		return nil, err
	}
	terms := []node{n}
	for p.isKeyword("and") {
		p.next()
		if n, err = p.primary(depth, " after 'and'"); err != nil {
			return nil, err
		}
		terms = append(terms, n)
	}
	if len(terms) == 1 {
		return n, nil
	}
	return allOf(terms), nil
}

// primary parses "(" filter ")" or a comparison.
func (p *parser) primary(depth int, after string) (node, error) {
	if !p.isPunct("(") {
		return p.comparison(after)
	}
	open := p.tok.off
	if depth == maxDepth {
		return nil, p.errorf(open, "parentheses nested deeper than %d", maxDepth)
	}
	p.next()
	n, err := p.or(depth+1, " after '('")
	if err != nil {
		return nil, err
	}
	switch {
	case p.isPunct(")"):
		p.next()
		return n, nil
	case p.tok.kind == tokEOF:
		return nil, p.errorf(p.tok.off, "missing ')' to close the '(' at position %d", p.lex.pos(open))
	}
	return nil, p.unexpected("expected 'and', 'or' or ')'")
}

// operand is one side of a comparison: an attribute or a value.
type operand struct {
	attr  *attribute
	value any // string, float64 or bool, as in a JSON document
	off   int
	text  string
}

// literalNames are the names that are values rather than attributes.
var literalNames = map[string]bool{"true": true, "false": true}

func (p *parser) atAttribute() bool {
	return p.tok.kind == tokIdent && !literalNames[p.tok.text] && !p.isKeyword("and") && !p.isKeyword("or")
}

func (p *parser) atValue() bool {
	return p.tok.kind == tokString || p.tok.kind == tokInt || p.tok.kind == tokIdent && literalNames[p.tok.text]
}

func (p *parser) operand() (operand, error) {
	o := operand{off: p.tok.off}
	switch {
	case p.atAttribute():
		a, err := p.attribute()
		if err != nil {
			return o, err
		}
		o.attr, o.text = &a, a.text
		return o, nil
	case p.tok.kind == tokString:
		o.value = p.tok.text
	case p.tok.kind == tokInt:
		o.value = float64(p.tok.num)
	default:
		o.value = p.tok.text == "true"
	}
	o.text = p.lex.src[p.tok.off:p.tok.end]
	p.next()
	return o, nil
}

// comparison parses attribute op value, or value op attribute.
func (p *parser) comparison(after string) (node, error) {
	if !p.atAttribute() && !p.atValue() {
		return nil, p.unexpected("expected a comparison%s", after)
	}
	left, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokOp {
		return nil, p.unexpected("expected an operator (=, !=, <, <=, >, >=) after %s", left.text)
	}
	opTok := p.tok
	p.next()
	switch {
	case left.attr != nil && p.atAttribute():
		return nil, p.errorf(p.tok.off, "expected a value after '%s', found %s: quote strings, as in '%s'",
			opTok.text, p.tok.text, p.tok.text)
	case left.attr != nil && !p.atValue():
		return nil, p.unexpected("expected a value after '%s'", opTok.text)
	case left.attr == nil && !p.atAttribute():
		return nil, p.unexpected("expected an attribute after '%s' (one side of a comparison must be an attribute)", opTok.text)
	}
	right, err := p.operand()
	if err != nil {
		return nil, err
	}

	attr, val, o := left, right, opTok.op
	if attr.attr == nil {
		attr, val, o = right, left, o.mirror()
	}
	if _, ok := val.value.(bool); ok && o.ordering() {
		return nil, p.errorf(opTok.off, "booleans only compare with = or !=, not '%s'", opTok.text)
	}
	if _, ok := val.value.(string); attr.attr.property && !ok {
		return nil, p.errorf(val.off, "property values are strings: quote %s", val.text)
	}
	return &comparison{
		keys:  attr.attr.keys,
		attr:  attr.text,
		op:    o,
		value: val.value,
		pos:   p.lex.pos(opTok.off),
	}, nil
}

// sortKey is one attribute of $orderby.
type sortKey struct {
	keys []string
	desc bool
}

// parseOrderBy parses attribute [ (":" | " ") ("asc" | "desc") ] { "," ... }.
// Empty items are skipped.
func parseOrderBy(src string) ([]sortKey, error) {
	p := newParser("$orderby", src)
	var keys []sortKey
	for {
		for p.isPunct(",") {
			p.next()
		}
		if p.tok.kind == tokEOF {
			return keys, nil
		}
		if p.tok.kind != tokIdent {
			return nil, p.unexpected("expected an attribute name")
		}
		a, err := p.attribute()
		if err != nil {
			return nil, err
		}
		key := sortKey{keys: a.keys}
		colon := p.isPunct(":")
		if colon {
			p.next()
			if p.tok.kind != tokIdent {
				return nil, p.unexpected("expected asc or desc after ':'")
			}
		}
		if p.tok.kind == tokIdent {
			switch strings.ToLower(p.tok.text) {
			case "asc":
			case "desc":
				key.desc = true
			default:
				return nil, p.errorf(p.tok.off, "unknown sort order %s: use asc or desc", p.tok.text)
			}
			p.next()
		}
		keys = append(keys, key)
		if p.tok.kind != tokEOF && !p.isPunct(",") {
			return nil, p.unexpected("expected ',' or the end of $orderby")
		}
	}
}

// parseNames parses the list of $select or $expand: items are "*" or
// name { "/" name }, separated by commas; empty items are skipped.
func parseNames(param, src string) (nameList, error) {
	p := newParser(param, src)
	l := nameList{given: true}
	for {
		for p.isPunct(",") {
			p.next()
		}
		if p.tok.kind == tokEOF {
			return l, nil
		}
		switch {
		case p.isPunct("*"):
			l.all = true
			p.next()
		case p.tok.kind == tokIdent:
			steps := []string{p.tok.text}
			p.next()
			for p.isPunct("/") {
				p.next()
				if p.tok.kind != tokIdent {
					return nameList{}, p.unexpected("expected an attribute name after '/'")
				}
				steps = append(steps, p.tok.text)
				p.next()
			}
			if name := strings.Join(steps, "/"); !slices.Contains(l.list, name) {
				l.list = append(l.list, name)
			}
		default:
			return nameList{}, p.unexpected("expected an attribute name or '*'")
		}
		if p.tok.kind != tokEOF && !p.isPunct(",") {
			return nameList{}, p.unexpected("expected ',' or the end of %s", param)
		}
	}
}
