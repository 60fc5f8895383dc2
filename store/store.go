// Package store keeps the agent's durable state in one bbolt file. It knows
// buckets, keys and bytes, not the agent's types: callers marshal their own
// records. Every commit is fsynced; values handed out are copies, safe to use
// after the transaction ends (ForEach only lends them to its callback).
//
// The bucket tree (schema version 1):
//
//	meta/                        schema version, instance id
//	    "schema"   -> decimal schema version
//	    "instance" -> id of this agent instance
//	records/
//	    <kind>/                  one bucket per resource kind ("jobs", "machines", ...)
//	        <id>   -> record bytes (JSON, owned by the caller)
//
// Kinds are created on demand by Put; a missing kind reads as empty.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("record not found")

// ErrNewerSchema is returned when the file was written by a newer agent.
var ErrNewerSchema = errors.New("store schema is newer than this agent supports")

var (
	bucketMeta    = []byte("meta")
	bucketRecords = []byte("records")
	keySchema     = []byte("schema")
	keyInstance   = []byte("instance")
)

// DB is an open store.
type DB struct {
	bolt *bolt.DB
	path string
}

// Record is one stored value with its key.
type Record struct {
	ID    string
	Value []byte
}

// Open opens or creates the store at path and brings its schema up to date.
// It fails rather than guess when the file is corrupt or from the future.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	if err := checkHeader(path); err != nil {
		return nil, err
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open store %s: locked by another process (is another cimid running with this state directory?)", path)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
			return nil, damaged(path, err.Error())
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path}
	if err := db.migrate(migrations); err != nil {
		b.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return db, nil
}

// Close closes the file.
func (db *DB) Close() error { return db.bolt.Close() }

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// SchemaVersion reports the schema version recorded in the file.
func (db *DB) SchemaVersion() (int, error) {
	var v int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		v, err = readSchema(tx)
		return err
	})
	return v, err
}

// InstanceID returns the id of this agent instance, creating it with mint on
// first use. The id is kept for the lifetime of the store.
func (db *DB) InstanceID(mint func() string) (string, error) {
	var id string
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyInstance); v != nil {
			id = string(v)
			return nil
		}
		id = mint()
		return meta.Put(keyInstance, []byte(id))
	})
	return id, err
}

// Tx is a transaction handed to View and Update callbacks.
type Tx struct {
	tx *bolt.Tx
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*Tx) error) error {
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Update runs fn in a read-write transaction, committed (and fsynced) when
// fn returns nil and rolled back otherwise.
func (db *DB) Update(fn func(*Tx) error) error {
	return db.bolt.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Get returns a copy of the record kind/id, or ErrNotFound.
func (t *Tx) Get(kind, id string) ([]byte, error) {
	b := t.kind(kind)
	if b == nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, id, ErrNotFound)
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("%s/%s: %w", kind, id, ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// Put stores value under kind/id, creating the kind's bucket if needed.
func (t *Tx) Put(kind, id string, value []byte) error {
	if id == "" {
		return fmt.Errorf("put %s: empty id", kind)
	}
	b, err := t.tx.Bucket(bucketRecords).CreateBucketIfNotExists([]byte(kind))
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", kind, err)
	}
	if err := b.Put([]byte(id), value); err != nil {
		return fmt.Errorf("put %s/%s: %w", kind, id, err)
	}
	return nil
}

// Delete removes kind/id; deleting a missing record is not an error.
func (t *Tx) Delete(kind, id string) error {
	b := t.kind(kind)
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", kind, id, err)
	}
	return nil
}

// List returns copies of every record of kind, ordered by id.
func (t *Tx) List(kind string) ([]Record, error) {
	b := t.kind(kind)
	if b == nil {
		return nil, nil
	}
	var out []Record
	err := b.ForEach(func(k, v []byte) error {
		if v == nil { // nested bucket: not a record
			return nil
		}
		out = append(out, Record{ID: string(k), Value: bytes.Clone(v)})
		return nil
	})
	return out, err
}

// ForEach calls fn with every record of kind, in id order, without copying
// them: value is only valid until fn returns (copy what is kept). An
// error from fn ends the walk and is returned.
func (t *Tx) ForEach(kind string, fn func(id, value []byte) error) error {
	b := t.kind(kind)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if v == nil { // nested bucket: not a record
			return nil
		}
		return fn(k, v)
	})
}

// Count returns the number of records of kind.
func (t *Tx) Count(kind string) int {
	b := t.kind(kind)
	if b == nil {
		return 0
	}
	return b.Stats().KeyN
}

func (t *Tx) kind(kind string) *bolt.Bucket {
	return t.tx.Bucket(bucketRecords).Bucket([]byte(kind))
}

// Get is a one-record read in its own transaction.
func (db *DB) Get(kind, id string) ([]byte, error) {
	var v []byte
	err := db.View(func(tx *Tx) error {
		var err error
		v, err = tx.Get(kind, id)
		return err
	})
	return v, err
}

// List is a one-kind read in its own transaction.
func (db *DB) List(kind string) ([]Record, error) {
	var out []Record
	err := db.View(func(tx *Tx) error {
		var err error
		out, err = tx.List(kind)
		return err
	})
	return out, err
}

func readSchema(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, nil
	}
	v := meta.Get(keySchema)
	if v == nil {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("schema version %q is not a number: the file is damaged", v)
	}
	return n, nil
}

// Scan returns copies of the records of kind whose ids start with prefix,
// in id order, without reading the others.
func (t *Tx) Scan(kind, prefix string) ([]Record, error) {
	b := t.kind(kind)
	if b == nil {
		return nil, nil
	}
	var out []Record
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if v != nil {
			out = append(out, Record{ID: string(k), Value: bytes.Clone(v)})
		}
	}
	return out, nil
}

// DeletePrefix removes every record of kind whose id starts with prefix
// and sorts before limit ("" for no limit). It returns how many it removed.
func (t *Tx) DeletePrefix(kind, prefix, limit string) (int, error) {
	b := t.kind(kind)
	if b == nil {
		return 0, nil
	}
	var keys [][]byte
	c := b.Cursor()
	p := []byte(prefix)
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if limit != "" && string(k) >= limit {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, fmt.Errorf("delete %s/%s: %w", kind, k, err)
		}
	}
	return len(keys), nil
}
