package system

import (
	"bufio"
	"cimid/agent/records"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/compute"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/hypervisor/qemuimg"
	"cimid/ovf"
	"cimid/store"
)

// An export writes stopped Machines: their disks are read as they are at
// rest, so the package is consistent without a snapshot. A Machine that is
// not STOPPED is refused (409); its Job holds the Machines' locks, so a
// start asked for meanwhile waits for the export to end.

// exportParams are the parameters of an export Job.
type exportParams struct {
	SystemID    string   `json:"systemId,omitempty"`
	MachineIDs  []string `json:"machineIds"`
	Destination string   `json:"destination"`
}

// parseDestination checks an export's format and destination: a file://
// path on this host ending in .ova, in an existing directory.
func parseDestination(act cimi.Action) (string, error) {
	if f := strings.TrimSpace(act.Format); f != "" && f != cimi.MediaTypeOVF {
		return "", errdefs.Invalidf("format %q is not offered; exports are %s (an OVA)", f, cimi.MediaTypeOVF)
	}
	raw := strings.TrimSpace(act.Destination)
	if raw == "" {
		return "", errdefs.Invalidf("destination is required: a file:// path on this host ending in .ova")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errdefs.Invalidf("destination %q is not a URI: %v", raw, err)
	}
	if u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || u.RawQuery != "" || u.Fragment != "" {
		return "", errdefs.Invalidf("destination %q: only file:// paths on this host are offered (file:///path/name.ova)", raw)
	}
	p := u.Path
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", errdefs.Invalidf("destination %q: the path must be absolute and clean", raw)
	}
	if !strings.EqualFold(filepath.Ext(p), ".ova") {
		return "", errdefs.Invalidf("destination %q: the file name must end in .ova", raw)
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
		return "", errdefs.Invalidf("destination %q: directory %s does not exist", raw, filepath.Dir(p))
	}
	if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
		return "", errdefs.Invalidf("destination %q exists and is not a regular file", raw)
	}
	return p, nil
}

func (s *Service) exportMachine(rq *api.Request) (api.Reply, error) {
	act, err := rq.DecodeAction("export")
	if err != nil {
		return api.Reply{}, err
	}
	dest, err := parseDestination(act)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	path := machinePath(id)
	sharers, err := s.sharingMachines([]string{id})
	if err != nil {
		return api.Reply{}, err
	}
	locks := []string{path}
	for _, o := range sharers {
		locks = append(locks, machinePath(o))
	}
	j, err := s.submit(job.Record{Kind: "machine.export", Action: cimi.ActionURI("export"), Name: "export Machine", Target: path, Locks: locks},
		exportParams{MachineIDs: []string{id}, Destination: dest},
		func(tx *store.Tx) error {
			state, err := s.compute.MachineState(tx, id)
			if err != nil {
				return err
			}
			if state != cimi.StateStopped {
				return errdefs.Conflictf("Machine %s is %s; stop it first (an export copies the disks of a STOPPED Machine)", id, state)
			}
			return s.checkSharers(tx, []string{id}, sharers)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// eachSharer calls fn, in tx, for every Machine other than ids that has a
// shareable Volume of one of ids attached, with the exported Machine and
// the Volume they share.
func (s *Service) eachSharer(tx *store.Tx, ids []string, fn func(id, volumeID, other string) error) error {
	for _, id := range ids {
		d, err := s.compute.DescribeMachine(tx, id)
		if err != nil {
			return err
		}
		for _, disk := range d.Disks {
			for _, o := range disk.SharedWith {
				if slices.Contains(ids, o) {
					continue
				}
				if err := fn(id, disk.VolumeID, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// sharingMachines lists the Machines, other than ids, that have a
// shareable Volume of one of ids attached. An export copies that Volume,
// so its Job locks them and they must stay STOPPED until it ends.
func (s *Service) sharingMachines(ids []string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *store.Tx) error {
		return s.eachSharer(tx, ids, func(_, _, other string) error {
			if !slices.Contains(out, other) {
				out = append(out, other)
			}
			return nil
		})
	})
	return out, err
}

// checkSharers refuses, in tx, an export of ids unless every Machine that
// shares one of their Volumes is STOPPED and among the Machines the
// export's Job locks. It runs when the Job is submitted: from then on the
// locks keep those Machines from starting (a start asked for meanwhile is
// recorded, and waits).
func (s *Service) checkSharers(tx *store.Tx, ids, locked []string) error {
	return s.eachSharer(tx, ids, func(id, volumeID, other string) error {
		if !slices.Contains(locked, other) {
			return errdefs.Conflictf("Volume %s was attached to Machine %s meanwhile; try again", volumeID, other)
		}
		state, err := s.compute.MachineState(tx, other)
		if err != nil {
			return err
		}
		if state != cimi.StateStopped {
			return errdefs.Conflictf("Volume %s of Machine %s is shared with Machine %s, which is %s; stop it first (an export copies the Volume, which it writes)", volumeID, id, other, state)
		}
		return nil
	})
}

func (s *Service) exportSystem(rq *api.Request) (api.Reply, error) {
	act, err := rq.DecodeAction("export")
	if err != nil {
		return api.Reply{}, err
	}
	dest, err := parseDestination(act)
	if err != nil {
		return api.Reply{}, err
	}
	id := rq.Vars["id"]
	rec, v, err := s.readSystem(id)
	if err != nil {
		return api.Reply{}, err
	}
	if rec.State == stateCreating || rec.State == stateDeleting {
		return api.Reply{}, errdefs.Conflictf("System %s is %s", id, rec.State)
	}
	if len(v.machines) == 0 {
		return api.Reply{}, errdefs.Conflictf("System %s has no Machines to export", id)
	}
	path := systemPath(id)
	locks := []string{path}
	p := exportParams{SystemID: id, Destination: dest}
	for _, m := range v.machines {
		locks = append(locks, machinePath(m.ID))
		p.MachineIDs = append(p.MachineIDs, m.ID)
	}
	sharers, err := s.sharingMachines(p.MachineIDs)
	if err != nil {
		return api.Reply{}, err
	}
	for _, o := range sharers {
		locks = append(locks, machinePath(o))
	}
	j, err := s.submit(job.Record{Kind: "system.export", Action: cimi.ActionURI("export"), Name: "export System", Target: path, Locks: locks}, p,
		func(tx *store.Tx) error {
			for _, mid := range p.MachineIDs {
				state, err := s.compute.MachineState(tx, mid)
				if err != nil {
					return err
				}
				if state != cimi.StateStopped {
					return errdefs.Conflictf("Machine %s of System %s is %s; stop the System first (an export copies the disks of STOPPED Machines)", mid, id, state)
				}
			}
			return s.checkSharers(tx, p.MachineIDs, sharers)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusAccepted, JobID: j.ID, Location: path}, nil
}

// exportDisk is one disk being exported.
type exportDisk struct {
	src      compute.DescribedDisk
	tmp      string // the streamOptimized VMDK in the pool
	href     string
	capacity int64
	size     int64
}

// exportedMachine is one Machine being exported.
type exportedMachine struct {
	desc  compute.MachineDescription
	orig  member
	disks []*exportDisk
	nics  []ovf.NICSpec
}

// exportTmp names the temporary files of an export Job in the pool.
func (s *Service) exportTmp(jobID string) string {
	return filepath.Join(s.compute.PoolDir(), "export-"+jobID)
}

// partName is the temporary name an OVA is written under beside its
// destination, renamed into place once complete.
func partName(dest, jobID string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+"."+jobID+".part")
}

// runExport converts every disk to a streamOptimized VMDK in the pool,
// encodes the descriptor, writes the OVA under a temporary name beside
// the destination and renames it into place. Temporary files go in every
// case; a failed export leaves the destination as it was.
func (s *Service) runExport(ctx context.Context, x *job.Exec) error {
	var p exportParams
	if err := x.Params(&p); err != nil {
		return err
	}
	jobID := x.Record().ID
	defer s.removeExportTmp(jobID)
	if done, err := s.finishInterruptedRename(x, p); done || err != nil {
		return err
	}
	machines, sysRec, err := s.describeExport(p)
	if err != nil {
		return err
	}
	prog := &progress{x: x}
	var weights []int64
	for _, m := range machines {
		for _, d := range m.disks {
			w := int64(1 << 20)
			if info, err := qemuimg.Info(ctx, d.src.Path); err == nil {
				w = max(info.ActualSize, w)
				d.capacity = info.VirtualSize
			} else {
				return fmt.Errorf("disk %s of Machine %s: %w", d.src.Target, m.desc.ID, err)
			}
			weights = append(weights, w)
			prog.total += w
		}
	}
	// Converting is most of the work; hashing and writing the archive read
	// the VMDKs twice more.
	convertShare := prog.total
	prog.total += prog.total / 4
	k := 0
	for mi, m := range machines {
		for di, d := range m.disks {
			d.tmp = fmt.Sprintf("%s-%d-%d.vmdk", s.exportTmp(jobID), mi, di)
			if err := qemuimg.Convert(ctx, d.src.Path, d.src.Format, d.tmp, qemuimg.FormatVMDK, prog.step(weights[k])); err != nil {
				return fmt.Errorf("disk %s of Machine %s: %w", d.src.Target, m.desc.ID, err)
			}
			fi, err := os.Stat(d.tmp)
			if err != nil {
				return err
			}
			d.size = fi.Size()
			prog.add(weights[k])
			k++
		}
	}
	spec := exportSpec(machines, sysRec, p)
	descriptor, err := ovf.Encode(spec)
	if err != nil {
		return fmt.Errorf("encode the descriptor: %w", err)
	}
	base := strings.TrimSuffix(filepath.Base(p.Destination), filepath.Ext(p.Destination))
	ova := ovf.OVA{DescriptorName: safeName(base, "package") + ".ovf", Descriptor: descriptor}
	var total int64
	for _, m := range machines {
		for _, d := range m.disks {
			tmp := d.tmp
			ova.Files = append(ova.Files, ovf.OVAFile{Name: d.href, Size: d.size, Open: func() (io.ReadCloser, error) { return os.Open(tmp) }})
			total += 2 * d.size
		}
	}
	var read int64
	for i := range ova.Files {
		open := ova.Files[i].Open
		ova.Files[i].Open = func() (io.ReadCloser, error) {
			rc, err := open()
			if err != nil {
				return nil, err
			}
			return readCloser{Reader: &countingReader{r: rc, n: func(n int) {
				read += int64(n)
				prog.report((prog.total - convertShare) * min(read, total) / max(total, 1))
			}}, Closer: rc}, nil
		}
	}
	size, err := s.writeOVA(ctx, x, ova, p.Destination)
	if err != nil {
		return err
	}
	x.Commit()
	x.SetMessage(fmt.Sprintf("%d Machine(s) exported to %s (%d bytes)", len(machines), p.Destination, size))
	return nil
}

// describeExport reads the Machines to export, their disks and NICs, and
// the System they belong to.
func (s *Service) describeExport(p exportParams) ([]*exportedMachine, *systemRecord, error) {
	var machines []*exportedMachine
	var sysRec *systemRecord
	var nets []networkView
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		if nets, err = listNetworks(tx); err != nil {
			return err
		}
		systems, err := records.List[systemRecord](tx, kindSystems)
		if err != nil {
			return err
		}
		for _, id := range p.MachineIDs {
			d, err := s.compute.DescribeMachine(tx, id)
			if err != nil {
				return err
			}
			if d.State != cimi.StateStopped {
				return errdefs.Conflictf("Machine %s is %s; an export needs it STOPPED", id, d.State)
			}
			m := &exportedMachine{desc: d}
			for i := range systems {
				if o, ok := systems[i].member(id); ok {
					m.orig = o
				}
				if systems[i].ID == p.SystemID {
					sysRec = &systems[i]
				}
			}
			for _, disk := range d.Disks {
				m.disks = append(m.disks, &exportDisk{src: disk})
			}
			machines = append(machines, m)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	names := map[string]string{}
	for _, n := range nets {
		names[n.ID] = n.label()
	}
	used := map[string]bool{}
	for i, m := range machines {
		ifaces, err := s.compute.MachineInterfaces(m.desc.ID)
		if err != nil {
			return nil, nil, err
		}
		for _, iface := range ifaces {
			name := firstNonEmpty(names[iface.NetworkID], iface.NetworkID)
			m.nics = append(m.nics, ovf.NICSpec{Network: name, Model: ovfNICModel(iface.Model), MAC: iface.MAC})
		}
		stem := safeName(m.desc.Name, fmt.Sprintf("vm%d", i+1))
		if used[stem] {
			stem = fmt.Sprintf("%s-%d", stem, i+1)
		}
		used[stem] = true
		for di, d := range m.disks {
			d.href = fmt.Sprintf("%s-disk%d.vmdk", stem, di+1)
		}
	}
	return machines, sysRec, nil
}

// exportSpec is the descriptor of the export.
func exportSpec(machines []*exportedMachine, sys *systemRecord, p exportParams) ovf.Spec {
	var spec ovf.Spec
	if sys != nil && p.SystemID != "" {
		spec.ID = safeName(sys.Name, "system")
		spec.Name, spec.Description = firstNonEmpty(sys.Name, sys.ID), sys.Description
	}
	for i, m := range machines {
		vs := ovf.SystemSpec{
			ID:          safeName(m.desc.Name, fmt.Sprintf("vm%d", i+1)),
			Name:        firstNonEmpty(m.desc.Name, m.desc.ID),
			Description: m.desc.Description,
			CPUs:        m.desc.CPU,
			MemoryBytes: m.desc.MemoryKiB * 1024,
			OSType:      m.orig.OSType,
			OSID:        m.orig.OSID,
			Firmware:    m.orig.Firmware,
			NICs:        m.nics,
		}
		if vs.ID == spec.ID {
			vs.ID += "-vm"
		}
		for _, d := range m.disks {
			vs.Disks = append(vs.Disks, ovf.DiskSpec{Href: d.href, Size: d.size, Capacity: d.capacity, Format: "vmdk/streamOptimized"})
		}
		spec.Systems = append(spec.Systems, vs)
	}
	return spec
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeName turns a display name into a file or id stem.
func safeName(name, fallback string) string {
	n := strings.Trim(unsafeName.ReplaceAllString(name, "-"), "-.")
	if n == "" {
		return fallback
	}
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// writeOVA writes the archive under a temporary name beside dest, makes it
// durable and renames it over dest. It returns the archive's size.
func (s *Service) writeOVA(ctx context.Context, x *job.Exec, ova ovf.OVA, dest string) (int64, error) {
	part := partName(dest, x.Record().ID)
	f, err := os.OpenFile(part, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", part, err)
	}
	x.OnUndo("remove the partial archive", func(context.Context) error { return removeIfExists(part) })
	bw := bufio.NewWriterSize(f, 1<<20)
	err = ova.Write(ctx, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", dest, err)
	}
	fi, err := os.Stat(part)
	if err != nil {
		return 0, err
	}
	// From here a restart completes the rename instead of starting over.
	if err := x.SetCheckpoint(exportCheckpoint{Renaming: true}); err != nil {
		return 0, err
	}
	if err := os.Rename(part, dest); err != nil {
		return 0, fmt.Errorf("move the archive into place: %w", err)
	}
	if d, err := os.Open(filepath.Dir(dest)); err == nil {
		d.Sync()
		d.Close()
	}
	return fi.Size(), nil
}

// exportCheckpoint marks an export whose archive is complete and being
// moved into place.
type exportCheckpoint struct {
	Renaming bool `json:"renaming"`
}

// finishInterruptedRename handles a resumed export: one that had written
// its archive completes the move into place and succeeds; any other starts
// over, without the partial archive of the interrupted run.
func (s *Service) finishInterruptedRename(x *job.Exec, p exportParams) (bool, error) {
	if !x.Resumed() || p.Destination == "" {
		return false, nil
	}
	part := partName(p.Destination, x.Record().ID)
	var cp exportCheckpoint
	if ok, err := x.Checkpoint(&cp); err != nil {
		return false, err
	} else if !ok || !cp.Renaming {
		return false, removeIfExists(part)
	}
	if _, err := os.Stat(part); err == nil {
		if err := os.Rename(part, p.Destination); err != nil {
			return false, fmt.Errorf("move the archive into place: %w", err)
		}
	}
	if _, err := os.Stat(p.Destination); err != nil {
		return false, fmt.Errorf("the archive written before the restart is gone: %w", err)
	}
	x.SetMessage("exported to " + p.Destination + " (completed after an agent restart)")
	return true, nil
}

func (s *Service) removeExportTmp(jobID string) {
	matches, _ := filepath.Glob(s.exportTmp(jobID) + "-*")
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove temporary export file", "file", m, "err", err)
		}
	}
}

// cleanupExport ends an export interrupted by a restart or stopped before
// it ran: its temporary files go, the destination stays as it was.
func (s *Service) cleanupExport(ctx context.Context, rec job.Record) error {
	var p exportParams
	if err := jsonUnmarshal(rec.Params, &p); err != nil {
		return err
	}
	s.removeExportTmp(rec.ID)
	if p.Destination != "" {
		return removeIfExists(partName(p.Destination, rec.ID))
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
