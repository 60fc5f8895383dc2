package authn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Client is a trusted client certificate: whoever presents exactly this
// certificate over TLS is that client.
type Client struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the DER certificate, lower-case hex
	Subject     string    `json:"subject"`
	NotAfter    time.Time `json:"notAfter"`
	Added       time.Time `json:"added"`
	Certificate string    `json:"certificate"` // PEM
}

// Fingerprint is the SHA-256 of a DER certificate in lower-case hex, the
// form cimid prints and `cimi remote add` pins.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a fingerprint with or without colons, in
// either case, optionally prefixed with "sha256:".
func NormalizeFingerprint(s string) string {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	return strings.ReplaceAll(s, ":", "")
}

// Clients is the set of trusted client certificates of one state directory.
type Clients struct{ file jsonFile[Client] }

// OpenClients opens the trusted clients of the authn directory dir.
func OpenClients(dir string) *Clients {
	return &Clients{file: jsonFile[Client]{path: filepath.Join(dir, "clients.json")}}
}

// List returns the trusted clients.
func (c *Clients) List() ([]Client, error) {
	list, err := c.file.load()
	return slices.Clone(list), err
}

// Lookup finds a trusted client by certificate fingerprint.
func (c *Clients) Lookup(fingerprint string) (Client, bool, error) {
	list, err := c.file.load()
	if err != nil {
		return Client{}, false, err
	}
	for _, cl := range list {
		if cl.Fingerprint == fingerprint {
			return cl, true, nil
		}
	}
	return Client{}, false, nil
}

// Add trusts the certificate in pemData (the first CERTIFICATE block).
// The name defaults to the certificate's common name.
func (c *Clients) Add(pemData []byte, name string, now time.Time) (Client, error) {
	cert, err := parseCertificate(pemData)
	if err != nil {
		return Client{}, err
	}
	if now.After(cert.NotAfter) {
		return Client{}, fmt.Errorf("certificate expired on %s", cert.NotAfter.Format(time.DateOnly))
	}
	if name == "" {
		name = cert.Subject.CommonName
	}
	if name == "" {
		return Client{}, errors.New("the certificate has no common name: give a name")
	}
	if err := checkName(name); err != nil {
		return Client{}, err
	}
	cl := Client{
		Name: name, Fingerprint: Fingerprint(cert.Raw), Subject: cert.Subject.String(), NotAfter: cert.NotAfter.UTC(),
		Added: now.UTC(), Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	}
	err = c.file.update(func(list []Client) ([]Client, error) {
		for _, e := range list {
			if e.Fingerprint == cl.Fingerprint {
				return nil, fmt.Errorf("this certificate is already trusted as %q", e.Name)
			}
			if e.Name == cl.Name {
				return nil, fmt.Errorf("a client named %q is already trusted (fingerprint %s); choose another name", e.Name, e.Fingerprint)
			}
		}
		return append(list, cl), nil
	})
	return cl, err
}

// Remove stops trusting the client named ref, or whose fingerprint is (or
// starts with at least 8 digits of) ref.
func (c *Clients) Remove(ref string) (Client, error) {
	var removed Client
	err := c.file.update(func(list []Client) ([]Client, error) {
		i, err := findClient(list, ref)
		if err != nil {
			return nil, err
		}
		removed = list[i]
		return slices.Delete(list, i, i+1), nil
	})
	return removed, err
}

func findClient(list []Client, ref string) (int, error) {
	for i, cl := range list {
		if cl.Name == ref {
			return i, nil
		}
	}
	fp := NormalizeFingerprint(ref)
	match := -1
	if len(fp) >= 8 {
		for i, cl := range list {
			if strings.HasPrefix(cl.Fingerprint, fp) {
				if match >= 0 {
					return -1, fmt.Errorf("%q matches more than one trusted client; give more of the fingerprint", ref)
				}
				match = i
			}
		}
	}
	if match < 0 {
		return -1, fmt.Errorf("no trusted client is named %q or has that fingerprint", ref)
	}
	return match, nil
}

func parseCertificate(pemData []byte) (*x509.Certificate, error) {
	rest := pemData
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block found")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return cert, nil
	}
}

// checkName keeps names printable in tables and logs.
func checkName(name string) error {
	if len(name) > 64 {
		return errors.New("name is longer than 64 characters")
	}
	for _, r := range name {
		if r < 0x21 || r == 0x7f || r == '"' || r == '\\' {
			return fmt.Errorf("name %q may not contain spaces, quotes or control characters", name)
		}
	}
	return nil
}
