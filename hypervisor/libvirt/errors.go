package libvirt

import (
	"errors"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// libvirtError presents a libvirt error by its message and unwraps both to the
// original libvirt.Error and to the hypervisor error class it belongs to.
type libvirtError struct {
	class error // hypervisor.ErrNotFound, hypervisor.ErrUnavailable or nil
	err   libvirt.Error
}

func (e *libvirtError) Error() string { return e.err.Message }

func (e *libvirtError) Unwrap() []error {
	if e.class == nil {
		return []error{e.err}
	}
	return []error{e.class, e.err}
}

// classify turns a bare libvirt.Error into a *libvirtError. Other errors,
// including already classified ones, are returned unchanged.
func classify(err error) error {
	lv, ok := err.(libvirt.Error)
	if !ok {
		return err
	}
	return &libvirtError{class: classOf(lv), err: lv}
}

// unavailable classifies err as hypervisor.ErrUnavailable whatever its code;
// it is used for failures to connect.
func unavailable(err error) error {
	if lv, ok := err.(libvirt.Error); ok {
		return &libvirtError{class: hypervisor.ErrUnavailable, err: lv}
	}
	return errors.Join(hypervisor.ErrUnavailable, err)
}

func classOf(e libvirt.Error) error {
	switch e.Code {
	case libvirt.ERR_NO_DOMAIN, libvirt.ERR_NO_STORAGE_POOL, libvirt.ERR_NO_STORAGE_VOL:
		return hypervisor.ErrNotFound
	}
	if connectionBroken(e) {
		return hypervisor.ErrUnavailable
	}
	return nil
}

// connectionBroken tells whether e reports a failure of the connection itself
// ("Cannot write data: Broken pipe", "client socket is closed", ...) rather
// than of the requested operation.
func connectionBroken(e libvirt.Error) bool {
	switch e.Code {
	case libvirt.ERR_NO_CONNECT, libvirt.ERR_INVALID_CONN, libvirt.ERR_RPC:
		return true
	}
	return e.Domain == libvirt.FROM_RPC
}

// hasCode reports whether err carries the libvirt error code code.
func hasCode(err error, code libvirt.ErrorNumber) bool {
	return errors.Is(err, code)
}

// lookupFailed classifies the failure to look a network or a snapshot up by
// name. Their absence is hypervisor.ErrNotFound for the operations on them,
// but not for domain operations that merely refer to a network (starting a
// domain whose network is missing does not mean the domain is missing), so
// classOf leaves those codes alone.
func lookupFailed(err error) error {
	lv, ok := err.(libvirt.Error)
	if !ok {
		return err
	}
	switch lv.Code {
	case libvirt.ERR_NO_NETWORK, libvirt.ERR_NO_DOMAIN_SNAPSHOT:
		return &libvirtError{class: hypervisor.ErrNotFound, err: lv}
	}
	return classify(lv)
}
