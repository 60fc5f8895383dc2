// Package meters measures Machines: each reading of the shared statistics
// poller (agent/domstats) gives the counters of every running domain of
// this agent, the samples are kept in the store for a window, and CIMI
// Meters (created from the provider's MeterConfigurations) show them per
// Machine and aspect.
package meters

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cimid/agent/domstats"
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
	jobs Jobs
	log  *slog.Logger
	now  func() time.Time

	// failing is whether the last reading had no statistics, so that a
	// lasting failure is logged once and its end once.
	failing bool
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

// New makes the service. It samples what it is given through Observe.
func New(cfg Config, db *store.DB, jobs Jobs, log *slog.Logger) *Service {
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Window == 0 {
		cfg.Window = time.Hour
	}
	return &Service{cfg: cfg, db: db, jobs: jobs, log: log.With("service", "meters"), now: time.Now}
}

// Interval is how often the service wants a reading: the sample interval
// its MeterConfigurations advertise.
func (s *Service) Interval() time.Duration { return s.cfg.Interval }

func sampleKey(machineID string, t time.Time) string {
	return fmt.Sprintf("%s/%019d", machineID, t.UnixNano())
}

// Observe stores the counters of this agent's domains in a reading as one
// sample each, and drops the samples older than the window. It is meant to
// be subscribed to the statistics poller and called from one goroutine.
func (s *Service) Observe(snap domstats.Snapshot) {
	if snap.Err != nil {
		if !s.failing {
			s.log.Warn("cannot read domain statistics; meters get no samples until they can", "err", snap.Err)
		}
		s.failing = true
		return
	}
	if s.failing {
		s.log.Info("domain statistics readable again; meters get samples")
		s.failing = false
	}
	prefix := "cimid-" + s.cfg.Instance + "-"
	cutoff := snap.At.Add(-s.cfg.Window)
	err := s.db.Update(func(tx *store.Tx) error {
		for _, st := range snap.Stats {
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
			if err := tx.Put(kindSamples, sampleKey(id, snap.At), b); err != nil {
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
