package meters

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cimid/agent/api"
	"cimid/agent/cimi"
	"cimid/agent/errdefs"
	"cimid/agent/job"
	"cimid/store"
)

// aspect is one provider MeterConfiguration: what it measures and how a
// value is derived from two consecutive samples.
type aspect struct {
	id, name, aspectURI, units, description string
	timeScope                               string
	value                                   func(prev, cur point) (float64, bool)
}

func counterValue(get func(counters) uint64) func(prev, cur point) (float64, bool) {
	return func(_, cur point) (float64, bool) { return float64(get(cur.c)), true }
}

var aspects = []aspect{
	{id: "cpu", name: "cpu", aspectURI: cimi.Namespace + "/aspect/cpu", units: "percent", timeScope: "Interval",
		description: "guest CPU use over the sample interval, 100 per vCPU fully busy divided by the vCPUs",
		value: func(prev, cur point) (float64, bool) {
			dt := cur.at.Sub(prev.at)
			if dt <= 0 || cur.c.CPUTimeNs < prev.c.CPUTimeNs || cur.c.VCPUs == 0 {
				return 0, false
			}
			return 100 * float64(cur.c.CPUTimeNs-prev.c.CPUTimeNs) / float64(dt.Nanoseconds()) / float64(cur.c.VCPUs), true
		}},
	{id: "memory", name: "memory", aspectURI: cimi.Namespace + "/aspect/memory", units: "KiB", timeScope: "Point",
		description: "memory used by the guest when it reports it, else its configured memory",
		value: func(_, cur point) (float64, bool) {
			if cur.c.MemoryUsedKiB > 0 {
				return float64(cur.c.MemoryUsedKiB), true
			}
			return float64(cur.c.MemoryKiB), true
		}},
	{id: "diskRead", name: "disk read", aspectURI: cimi.Namespace + "/aspect/disk", units: "bytes", timeScope: "Point",
		description: "bytes read from all disks since the guest started", value: counterValue(func(c counters) uint64 { return c.DiskRead })},
	{id: "diskWrite", name: "disk write", aspectURI: cimi.Namespace + "/aspect/disk", units: "bytes", timeScope: "Point",
		description: "bytes written to all disks since the guest started", value: counterValue(func(c counters) uint64 { return c.DiskWrite })},
	{id: "networkRx", name: "network receive", aspectURI: cimi.Namespace + "/aspect/inputBandwidth", units: "bytes", timeScope: "Point",
		description: "bytes received on all interfaces since the guest started", value: counterValue(func(c counters) uint64 { return c.NetRx })},
	{id: "networkTx", name: "network transmit", aspectURI: cimi.Namespace + "/aspect/outputBandwidth", units: "bytes", timeScope: "Point",
		description: "bytes sent on all interfaces since the guest started", value: counterValue(func(c counters) uint64 { return c.NetTx })},
}

func aspectByID(id string) (aspect, bool) {
	for _, a := range aspects {
		if a.id == id {
			return a, true
		}
	}
	return aspect{}, false
}

type meterRecord struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Created     time.Time         `json:"created"`
	MachineID   string            `json:"machineId"`
	ConfigID    string            `json:"configId"`
}

// Collections implements api.Service.
func (s *Service) Collections() []string { return []string{"meters", "meterConfigs"} }

// Routes implements api.Service.
func (s *Service) Routes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/meterConfigs", Handler: s.listConfigs},
		{Method: http.MethodGet, Path: "/meterConfigs/{id}", Handler: s.getConfig},
		{Method: http.MethodGet, Path: "/meters", Handler: s.listMeters},
		{Method: http.MethodPost, Path: "/meters", Handler: s.createMeter},
		{Method: http.MethodGet, Path: "/meters/{id}", Handler: s.getMeter},
		{Method: http.MethodDelete, Path: "/meters/{id}", Handler: s.deleteMeter},
		{Method: http.MethodGet, Path: "/meters/{id}/samples", Handler: s.listSamples},
	}
}

// Metadata implements api.Service.
func (s *Service) Metadata() []cimi.ResourceMetadata {
	return []cimi.ResourceMetadata{
		{Common: cimi.Common{Name: "Meter"}, TypeURI: cimi.TypeURI("Meter"),
			Attributes: []cimi.AttributeMeta{{Name: "targetResource", Required: true}, {Name: "aspect", Required: true}, {Name: "units"}, {Name: "samples"}},
			Capabilities: []cimi.Capability{
				{Name: "MeterConfigByValue", URI: cimi.CapabilityURI("Meter", "MeterConfigByValue"), Value: "false"},
				{Name: "MeterTemplateByValue", URI: cimi.CapabilityURI("Meter", "MeterTemplateByValue"), Value: "true"},
				{Name: "SampleWindow", URI: cimi.ExtNamespace + "/capability/Meter/SampleWindow",
					Value: fmt.Sprint(int(s.cfg.Window.Seconds())), Description: "seconds of samples kept"},
			}},
		{Common: cimi.Common{Name: "MeterConfiguration"}, TypeURI: cimi.TypeURI("MeterConfiguration"),
			Attributes: []cimi.AttributeMeta{{Name: "aspect", Required: true}, {Name: "units"}, {Name: "sampleInterval"}}},
	}
}

func (s *Service) configDoc(urls api.URLs, a aspect) *cimi.MeterConfiguration {
	id := urls.Abs("meterConfigs/" + a.id)
	return &cimi.MeterConfiguration{
		Common:       cimi.Common{ResourceURI: cimi.TypeURI("MeterConfiguration"), ID: id, Name: a.name, Description: a.description},
		AssociatedTo: []string{cimi.TypeURI("Machine")}, Aspect: a.aspectURI, Units: a.units,
		SampleInterval: int(s.cfg.Interval.Seconds()), TimeScope: a.timeScope, IsContinuous: true,
	}
}

func (s *Service) listConfigs(rq *api.Request) (api.Reply, error) {
	coll := &cimi.Collection{ResourceURI: cimi.TypeURI("MeterConfigurationCollection"), ID: rq.URLs.Abs("meterConfigs"),
		Count: len(aspects), MemberKey: "meterConfigurations"}
	for _, a := range aspects {
		coll.Members = append(coll.Members, s.configDoc(rq.URLs, a))
	}
	return api.Reply{Body: coll}, nil
}

func (s *Service) getConfig(rq *api.Request) (api.Reply, error) {
	a, ok := aspectByID(rq.Vars["id"])
	if !ok {
		return api.Reply{}, errdefs.NotFoundf("MeterConfiguration %s does not exist", rq.Vars["id"])
	}
	return api.Reply{Body: s.configDoc(rq.URLs, a)}, nil
}

// values derives a Meter's samples from the stored counters.
func (s *Service) values(m meterRecord) ([]cimi.Sample, error) {
	a, ok := aspectByID(m.ConfigID)
	if !ok {
		return nil, fmt.Errorf("meter %s has unknown configuration %q", m.ID, m.ConfigID)
	}
	pts, err := s.points(m.MachineID)
	if err != nil {
		return nil, err
	}
	var out []cimi.Sample
	for i := 1; i < len(pts); i++ {
		if v, ok := a.value(pts[i-1], pts[i]); ok {
			at := pts[i].at
			out = append(out, cimi.Sample{Timestamp: &at, Value: v})
		}
	}
	return out, nil
}

func (s *Service) meterDoc(urls api.URLs, m meterRecord) (*cimi.Meter, error) {
	a, _ := aspectByID(m.ConfigID)
	path := "meters/" + m.ID
	d := &cimi.Meter{
		Common: cimi.Common{ResourceURI: cimi.TypeURI("Meter"), ID: urls.Abs(path), Name: m.Name, Description: m.Description,
			Properties: m.Properties, Created: cimi.TimePtr(m.Created), Updated: cimi.TimePtr(m.Created)},
		TargetResource: cimi.NewRef(urls.Abs("machines/" + m.MachineID)),
		Aspect:         a.aspectURI, Units: a.units, SampleInterval: int(s.cfg.Interval.Seconds()),
		TimeScope: a.timeScope, IsContinuous: true,
		Samples:    cimi.NewRef(urls.Abs(path + "/samples")),
		Operations: []cimi.Operation{{Rel: cimi.RelDelete, Href: urls.Abs(path)}},
	}
	vals, err := s.values(m)
	if err != nil {
		return nil, err
	}
	for _, v := range vals {
		if d.MinValue == nil || v.Value < *d.MinValue {
			x := v.Value
			d.MinValue = &x
		}
		if d.MaxValue == nil || v.Value > *d.MaxValue {
			x := v.Value
			d.MaxValue = &x
		}
	}
	return d, nil
}

func (s *Service) loadMeter(id string) (meterRecord, error) {
	b, err := s.db.Get(kindMeters, id)
	if errors.Is(err, store.ErrNotFound) {
		return meterRecord{}, errdefs.NotFoundf("Meter %s does not exist", id)
	}
	if err != nil {
		return meterRecord{}, err
	}
	var m meterRecord
	return m, json.Unmarshal(b, &m)
}

func (s *Service) listMeters(rq *api.Request) (api.Reply, error) {
	recs, err := s.db.List(kindMeters)
	if err != nil {
		return api.Reply{}, err
	}
	coll := &cimi.Collection{ResourceURI: cimi.TypeURI("MeterCollection"), ID: rq.URLs.Abs("meters"), Count: len(recs), MemberKey: "meters",
		Operations: []cimi.Operation{{Rel: cimi.RelAdd, Href: rq.URLs.Abs("meters")}}}
	for _, r := range recs {
		var m meterRecord
		if json.Unmarshal(r.Value, &m) != nil {
			continue
		}
		d, err := s.meterDoc(rq.URLs, m)
		if err != nil {
			return api.Reply{}, err
		}
		coll.Members = append(coll.Members, d)
	}
	return api.Reply{Body: coll}, nil
}

func (s *Service) getMeter(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMeter(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	d, err := s.meterDoc(rq.URLs, m)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Body: d}, nil
}

func (s *Service) listSamples(rq *api.Request) (api.Reply, error) {
	m, err := s.loadMeter(rq.Vars["id"])
	if err != nil {
		return api.Reply{}, err
	}
	vals, err := s.values(m)
	if err != nil {
		return api.Reply{}, err
	}
	coll := &cimi.Collection{ResourceURI: cimi.TypeURI("SampleCollection"), ID: rq.URLs.Abs("meters/" + m.ID + "/samples"),
		Count: len(vals), MemberKey: "samples"}
	for i := range vals {
		coll.Members = append(coll.Members, &vals[i])
	}
	return api.Reply{Body: coll}, nil
}

// Jobs records the changes made at once through this service.
type Jobs interface {
	Done(rec job.Record, apply func(tx *store.Tx) error) (job.Record, error)
}

func (s *Service) createMeter(rq *api.Request) (api.Reply, error) {
	var body cimi.MeterCreate
	if err := rq.Decode(&body, "MeterCreate", "Meter"); err != nil {
		return api.Reply{}, err
	}
	t := body.MeterTemplate
	if t == nil || t.TargetResource == nil || t.MeterConfig == nil {
		return api.Reply{}, errdefs.Invalidf("meterTemplate with targetResource and meterConfig references is required")
	}
	if t.Href != "" {
		return api.Reply{}, errdefs.Invalidf("MeterTemplates are given by value here; a template reference is not accepted")
	}
	target, ok := rq.URLs.Path(t.TargetResource.Href)
	machineID, isMachine := strings.CutPrefix(target, "machines/")
	if !ok || !isMachine || strings.Contains(machineID, "/") || machineID == "" {
		return api.Reply{}, errdefs.Invalidf("targetResource %q is not a Machine of this provider", t.TargetResource.Href)
	}
	if s.cfg.MachineExists != nil && !s.cfg.MachineExists(machineID) {
		return api.Reply{}, errdefs.Invalidf("Machine %s does not exist", machineID)
	}
	cfgPath, _ := rq.URLs.Path(t.MeterConfig.Href)
	configID, _ := strings.CutPrefix(cfgPath, "meterConfigs/")
	if _, ok := aspectByID(configID); !ok {
		return api.Reply{}, errdefs.Invalidf("meterConfig %q is not one of this provider's MeterConfigurations", t.MeterConfig.Href)
	}
	m := meterRecord{ID: job.NewID(), Name: body.Name, Description: body.Description, Properties: body.Properties,
		Created: s.now(), MachineID: machineID, ConfigID: configID}
	b, err := json.Marshal(m)
	if err != nil {
		return api.Reply{}, err
	}
	path := "meters/" + m.ID
	j, err := s.jobs.Done(job.Record{Kind: "add", Action: cimi.RelAdd, Name: "create Meter", Target: "meters", Affected: []string{"meters", path}},
		func(tx *store.Tx) error { return tx.Put(kindMeters, m.ID, b) })
	if err != nil {
		return api.Reply{}, err
	}
	d, err := s.meterDoc(rq.URLs, m)
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusCreated, Body: d, Location: path, JobID: j.ID}, nil
}

func (s *Service) deleteMeter(rq *api.Request) (api.Reply, error) {
	id := rq.Vars["id"]
	j, err := s.jobs.Done(job.Record{Kind: "delete", Action: cimi.RelDelete, Name: "delete Meter", Target: "meters/" + id},
		func(tx *store.Tx) error {
			if _, err := tx.Get(kindMeters, id); err != nil {
				return errdefs.NotFoundf("Meter %s does not exist", id)
			}
			return tx.Delete(kindMeters, id)
		})
	if err != nil {
		return api.Reply{}, err
	}
	return api.Reply{Status: http.StatusOK, JobID: j.ID}, nil
}
