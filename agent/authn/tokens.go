package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Token is a bearer token as stored: only the SHA-256 of its secret is
// kept, so the file does not let anyone authenticate. Secrets are 256
// random bits, which makes a plain hash as good as a slow one.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Hash    string    `json:"hash"` // hex SHA-256 of the secret part
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

// tokenPrefix marks cimid tokens so that they are recognisable in a
// secret scanner and in a mistaken paste.
const tokenPrefix = "cimid_"

// Tokens is the set of bearer tokens of one state directory.
type Tokens struct{ file jsonFile[Token] }

// OpenTokens opens the tokens of the authn directory dir.
func OpenTokens(dir string) *Tokens {
	return &Tokens{file: jsonFile[Token]{path: filepath.Join(dir, "tokens.json")}}
}

// List returns the tokens (without secrets).
func (t *Tokens) List() ([]Token, error) {
	list, err := t.file.load()
	return slices.Clone(list), err
}

// Create makes a token and returns its secret form, shown once: it is not
// stored anywhere.
func (t *Tokens) Create(name string, ttl time.Duration, now time.Time) (string, Token, error) {
	if name == "" {
		return "", Token{}, errors.New("a token needs a name (who or what uses it)")
	}
	if err := checkName(name); err != nil {
		return "", Token{}, err
	}
	var idb [6]byte
	var secret [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", Token{}, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", Token{}, err
	}
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	tok := Token{ID: hex.EncodeToString(idb[:]), Name: name, Hash: hashSecret(sec), Created: now.UTC()}
	if ttl > 0 {
		tok.Expires = now.Add(ttl).UTC()
	}
	err := t.file.update(func(list []Token) ([]Token, error) {
		for _, e := range list {
			if e.Name == name {
				return nil, fmt.Errorf("a token named %q exists already (id %s); revoke it or choose another name", name, e.ID)
			}
		}
		return append(list, tok), nil
	})
	if err != nil {
		return "", Token{}, err
	}
	return tokenPrefix + tok.ID + "." + sec, tok, nil
}

// Revoke deletes the token with the given id (or name).
func (t *Tokens) Revoke(ref string) (Token, error) {
	var removed Token
	err := t.file.update(func(list []Token) ([]Token, error) {
		for i, e := range list {
			if e.ID == ref || e.Name == ref {
				removed = e
				return slices.Delete(list, i, i+1), nil
			}
		}
		return nil, fmt.Errorf("no token has id or name %q", ref)
	})
	return removed, err
}

// Verify returns the token whose secret form is s.
func (t *Tokens) Verify(s string, now time.Time) (Token, error) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, errors.New("not a cimid token")
	}
	id, sec, ok := strings.Cut(rest, ".")
	if !ok || id == "" || sec == "" {
		return Token{}, errors.New("malformed token")
	}
	list, err := t.file.load()
	if err != nil {
		return Token{}, err
	}
	want := hashSecret(sec)
	for _, tok := range list {
		if tok.ID != id {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(want)) != 1 {
			return Token{}, fmt.Errorf("wrong secret for token %s", id)
		}
		if !tok.Expires.IsZero() && now.After(tok.Expires) {
			return Token{}, fmt.Errorf("token %s (%s) expired at %s", id, tok.Name, tok.Expires.Format(time.RFC3339))
		}
		return tok, nil
	}
	return Token{}, fmt.Errorf("unknown or revoked token %s", id)
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
