// Package libvirt implements hypervisor.Driver on a libvirt daemon through
// libvirt.org/go/libvirt, with domain, pool and network XML built by
// libvirtxml.
//
// It owns the connection to libvirtd: connecting, noticing when the daemon
// goes away, reconnecting with backoff and re-subscribing to lifecycle events.
// It also owns the translation between the hypervisor vocabulary and libvirt:
// domain, device, snapshot and network XML (including the cimid metadata
// elements that mark domains and networks as ours), run states, event kinds,
// bulk statistics and error classes. It holds no policy: what to define,
// start or stop is the agent's decision.
//
// The libvirt default event loop is process-wide; Open starts it once and it
// runs until the process exits.
package libvirt
