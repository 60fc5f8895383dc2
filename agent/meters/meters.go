// Package meters measures Machines: one bulk statistics call per interval
// reads the counters of every running domain of this agent, the samples are
// kept in the store for a window, and CIMI Meters (created from the
// provider's MeterConfigurations) show them per Machine and aspect.
package meters

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"cimid/hypervisor"
	"cimid/store"
)

// Store kinds owned by this package.
const (
	kindMeters  = "meters"
	kindSamples = "samples" // "<machine id>/<unix nanoseconds, 19 digits>" -> counters
)

// Config tunes the sampler.
type Config struct {
	Instance string
	Interval time.Duration // between samples (default 10 s)
	Window   time.Duration // how long samples are kept (default 1 h)
	// MachineExists tells whether a Machine id is known to the agent.
	MachineExists func(id string) bool
}

// Service samples and serves Meters.
type Service struct {
	cfg  Config
	db   *store.DB
	drv  hypervisor.StatsDriver
	jobs Jobs
	log  *slog.Logger
	now  func() time.Time

	mu         sync.Mutex
	lastErrLog time.Time
}

// counters is one stored sample of a Machine.
type counters struct {
	CPUTimeNs     uint64 `json:"cpu"`
	VCPUs         int    `json:"vcpus"`
	MemoryKiB     uint64 `json:"mem"`
	MemoryUsedKiB uint64 `json:"memUsed,omitempty"`
	DiskRead      uint64 `json:"rd"`
	DiskWrite     uint64 `json:"wr"`
	NetRx         uint64 `json:"rx"`
	NetTx         uint64 `json:"tx"`
}

// New makes the service.
func New(cfg Config, db *store.DB, drv hypervisor.StatsDriver, jobs Jobs, log *slog.Logger) *Service {
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Window == 0 {
		cfg.Window = time.Hour
	}
	return &Service{cfg: cfg, db: db, drv: drv, jobs: jobs, log: log.With("service", "meters"), now: time.Now}
}

// Run samples every interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sampleKey(machineID string, t time.Time) string {
	return fmt.Sprintf("%s/%019d", machineID, t.UnixNano())
}

// sample reads all domains' counters in one call and stores ours.
func (s *Service) sample(ctx context.Context) {
	stats, err := s.drv.AllDomainStats(ctx)
	if err != nil {
		s.mu.Lock()
		if time.Since(s.lastErrLog) > 10*time.Minute {
			s.log.Warn("cannot read domain statistics; meters get no samples", "err", err)
			s.lastErrLog = time.Now()
		}
		s.mu.Unlock()
		return
	}
	now := s.now()
	prefix := "cimid-" + s.cfg.Instance + "-"
	cutoff := now.Add(-s.cfg.Window)
	err = s.db.Update(func(tx *store.Tx) error {
		for _, st := range stats {
			id, ok := strings.CutPrefix(st.Name, prefix)
			if !ok {
				continue
			}
			b, err := json.Marshal(counters{CPUTimeNs: st.CPUTimeNs, VCPUs: st.VCPUs, MemoryKiB: st.MemoryKiB,
				MemoryUsedKiB: st.MemoryUsedKiB, DiskRead: st.DiskReadBytes, DiskWrite: st.DiskWriteBytes,
				NetRx: st.NetRxBytes, NetTx: st.NetTxBytes})
			if err != nil {
				return err
			}
			if err := tx.Put(kindSamples, sampleKey(id, now), b); err != nil {
				return err
			}
			if _, err := tx.DeletePrefix(kindSamples, id+"/", sampleKey(id, cutoff)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("store samples", "err", err)
	}
}

// point is one stored sample with its time.
type point struct {
	at time.Time
	c  counters
}

func (s *Service) points(machineID string) ([]point, error) {
	var out []point
	err := s.db.View(func(tx *store.Tx) error {
		recs, err := tx.Scan(kindSamples, machineID+"/")
		if err != nil {
			return err
		}
		for _, r := range recs {
			var ns int64
			if _, err := fmt.Sscanf(r.ID[len(machineID)+1:], "%d", &ns); err != nil {
				continue
			}
			var c counters
			if json.Unmarshal(r.Value, &c) != nil {
				continue
			}
			out = append(out, point{at: time.Unix(0, ns).UTC(), c: c})
		}
		return nil
	})
	return out, err
}
