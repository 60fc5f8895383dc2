package fake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"cimid/hypervisor"
)

// EnsurePool makes a pool called name exist at dir, creating the directory
// like the libvirt driver does. An existing pool must already manage dir.
func (d *Driver) EnsurePool(ctx context.Context, name, dir string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "EnsurePool"); err != nil {
		return err
	}
	if err := d.ensurePool(name, dir); err != nil {
		return fmt.Errorf("ensure storage pool %s at %s: %w", name, dir, err)
	}
	return nil
}

func (d *Driver) ensurePool(name, dir string) error {
	if !filepath.IsAbs(dir) {
		return errors.New("directory is not an absolute path")
	}
	dir = filepath.Clean(dir)
	if old, ok := d.pools[name]; ok && old != dir {
		return fmt.Errorf("pool exists at %q", old)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	d.pools[name] = dir
	return nil
}

// RefreshPool only checks that the pool exists: ListPoolVolumes always
// reads the directory.
func (d *Driver) RefreshPool(ctx context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "RefreshPool"); err != nil {
		return err
	}
	if _, ok := d.pools[name]; !ok {
		return fmt.Errorf("refresh storage pool %s: %w", name, notFound("no pool "+name))
	}
	return nil
}

// ListPoolVolumes lists the regular files in the pool's directory, sorted
// by name.
func (d *Driver) ListPoolVolumes(ctx context.Context, name string) ([]hypervisor.PoolVolume, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.enter(ctx, "ListPoolVolumes"); err != nil {
		return nil, err
	}
	dir, ok := d.pools[name]
	if !ok {
		return nil, fmt.Errorf("list volumes of storage pool %s: %w", name, notFound("no pool "+name))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list volumes of storage pool %s: %w", name, err)
	}
	vols := []hypervisor.PoolVolume{}
	for _, e := range entries {
		if e.Type().IsRegular() {
			vols = append(vols, hypervisor.PoolVolume{Name: e.Name(), Path: filepath.Join(dir, e.Name())})
		}
	}
	return vols, nil
}
