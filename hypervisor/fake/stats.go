package fake

import (
	"context"
	"slices"
	"strings"
	"time"

	"cimid/hypervisor"
)

// SetStats sets the counters AllDomainStats reports for domain name while
// it is active; Name is filled in. Without it, a domain reports its vCPUs
// and memory and the time since it booted as CPU time.
func (d *Driver) SetStats(name string, stats hypervisor.DomainStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	stats.Name = name
	d.stats[name] = stats
}

// AllDomainStats reports every active (running or paused) domain, sorted by
// name.
func (d *Driver) AllDomainStats(ctx context.Context) ([]hypervisor.DomainStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.statsCalls++
	if err := d.enter(ctx, "AllDomainStats"); err != nil {
		return nil, err
	}
	list := []hypervisor.DomainStats{}
	for name, dom := range d.domains {
		if !dom.active() {
			continue
		}
		if s, ok := d.stats[name]; ok {
			list = append(list, s)
			continue
		}
		list = append(list, hypervisor.DomainStats{
			Name:      name,
			CPUTimeNs: uint64(max(time.Since(dom.bootedAt), time.Nanosecond)),
			VCPUs:     dom.spec.VCPUs,
			MemoryKiB: dom.spec.MemoryKiB,
		})
	}
	slices.SortFunc(list, func(a, b hypervisor.DomainStats) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// StatsCalls is how many times AllDomainStats was called, failed calls
// included.
func (d *Driver) StatsCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statsCalls
}
