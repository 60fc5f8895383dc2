package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"cimid/hypervisor"
)

// poolDirMode lets the QEMU user traverse the pool directory to reach the
// images in it, without listing it.
const poolDirMode fs.FileMode = 0o711

// EnsurePool makes a started, autostarted directory pool called name exist at
// dir, creating the directory (and its missing parents) traversable by all
// when it is missing, so that the QEMU user reaches the images. An existing
// pool of that name must already manage dir.
func (d *Driver) EnsurePool(ctx context.Context, name, dir string) error {
	if err := ensurePool(ctx, d, name, dir); err != nil {
		return fmt.Errorf("ensure storage pool %s at %s: %w", name, dir, err)
	}
	return nil
}

func ensurePool(ctx context.Context, d *Driver, name, dir string) error {
	if !filepath.IsAbs(dir) {
		return errors.New("directory is not an absolute path")
	}
	dir = filepath.Clean(dir)
	return d.call(ctx, func(c *libvirt.Connect) error {
		pool, err := lookupOrDefinePool(c, name, dir)
		if err != nil {
			return err
		}
		defer pool.Free()
		if err := checkPoolTarget(pool, dir); err != nil {
			return err
		}
		if err := makeTraversableDir(dir); err != nil {
			return err
		}
		if err := startPool(pool); err != nil {
			return err
		}
		return autostartPool(pool)
	})
}

// makeTraversableDir creates dir and its missing parents with poolDirMode,
// whatever the umask.
func makeTraversableDir(dir string) error {
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := makeTraversableDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, poolDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, poolDirMode)
}

func lookupOrDefinePool(c *libvirt.Connect, name, dir string) (*libvirt.StoragePool, error) {
	pool, err := c.LookupStoragePoolByName(name)
	if !hasCode(err, libvirt.ERR_NO_STORAGE_POOL) {
		return pool, classify(err)
	}
	doc, err := poolXML(name, dir)
	if err != nil {
		return nil, err
	}
	pool, err = c.StoragePoolDefineXML(doc, 0)
	if err != nil {
		return nil, fmt.Errorf("define: %w", classify(err))
	}
	return pool, nil
}

func poolXML(name, dir string) (string, error) {
	pool := libvirtxml.StoragePool{
		Type: "dir",
		Name: name,
		Target: &libvirtxml.StoragePoolTarget{
			Path:        dir,
			Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: fmt.Sprintf("%04o", poolDirMode)},
		},
	}
	doc, err := pool.Marshal()
	if err != nil {
		return "", fmt.Errorf("render pool XML: %w", err)
	}
	return doc, nil
}

// checkPoolTarget refuses a pool that exists under the expected name but
// manages another directory.
func checkPoolTarget(pool *libvirt.StoragePool, dir string) error {
	doc, err := pool.GetXMLDesc(0)
	if err != nil {
		return classify(err)
	}
	var def libvirtxml.StoragePool
	if err := def.Unmarshal(doc); err != nil {
		return fmt.Errorf("parse pool XML: %w", err)
	}
	if def.Type != "dir" || def.Target == nil || filepath.Clean(def.Target.Path) != dir {
		return fmt.Errorf("pool exists as a %s pool at %q", def.Type, targetPath(def))
	}
	return nil
}

func targetPath(def libvirtxml.StoragePool) string {
	if def.Target == nil {
		return ""
	}
	return def.Target.Path
}

// startPool builds (creates the directory of) and starts an inactive pool.
func startPool(pool *libvirt.StoragePool) error {
	active, err := pool.IsActive()
	if err != nil || active {
		return classify(err)
	}
	if err := pool.Build(0); err != nil {
		return fmt.Errorf("build: %w", classify(err))
	}
	if err := pool.Create(0); err != nil {
		return fmt.Errorf("start: %w", classify(err))
	}
	return nil
}

func autostartPool(pool *libvirt.StoragePool) error {
	on, err := pool.GetAutostart()
	if err != nil || on {
		return classify(err)
	}
	if err := pool.SetAutostart(true); err != nil {
		return fmt.Errorf("set autostart: %w", classify(err))
	}
	return nil
}

// RefreshPool rescans the directory of pool name.
func (d *Driver) RefreshPool(ctx context.Context, name string) error {
	err := d.withPool(ctx, name, func(pool *libvirt.StoragePool) error {
		return pool.Refresh(0)
	})
	if err != nil {
		return fmt.Errorf("refresh storage pool %s: %w", name, err)
	}
	return nil
}

// ListPoolVolumes lists the volumes of pool name, sorted by name, as of its
// last refresh.
func (d *Driver) ListPoolVolumes(ctx context.Context, name string) ([]hypervisor.PoolVolume, error) {
	var list []hypervisor.PoolVolume
	err := d.withPool(ctx, name, func(pool *libvirt.StoragePool) error {
		vols, err := pool.ListAllStorageVolumes(0)
		if err != nil {
			return err
		}
		defer freeVolumes(vols)
		list = make([]hypervisor.PoolVolume, 0, len(vols))
		for i := range vols {
			vol, err := poolVolume(&vols[i])
			if hasCode(err, libvirt.ERR_NO_STORAGE_VOL) {
				continue
			}
			if err != nil {
				return err
			}
			list = append(list, vol)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes of storage pool %s: %w", name, err)
	}
	slices.SortFunc(list, func(a, b hypervisor.PoolVolume) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

func poolVolume(vol *libvirt.StorageVol) (hypervisor.PoolVolume, error) {
	name, err := vol.GetName()
	if err != nil {
		return hypervisor.PoolVolume{}, err
	}
	path, err := vol.GetPath()
	if err != nil {
		return hypervisor.PoolVolume{}, err
	}
	return hypervisor.PoolVolume{Name: name, Path: path}, nil
}

func freeVolumes(vols []libvirt.StorageVol) {
	for i := range vols {
		_ = vols[i].Free()
	}
}

// withPool looks pool name up and runs fn on it.
func (d *Driver) withPool(ctx context.Context, name string, fn func(*libvirt.StoragePool) error) error {
	return d.call(ctx, func(c *libvirt.Connect) error {
		pool, err := c.LookupStoragePoolByName(name)
		if err != nil {
			return err
		}
		defer pool.Free()
		return fn(pool)
	})
}
