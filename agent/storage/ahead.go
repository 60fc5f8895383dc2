package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cimid/agent/errdefs"
	"cimid/hypervisor/qemuimg"
)

// An empty volume's image is made while the record of its creation is
// being committed, rather than after: qemu-img takes a few milliseconds,
// about as long as the commit and the start of the Job together. The
// image is made as the volume's ".part" file, which nothing reads: the
// create Job renames it into place only once its record is durable, and
// makes it itself when it was not made ahead (a Job resumed after a
// restart, or a file whose making failed).
//
// The rules that keep this safe:
//   - a failed submit discards the file;
//   - the Job's undo and cleanup discard it too, waiting for qemu-img;
//   - the pool check counts a file being made ahead as accounted for;
//   - at start-up, a volume's ".part" file without a record is the scratch
//     of a create whose record was never committed, and is removed.
type ahead struct {
	mu    sync.Mutex
	files map[string]*aheadFile // by Volume id
}

type aheadFile struct {
	path   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start makes an empty image of format and size at path, for Volume id,
// in the background.
func (a *ahead) start(id, path, format string, sizeBytes int64) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &aheadFile{path: path, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	if a.files == nil {
		a.files = map[string]*aheadFile{}
	}
	a.files[id] = f
	a.mu.Unlock()
	go func() {
		defer close(f.done)
		f.err = qemuimg.Create(ctx, path, format, sizeBytes)
	}()
}

// take waits for the image made ahead for Volume id, and reports whether
// there is one, made without error, at its path. The caller calls forget
// once the file is in place.
func (a *ahead) take(ctx context.Context, id string) (bool, error) {
	a.mu.Lock()
	f := a.files[id]
	a.mu.Unlock()
	if f == nil {
		return false, nil
	}
	select {
	case <-f.done:
		return f.err == nil, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// forget drops the entry of Volume id, once its file is in place.
func (a *ahead) forget(id string) {
	a.mu.Lock()
	delete(a.files, id)
	a.mu.Unlock()
}

// discard stops the making of Volume id's image, waits for it and
// removes the file.
func (a *ahead) discard(id string) error {
	a.mu.Lock()
	f := a.files[id]
	a.mu.Unlock()
	if f == nil {
		return nil
	}
	f.cancel()
	<-f.done
	if err := removeFiles(f.path); err != nil {
		return err
	}
	a.forget(id)
	return nil
}

// making reports whether the image of Volume id is being made ahead, or
// was and is not in place yet.
func (a *ahead) making(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.files[id] != nil
}

// removeUnrecordedScratch removes the ".part" files of volumes that have
// no record: made ahead for a create whose record was never committed.
// It runs at start-up, before any request is served. A file whose record
// cannot be read is left, and said so: the file is small, and the start
// goes on.
func (s *Service) removeUnrecordedScratch() error {
	entries, err := os.ReadDir(s.poolDir)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.poolDir, err)
	}
	for _, e := range entries {
		id, ok := scratchVolumeID(e.Name())
		if !ok {
			continue
		}
		_, err := view[volumeRecord](s.db, kindVolumes, id, "Volume")
		switch {
		case err == nil:
			continue // its create Job makes the file again
		case !errdefs.Is(err, errdefs.NotFound):
			s.log.Warn("partial volume image left in place: its record cannot be read", "file", e.Name(), "err", err)
			continue
		}
		if err := removeFiles(filepath.Join(s.poolDir, e.Name())); err != nil {
			s.log.Warn("partial image of a volume never recorded could not be removed", "file", e.Name(), "err", err)
			continue
		}
		s.log.Info("removed the partial image of a volume whose creation was never recorded", "file", e.Name())
	}
	return nil
}

// scratchVolumeID reads the Volume id from the name of a volume's partial
// image, "volume-<id>.<format>.part".
func scratchVolumeID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "volume-")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutSuffix(rest, ".part")
	if !ok {
		return "", false
	}
	id, format, ok := strings.Cut(rest, ".")
	if !ok || id == "" || (format != diskQCOW2 && format != diskRaw) {
		return "", false
	}
	return id, true
}
