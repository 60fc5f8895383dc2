package compute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"cimid/store"
)

// decodeCache remembers the decoded form of records by their stored bytes:
// listing many records decodes only those whose bytes changed since the
// last listing. The values it returns share their slices and maps with the
// cache: callers only read them.
type decodeCache[T any] struct {
	mu      sync.Mutex
	entries map[string]decodedEntry[T]
}

type decodedEntry[T any] struct {
	raw []byte
	val T
}

// list returns every record of kind, decoded, in id order.
func (c *decodeCache[T]) list(tx *store.Tx, kind string) ([]T, error) {
	recs, err := tx.List(kind)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]decodedEntry[T]{}
	}
	seen := make(map[string]bool, len(recs))
	out := make([]T, 0, len(recs))
	for _, r := range recs {
		seen[r.ID] = true
		if e, ok := c.entries[r.ID]; ok && bytes.Equal(e.raw, r.Value) {
			out = append(out, e.val)
			continue
		}
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s/%s: %w", kind, r.ID, err)
		}
		c.entries[r.ID] = decodedEntry[T]{raw: r.Value, val: v}
		out = append(out, v)
	}
	for id := range c.entries {
		if !seen[id] {
			delete(c.entries, id)
		}
	}
	return out, nil
}
