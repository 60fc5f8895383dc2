package storage

import (
	"cimid/agent/records"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"cimid/agent/cimi"
	"cimid/store"
)

// PoolReport is the outcome of one comparison of the pool with the store.
type PoolReport struct {
	// Unknown are pool files that no record accounts for; they are left
	// in place.
	Unknown []string
	// Missing are files that AVAILABLE records describe but that are not
	// in the pool.
	Missing []string
}

// CheckPool compares the pool's files with the store. It never changes
// either: what it finds is for a human to judge.
func (s *Service) CheckPool(ctx context.Context) (PoolReport, error) {
	var rep PoolReport
	entries, err := os.ReadDir(s.poolDir)
	if err != nil {
		return rep, err
	}
	var prefixes []string
	expected := map[string]string{} // file -> resource path
	err = s.db.View(func(tx *store.Tx) error {
		if m := s.machineOwner(); m != nil {
			p, err := m.PoolFiles(tx)
			if err != nil {
				return err
			}
			prefixes = append(prefixes, p...)
		}
		volumes, err := records.List[volumeRecord](tx, kindVolumes)
		if err != nil {
			return err
		}
		for _, v := range volumes {
			prefixes = append(prefixes, "volume-"+v.ID+".")
			if v.State != cimi.StateCreating && v.State != cimi.StateDeleting {
				expected[v.Path] = volumePath(v.ID)
			}
		}
		images, err := records.List[imageRecord](tx, kindImages)
		if err != nil {
			return err
		}
		for _, im := range images {
			prefixes = append(prefixes, "volimage-"+im.ID+".")
			if im.State == cimi.StateAvailable {
				expected[im.Path] = imagePath(im.ID)
			}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	// A file is written only after its record (an empty volume's image,
	// made while its record is committed, excepted: it is accounted for
	// until it is in place) and removed before it, so a file listed before
	// the records were read, and still there after, is unknown for certain.
	for _, e := range entries {
		if !accounted(e.Name(), prefixes) && !s.madeAhead(e.Name()) {
			if _, err := os.Lstat(filepath.Join(s.poolDir, e.Name())); err == nil {
				rep.Unknown = append(rep.Unknown, e.Name())
			}
		}
	}
	for path, resource := range expected {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && s.stillExpects(resource) {
			rep.Missing = append(rep.Missing, path)
		}
	}
	sort.Strings(rep.Unknown)
	sort.Strings(rep.Missing)
	return rep, ctx.Err()
}

// stillExpects re-reads a record whose file was not found: a delete that
// started meanwhile removes the file first.
func (s *Service) stillExpects(resource string) bool {
	kind, id, _ := strings.Cut(resource, "/")
	var state string
	err := s.db.View(func(tx *store.Tx) error {
		switch kind {
		case kindVolumes:
			v, err := records.Get[volumeRecord](tx, kind, id, "Volume")
			state = v.State
			return err
		default:
			im, err := records.Get[imageRecord](tx, kind, id, "VolumeImage")
			state = im.State
			return err
		}
	})
	return err == nil && state != cimi.StateDeleting && state != cimi.StateCreating
}

// madeAhead reports whether a pool file is the image of an empty volume
// being made while its record is committed.
func (s *Service) madeAhead(name string) bool {
	id, ok := scratchVolumeID(name)
	return ok && s.ahead.making(id)
}

func accounted(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// collectGarbage runs CheckPool and reports what it found: each unknown
// file once (until it goes away), every missing file on every pass.
func (s *Service) collectGarbage(ctx context.Context) {
	rep, err := s.CheckPool(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("compare the storage pool with the store", "err", err)
		}
		return
	}
	s.mu.Lock()
	seen := map[string]bool{}
	var fresh []string
	for _, f := range rep.Unknown {
		seen[f] = true
		if !s.reported[f] {
			fresh = append(fresh, f)
		}
	}
	s.reported = seen
	s.mu.Unlock()
	for _, f := range fresh {
		s.log.Warn("unknown file in the storage pool: no record accounts for it; it is left in place", "pool", s.poolDir, "file", f)
	}
	for _, f := range rep.Missing {
		s.log.Error("the file of a resource is missing from the storage pool", "file", f)
	}
	s.log.Debug("storage pool checked", "unknown", len(rep.Unknown), "missing", len(rep.Missing))
}
