package libvirt

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// statsTypes are the groups of counters AllDomainStats asks for.
const statsTypes = libvirt.DOMAIN_STATS_STATE | libvirt.DOMAIN_STATS_CPU_TOTAL | libvirt.DOMAIN_STATS_BALLOON |
	libvirt.DOMAIN_STATS_VCPU | libvirt.DOMAIN_STATS_INTERFACE | libvirt.DOMAIN_STATS_BLOCK

// AllDomainStats reads the counters of every active (running or paused)
// domain in one call, sorted by name. Groups a driver does not support are
// left at zero.
func (d *Driver) AllDomainStats(ctx context.Context) ([]hypervisor.DomainStats, error) {
	var list []hypervisor.DomainStats
	err := d.call(ctx, func(c *libvirt.Connect) error {
		stats, err := c.GetAllDomainStats(nil, statsTypes, libvirt.CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
		if err != nil {
			return err
		}
		defer func() {
			for i := range stats {
				if stats[i].Domain != nil {
					_ = stats[i].Domain.Free()
				}
			}
		}()
		list = make([]hypervisor.DomainStats, 0, len(stats))
		for i := range stats {
			if stats[i].Domain == nil {
				continue
			}
			name, err := stats[i].Domain.GetName()
			if err != nil {
				return err
			}
			list = append(list, domainStats(name, &stats[i]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read domain statistics: %w", err)
	}
	slices.SortFunc(list, func(a, b hypervisor.DomainStats) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// domainStats maps libvirt's typed parameters to DomainStats, summing the
// block and interface counters over all devices.
func domainStats(name string, s *libvirt.DomainStats) hypervisor.DomainStats {
	out := hypervisor.DomainStats{Name: name}
	if s.Cpu != nil && s.Cpu.TimeSet {
		out.CPUTimeNs = s.Cpu.Time
	}
	for _, v := range s.Vcpu {
		if !v.StateSet || v.State != libvirt.VCPU_OFFLINE {
			out.VCPUs++
		}
	}
	if b := s.Balloon; b != nil {
		switch {
		case b.CurrentSet:
			out.MemoryKiB = b.Current
		case b.MaximumSet:
			out.MemoryKiB = b.Maximum
		}
		if b.AvailableSet && b.UnusedSet && b.Available >= b.Unused {
			out.MemoryUsedKiB = b.Available - b.Unused
		}
	}
	for _, blk := range s.Block {
		out.DiskReadBytes += blk.RdBytes
		out.DiskWriteBytes += blk.WrBytes
	}
	for _, n := range s.Net {
		out.NetRxBytes += n.RxBytes
		out.NetTxBytes += n.TxBytes
	}
	return out
}
