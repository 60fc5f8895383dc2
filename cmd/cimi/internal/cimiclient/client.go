// Package cimiclient is a small client for the DMTF CIMI 1.1 API served by
// cimid. It reaches the daemon over its unix socket or over HTTPS, discovers
// collections through the Cloud Entry Point, reads resources and
// collections, and issues the creates, actions and deletes that the server
// answers with Jobs.
package cimiclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// DefaultSocket is where cimid listens unless configured otherwise.
	DefaultSocket = "/run/cimid/cimid.sock"
	// SpecVersion is sent in the CIMI-Specification-Version header.
	SpecVersion = "1.1.0"
	// DefaultPrefix is the CIMI 1.x namespace used for type and action URIs
	// when the server does not reveal its own.
	DefaultPrefix = "http://schemas.dmtf.org/cimi/1"

	// MediaJSON and MediaXML are the two representations CIMI defines.
	MediaJSON = "application/json"
	MediaXML  = "application/xml"

	// socketHost is the host name used in URLs sent over the unix socket;
	// the server builds ids from it.
	socketHost = "localhost"
	// maxBody bounds how much of a response is read.
	maxBody = 64 << 20
)

// Config says how to reach the server.
type Config struct {
	// Socket is the path of the daemon's unix socket; used when URL is empty.
	Socket string
	// URL is an http(s) endpoint such as https://host:8443/.
	URL string
	// Token, if set, is sent as a bearer token.
	Token string
	// Insecure disables TLS certificate verification.
	Insecure bool
	// Fingerprint, when set, pins the server: its certificate must have
	// this SHA-256 fingerprint (hex), whoever signed it.
	Fingerprint string
	// Certificates are client certificates offered to the server.
	Certificates []tls.Certificate
	// UserAgent is sent with every request.
	UserAgent string
	// RequestTimeout bounds each HTTP exchange; zero means no bound.
	RequestTimeout time.Duration
}

// Client talks to one CIMI endpoint. It caches the Cloud Entry Point after
// the first read, so a Client serves one command and is not meant to be
// shared between goroutines.
type Client struct {
	hc        *http.Client
	cepURL    *url.URL
	token     string
	userAgent string
	// via names the unix socket in transport errors.
	via string
	cep *EntryPoint
}

// New returns a Client for cfg. It does not contact the server.
func New(cfg Config) (*Client, error) {
	c := &Client{token: cfg.Token, userAgent: cfg.UserAgent}
	var transport *http.Transport
	if cfg.URL != "" {
		u, err := endpointURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		if cfg.Token != "" && u.Scheme != "https" {
			return nil, fmt.Errorf("refusing to send a token over plain http to %s; use https", u.Host)
		}
		c.cepURL = u
		transport = http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: cfg.Insecure, //nolint:gosec // explicit user choice
			Certificates:       cfg.Certificates,
		}
		if cfg.Fingerprint != "" {
			transport.TLSClientConfig.InsecureSkipVerify = true // replaced by the pin
			transport.TLSClientConfig.VerifyPeerCertificate = pinned(cfg.Fingerprint)
		}
	} else {
		if cfg.Socket == "" {
			return nil, errors.New("no socket path and no URL given")
		}
		c.cepURL = &url.URL{Scheme: "http", Host: socketHost, Path: "/cimi/cloudEntryPoint"}
		c.via = " via " + cfg.Socket
		transport = socketTransport(cfg.Socket)
	}
	c.hc = &http.Client{Transport: transport, Timeout: cfg.RequestTimeout}
	return c, nil
}

// endpointURL turns the user's --url into the Cloud Entry Point URL. It
// accepts the server root (https://h:8443/), the CIMI base
// (https://h:8443/cimi/) or the entry point itself.
func endpointURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q has no host", raw)
	}
	u.RawQuery, u.Fragment = "", ""
	switch p := strings.TrimSuffix(u.Path, "/"); {
	case strings.HasSuffix(p, "/cloudEntryPoint"):
		u.Path = p
	case strings.HasSuffix(p, "/cimi"):
		u.Path = p + "/cloudEntryPoint"
	default:
		u.Path = p + "/cimi/cloudEntryPoint"
	}
	return u, nil
}

func socketTransport(path string) *http.Transport {
	var d net.Dialer
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
}

// Response is a successful HTTP exchange, body read in full.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// do performs one request. href is resolved against the base URI and must
// be on the same origin as the entry point. body, if not nil, is sent as JSON. Any status of 400 or
// above is returned as an *APIError.
func (c *Client) do(ctx context.Context, method, href, accept string, body any) (*Response, error) {
	return c.doWith(ctx, method, href, accept, body, nil)
}

// doWith is do with extra request headers.
func (c *Client) doWith(ctx context.Context, method, href, accept string, body any, extra http.Header) (*Response, error) {
	href, err := c.Resolve(ctx, href)
	if err != nil {
		return nil, err
	}
	u, err := c.checkHref(href)
	if err != nil {
		return nil, err
	}
	req, err := c.newRequest(ctx, method, u, accept, body)
	if err != nil {
		return nil, err
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, href, c.via, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading response: %w", method, href, err)
	}
	if resp.StatusCode >= 400 {
		return nil, newAPIError(method, href, resp, data)
	}
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func (c *Client) newRequest(ctx context.Context, method string, u *url.URL, accept string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding %s body: %w", method, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("CIMI-Specification-Version", SpecVersion)
	if body != nil {
		req.Header.Set("Content-Type", MediaJSON)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// checkHref parses href and makes sure it points at the endpoint the
// client was configured for, so that credentials never leave it.
func (c *Client) checkHref(href string) (*url.URL, error) {
	u, err := url.Parse(href)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", href, err)
	}
	if !u.IsAbs() {
		return nil, fmt.Errorf("%q is not an absolute URL", href)
	}
	if origin(u) != origin(c.cepURL) {
		return nil, fmt.Errorf("refusing to follow %s: it is not on %s", href, origin(c.cepURL))
	}
	return u, nil
}

func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// pinned verifies that the server's certificate has the SHA-256
// fingerprint want.
func pinned(want string) func([][]byte, [][]*x509.Certificate) error {
	want = strings.ReplaceAll(strings.ToLower(want), ":", "")
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("the server sent no certificate")
		}
		sum := sha256.Sum256(raw[0])
		if got := hex.EncodeToString(sum[:]); got != want {
			return fmt.Errorf("the server's certificate has fingerprint %s, not the pinned %s: "+
				"if the server's certificate was replaced on purpose, remove the remote and add it again", got, want)
		}
		return nil
	}
}
