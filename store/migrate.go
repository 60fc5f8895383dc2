package store

import (
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// migration brings the file from version To-1 to version To. Migrations run
// in order, each in its own transaction together with the version bump, so a
// crash leaves the file at a well-defined version.
type migration struct {
	To    int
	Name  string
	Apply func(tx *bolt.Tx) error
}

// migrations is the ordered history of the schema. Append only.
var migrations = []migration{
	{To: 1, Name: "create meta and records buckets", Apply: func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRecords} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}},
}

// currentSchema is the version this build writes.
func currentSchema(list []migration) int {
	if len(list) == 0 {
		return 0
	}
	return list[len(list)-1].To
}

func (db *DB) migrate(list []migration) error {
	for i, m := range list {
		if m.To != i+1 {
			return fmt.Errorf("migration %q has version %d, want %d", m.Name, m.To, i+1)
		}
	}
	target := currentSchema(list)
	for {
		var done bool
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			have, err := readSchema(tx)
			if err != nil {
				return err
			}
			if have > target {
				return fmt.Errorf("%w: file has version %d, this agent knows up to %d", ErrNewerSchema, have, target)
			}
			if have == target {
				done = true
				return nil
			}
			m := list[have]
			if err := m.Apply(tx); err != nil {
				return fmt.Errorf("migration to version %d (%s): %w", m.To, m.Name, err)
			}
			return tx.Bucket(bucketMeta).Put(keySchema, []byte(strconv.Itoa(m.To)))
		})
		if err != nil || done {
			return err
		}
	}
}
