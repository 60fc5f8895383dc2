package compute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"cimid/store"
)

// decodeCache remembers the decoded form of records by their stored bytes,
// and the JSON document rendered from each: listing many records decodes
// and renders only those whose bytes changed since the last listing. The
// values it returns share their slices and maps with the cache: callers
// only read them.
type decodeCache[T any] struct {
	mu      sync.Mutex
	entries map[string]*decodedEntry[T]
	listing uint64 // counts the listings, to find the entries of records gone
}

type decodedEntry[T any] struct {
	raw  []byte
	val  T
	seen uint64 // the last listing that saw the record
	// doc is the JSON document of val as rendered for the base URI base.
	base string
	doc  []byte
}

// listJSON returns every record of kind, decoded, and its JSON document
// as render makes it for the base URI base, in id order. A document is
// rendered again only when its record or the base changed.
func (c *decodeCache[T]) listJSON(tx *store.Tx, kind, base string, render func(T) ([]byte, error)) ([]T, [][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*decodedEntry[T]{}
	}
	c.listing++
	var vals []T
	var docs [][]byte
	err := tx.ForEach(kind, func(id, value []byte) error {
		e := c.entries[string(id)]
		if e == nil || !bytes.Equal(e.raw, value) {
			var v T
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("decode %s/%s: %w", kind, id, err)
			}
			e = &decodedEntry[T]{raw: bytes.Clone(value), val: v}
			c.entries[string(id)] = e
		}
		e.seen = c.listing
		if e.doc == nil || e.base != base {
			doc, err := render(e.val)
			if err != nil {
				return fmt.Errorf("render %s/%s: %w", kind, id, err)
			}
			e.doc, e.base = doc, base
		}
		vals, docs = append(vals, e.val), append(docs, e.doc)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for id, e := range c.entries {
		if e.seen != c.listing {
			delete(c.entries, id)
		}
	}
	return vals, docs, nil
}
