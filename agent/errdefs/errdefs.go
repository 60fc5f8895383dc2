// Package errdefs is the agent's one error vocabulary. Code anywhere in the
// agent classifies a failure by wrapping it with one of the constructors
// below; HTTPStatus is the single place that turns a class into a status code.
package errdefs

import (
	"errors"
	"fmt"
	"net/http"
)

// Class is a kind of failure a client can act on.
type Class int

const (
	Internal           Class = iota // a bug or an unexpected failure: 500
	Invalid                         // the request is malformed or names bad values: 400
	Unauthorized                    // no or bad credentials: 401
	Forbidden                       // authenticated but not allowed: 403
	NotFound                        // the resource does not exist: 404
	MethodNotAllowed                // the verb is not defined on the path: 405
	NotAcceptable                   // no representation matches Accept: 406
	Conflict                        // not possible in the resource's current state: 409
	Gone                            // the resource existed and was deleted: 410
	PreconditionFailed              // If-Match did not match: 412
	TooLarge                        // the body exceeds the limit: 413
	UnsupportedMedia                // Content-Type not understood: 415
	Unavailable                     // the hypervisor or another dependency is down: 503
	NotImplemented                  // the host cannot do this: 501
)

var statuses = map[Class]int{
	Internal:           http.StatusInternalServerError,
	Invalid:            http.StatusBadRequest,
	Unauthorized:       http.StatusUnauthorized,
	Forbidden:          http.StatusForbidden,
	NotFound:           http.StatusNotFound,
	MethodNotAllowed:   http.StatusMethodNotAllowed,
	NotAcceptable:      http.StatusNotAcceptable,
	Conflict:           http.StatusConflict,
	Gone:               http.StatusGone,
	PreconditionFailed: http.StatusPreconditionFailed,
	TooLarge:           http.StatusRequestEntityTooLarge,
	UnsupportedMedia:   http.StatusUnsupportedMediaType,
	Unavailable:        http.StatusServiceUnavailable,
	NotImplemented:     http.StatusNotImplemented,
}

type classified struct {
	class Class
	err   error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Wrap classifies err. A nil err stays nil.
func Wrap(class Class, err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: class, err: err}
}

// New makes a classified error from a format string.
func New(class Class, format string, args ...any) error {
	return &classified{class: class, err: fmt.Errorf(format, args...)}
}

// Invalidf is shorthand for New(Invalid, ...).
func Invalidf(format string, args ...any) error { return New(Invalid, format, args...) }

// NotFoundf is shorthand for New(NotFound, ...).
func NotFoundf(format string, args ...any) error { return New(NotFound, format, args...) }

// Conflictf is shorthand for New(Conflict, ...).
func Conflictf(format string, args ...any) error { return New(Conflict, format, args...) }

// ClassOf returns the outermost class found in err's chain, Internal if none.
func ClassOf(err error) Class {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	return Internal
}

// Is reports whether err carries class.
func Is(err error, class Class) bool { return err != nil && ClassOf(err) == class }

// HTTPStatus maps err to the status code a client receives.
func HTTPStatus(err error) int {
	if s, ok := statuses[ClassOf(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}
