package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"cimid/agent/authn"
)

// The agent listens on its unix socket (local users, authorized by their
// peer credentials) and on any number of TCP addresses, each speaking
// HTTPS only: a client there authenticates with a trusted certificate or
// a bearer token. A plain HTTP request on a TLS port gets Go's "client
// sent an HTTP request to an HTTPS server" 400 and never reaches a
// handler.

// socketGroup resolves the group allowed on the unix socket; -1 when it
// does not exist.
func socketGroup(name string) int {
	if name == "" {
		name = "cimid"
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return gid
}

// serverCert loads, or creates on first use, the certificate of the TCP
// listeners and logs its fingerprint, which clients pin.
func (a *Agent) serverCert() (*tls.Certificate, error) {
	if len(a.cfg.Listen) == 0 {
		return nil, nil
	}
	certFile, keyFile := a.cfg.TLSCert, a.cfg.TLSKey
	if certFile == "" {
		certFile = filepath.Join(a.cfg.StateDir, "tls", "server.crt")
		keyFile = filepath.Join(a.cfg.StateDir, "tls", "server.key")
	}
	var hosts []string
	for _, addr := range a.cfg.Listen {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
			hosts = append(hosts, h)
		}
	}
	cert, created, err := authn.ServerCert(certFile, keyFile, hosts)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s (key %s) of the HTTPS listeners: %w", certFile, keyFile, err)
	}
	fp := authn.Fingerprint(cert.Leaf.Raw)
	if created {
		a.log.Info("created a self-signed TLS certificate: clients pin this fingerprint", "cert", certFile, "fingerprint", fp)
		fmt.Fprintf(os.Stderr, "cimid: created TLS certificate %s\ncimid: its SHA-256 fingerprint is %s\n", certFile, fp)
	}
	return &cert, nil
}

// claim takes, before anything changes, what can keep this agent from
// running: the state directory's lock, the unix socket, the TCP addresses
// and the TLS certificate. On failure it gives back what it took, removing
// the state directory again when it created it.
func (a *Agent) claim() (err error) {
	lock, created, err := lockStateDir(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.stateLock = lock
	defer func() {
		if err != nil {
			a.release()
			if created {
				os.Remove(a.cfg.StateDir) // only when still empty
			}
		}
	}()
	if err := a.listen(); err != nil {
		return err
	}
	a.tlsCert, err = a.serverCert()
	return err
}

// listen binds the unix socket and the TCP addresses. TLS goes on the TCP
// listeners when they start serving (serveListeners).
func (a *Agent) listen() error {
	a.socketGID = socketGroup(a.cfg.SocketGroup)
	l, err := listenUnix(a.cfg.Socket, a.socketGID, a.cfg.SocketGroup, a.log)
	if err != nil {
		return err
	}
	a.listeners = append(a.listeners, l)
	for _, addr := range a.cfg.Listen {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		a.listeners = append(a.listeners, tl)
	}
	return nil
}

// serveListeners returns the listeners to serve: the unix socket as it is,
// the TCP ones behind TLS with client authentication.
func (a *Agent) serveListeners() []net.Listener {
	out := make([]net.Listener, 0, len(a.listeners))
	for i, l := range a.listeners {
		a.log.Info("serving CIMI", "address", l.Addr().String())
		if i == 0 {
			out = append(out, l)
			continue
		}
		a.log.Info("serving HTTPS", "address", l.Addr().String(), "fingerprint", authn.Fingerprint(a.tlsCert.Leaf.Raw))
		out = append(out, tls.NewListener(l, a.authn.TLSConfig(*a.tlsCert)))
	}
	return out
}

// newServer makes the HTTP server of every listener. Long-lived responses
// (the event stream) end when shutdown begins, so that they do not hold
// up the drain.
func (a *Agent) newServer() *http.Server {
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           a.front,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       authn.ConnContext,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(a.log.With("component", "http").Handler(), slog.LevelDebug),
	}
	srv.RegisterOnShutdown(cancel)
	return srv
}

// listenUnix binds the API socket, replacing a stale one left by a killed
// process but never one a live agent still serves. The socket is 0660 and
// owned by the group gid, or 0600 (root only) when that group does not
// exist.
func listenUnix(path string, gid int, group string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is served by another process (another cimid with this socket?)", path)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) && !errors.Is(derr, syscall.ENOENT) {
			return nil, fmt.Errorf("probe existing socket %s: %w", path, derr)
		}
		log.Info("replacing stale socket", "path", path)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Until the chmod below the mode comes from the umask; connecting
	// needs write permission, which a usual umask gives the owner only, and
	// the peer check refuses strangers anyway.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if group == "" {
		group = "cimid"
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			log.Warn("cannot give the socket to its group: it is for root only", "path", path, "group", group, "err", err)
		} else {
			mode = 0o660
		}
	} else {
		log.Warn("the socket's group does not exist: the socket is for root only (make install creates it)", "path", path, "group", group)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return l, nil
}
