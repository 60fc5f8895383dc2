package authn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// jsonFile is a list of records kept in one JSON file that several
// processes share: the daemon reads it (and notices changes by the file's
// identity), the cimid trust/token commands rewrite it under a lock, by
// atomic rename.
type jsonFile[T any] struct {
	path string

	mu     sync.Mutex
	stamp  fileStamp
	cached []T
}

type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// load returns the current records, reading the file again only when it
// changed since the last read. A missing file holds no records.
func (f *jsonFile[T]) load() ([]T, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if errors.Is(err, os.ErrNotExist) {
		f.stamp, f.cached = fileStamp{}, nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.path, err)
	}
	if st := stampOf(fi); st == f.stamp && f.cached != nil {
		return f.cached, nil
	}
	list, err := readList[T](f.path)
	if err != nil {
		return nil, err
	}
	f.stamp, f.cached = stampOf(fi), list
	if f.cached == nil {
		f.cached = []T{}
	}
	return f.cached, nil
}

func readList[T any](path string) ([]T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var list []T
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return list, nil
}

// update applies fn to the records under an exclusive lock shared by every
// process and writes the result atomically.
func (f *jsonFile[T]) update(fn func([]T) ([]T, error)) error {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	list, err := readList[T](f.path)
	if err != nil {
		return err
	}
	list, err = fn(list)
	if err != nil {
		return err
	}
	if list == nil {
		list = []T{}
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", f.path, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("replace %s: %w", f.path, err)
	}
	return nil
}
