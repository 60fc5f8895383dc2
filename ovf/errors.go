package ovf

import (
	"errors"
	"fmt"
)

// Classes of errors returned by this package. Every error it returns
// wraps exactly one of them, so callers can tell with errors.Is whether a
// package was malformed, unsafe, beyond what the reader supports, or did
// not match its manifest.
var (
	// ErrInvalid: the descriptor, manifest or archive is malformed or
	// inconsistent (bad XML, dangling references, bad numbers).
	ErrInvalid = errors.New("invalid OVF package")
	// ErrUnsafe: the package tries something a reader must never do
	// (DOCTYPE, paths leaving the package, links, absurd sizes or nesting).
	ErrUnsafe = errors.New("unsafe OVF package")
	// ErrUnsupported: the package is well formed but needs something this
	// reader does not implement (a required section it does not know, an
	// unknown compression or encoding).
	ErrUnsupported = errors.New("unsupported OVF package")
	// ErrIntegrity: a file does not match its manifest digest or declared
	// size, or is missing.
	ErrIntegrity = errors.New("OVF package integrity check failed")
)

// Error is an error found in a package. Line is the line of the
// descriptor it was found on, when known.
type Error struct {
	Class error
	Line  int
	Msg   string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Class }

func errorf(class error, line int, format string, args ...any) error {
	return &Error{Class: class, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func invalidf(line int, format string, args ...any) error {
	return errorf(ErrInvalid, line, format, args...)
}

func unsafef(line int, format string, args ...any) error {
	return errorf(ErrUnsafe, line, format, args...)
}

func unsupportedf(line int, format string, args ...any) error {
	return errorf(ErrUnsupported, line, format, args...)
}

func integrityf(format string, args ...any) error {
	return errorf(ErrIntegrity, 0, format, args...)
}
