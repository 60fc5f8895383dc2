package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokenKind int

const (
	tokEOF    tokenKind = iota
	tokError            // a lexical error, in token.err
	tokIdent            // a name or keyword
	tokString           // a quoted string; text is its decoded value
	tokInt              // an integer; num is its value
	tokOp               // a comparison operator; op says which
	tokPunct            // one of ( ) [ ] / : , *
)

type token struct {
	kind tokenKind
	off  int    // byte offset of the token in the source
	end  int    // byte offset just past it
	text string // name, punctuation, or decoded string value
	num  int64
	op   op
	err  *Error
}

const punctuation = "()[]/:,*"

// lexer splits a parameter value into tokens on demand, so that the parser
// reports whichever problem comes first in the text.
type lexer struct {
	param string
	src   string
	off   int
}

// pos converts a byte offset into the 1-based character position reported
// in errors.
func (l *lexer) pos(off int) int { return utf8.RuneCountInString(l.src[:off]) + 1 }

func (l *lexer) errorf(off int, format string, args ...any) *Error {
	return &Error{Param: l.param, Pos: l.pos(off), Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) fail(off int, format string, args ...any) token {
	return token{kind: tokError, off: off, end: l.off, err: l.errorf(off, format, args...)}
}

func (l *lexer) next() token {
	for l.off < len(l.src) && isSpace(l.src[l.off]) {
		l.off++
	}
	start := l.off
	if start == len(l.src) {
		return token{kind: tokEOF, off: start, end: start}
	}
	c := l.src[start]
	switch {
	case strings.IndexByte(punctuation, c) >= 0:
		l.off++
		return token{kind: tokPunct, off: start, end: l.off, text: l.src[start:l.off]}
	case isOperatorChar(c):
		return l.operator()
	case c == '\'' || c == '"':
		return l.string()
	case isDigit(c) || c == '-' && start+1 < len(l.src) && isDigit(l.src[start+1]):
		return l.number()
	case isNameStart(c):
		for l.off++; l.off < len(l.src) && isNameChar(l.src[l.off]); l.off++ {
		}
		return token{kind: tokIdent, off: start, end: l.off, text: l.src[start:l.off]}
	}
	r, size := utf8.DecodeRuneInString(l.src[start:])
	l.off += size
	return l.fail(start, "unexpected character %q", r)
}

// operator reads a run of operator characters, so that "==" is reported as
// one unknown operator rather than as "=" followed by a stray "=".
func (l *lexer) operator() token {
	start := l.off
	for l.off < len(l.src) && isOperatorChar(l.src[l.off]) {
		l.off++
	}
	text := l.src[start:l.off]
	for o, name := range opNames {
		if text == name {
			return token{kind: tokOp, off: start, end: l.off, text: text, op: op(o)}
		}
	}
	hint := ""
	switch text {
	case "==":
		hint = ": use '='"
	case "<>", "!==":
		hint = ": use '!='"
	case "=<":
		hint = ": use '<='"
	case "=>":
		hint = ": use '>='"
	}
	return l.fail(start, "unknown operator '%s'%s", text, hint)
}

// string reads a quoted string. The quote is escaped by doubling it or by a
// backslash; a backslash before another backslash or a quote escapes it, and
// stands for itself anywhere else.
func (l *lexer) string() token {
	start, quote := l.off, l.src[l.off]
	var b strings.Builder
	for l.off++; l.off < len(l.src); {
		c := l.src[l.off]
		switch {
		case c == '\\' && l.off+1 < len(l.src) && isEscapable(l.src[l.off+1]):
			b.WriteByte(l.src[l.off+1])
			l.off += 2
		case c == quote && l.off+1 < len(l.src) && l.src[l.off+1] == quote:
			b.WriteByte(quote)
			l.off += 2
		case c == quote:
			l.off++
			return token{kind: tokString, off: start, end: l.off, text: b.String()}
		default:
			b.WriteByte(c)
			l.off++
		}
	}
	return l.fail(start, "unclosed string: no closing %c for the quote at this position", quote)
}

// number reads an integer. It takes in the characters a mistyped number or
// an unquoted dateTime would continue with, to report them whole.
func (l *lexer) number() token {
	start := l.off
	for l.off++; l.off < len(l.src) && isNumberChar(l.src[l.off]); l.off++ {
	}
	text := l.src[start:l.off]
	n, err := strconv.ParseInt(text, 10, 64)
	switch {
	case err == nil:
		return token{kind: tokInt, off: start, end: l.off, text: text, num: n}
	case isTime(text):
		return l.fail(start, "dateTime values must be quoted: '%s'", text)
	case errors.Is(err, strconv.ErrRange):
		return l.fail(start, "integer %s is out of range", text)
	}
	return l.fail(start, "malformed integer %s (only decimal integers are supported)", text)
}

func isSpace(c byte) bool        { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool        { return '0' <= c && c <= '9' }
func isNameStart(c byte) bool    { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }
func isNameChar(c byte) bool     { return isNameStart(c) || isDigit(c) }
func isNumberChar(c byte) bool   { return isNameChar(c) || strings.IndexByte(".:+-", c) >= 0 }
func isOperatorChar(c byte) bool { return strings.IndexByte("=!<>~^", c) >= 0 }
func isEscapable(c byte) bool    { return c == '\\' || c == '\'' || c == '"' }

// describe renders a token other than tokEOF for "found ..." in error
// messages.
func (t token) describe(src string) string {
	switch t.kind {
	case tokIdent, tokInt:
		return t.text
	case tokString:
		s := src[t.off:t.end]
		if utf8.RuneCountInString(s) > 40 {
			r := []rune(s)
			s = string(r[:36]) + "…" + string(r[len(r)-1])
		}
		return s
	}
	return "'" + src[t.off:t.end] + "'"
}
