package main

import (
	"fmt"
	"strconv"
	"strings"

	"cimid/cmd/cimi/internal/cimiclient"
)

// column is one column of a listing.
type column struct {
	header string
	value  func(r *cimiclient.Resource, v view) string
}

// stateful reports whether members of the collection always get a STATE
// column, even when the server left it empty.
func stateful(key string) bool {
	switch key {
	case "jobs", "machines", "machineImages", "volumes", "networks", "systems":
		return true
	}
	return false
}

// tableColumns chooses the columns for members of the collection under the
// CEP key: ID and NAME, STATE when the members have one, then the columns
// particular to the type.
func tableColumns(key string, members []cimiclient.Resource) []column {
	cols := []column{
		{"ID", func(r *cimiclient.Resource, _ view) string { return cimiclient.LastSegment(r.ID) }},
		{"NAME", func(r *cimiclient.Resource, _ view) string { return r.Name }},
	}
	if stateful(key) || anyState(members) {
		cols = append(cols, column{"STATE", func(r *cimiclient.Resource, _ view) string { return r.State }})
	}
	return append(cols, typeColumns(key)...)
}

func anyState(members []cimiclient.Resource) bool {
	for i := range members {
		if members[i].State != "" {
			return true
		}
	}
	return false
}

func typeColumns(key string) []column {
	switch key {
	case "jobs":
		return []column{
			{"ACTION", func(r *cimiclient.Resource, _ view) string { return cimiclient.ShortRel(r.String("action")) }},
			{"TARGET", refColumn("targetResource")},
			{"PROGRESS", func(r *cimiclient.Resource, _ view) string { return percent(r.Int("progress")) }},
			{"STATUS MESSAGE", func(r *cimiclient.Resource, _ view) string { return truncate(r.String("statusMessage"), 48) }},
		}
	case "machines":
		return []column{
			{"CPU", intColumn("cpu")},
			{"MEMORY", memoryColumn("memory")},
		}
	case "machineConfigs":
		return []column{
			{"CPU", intColumn("cpu")},
			{"MEMORY", memoryColumn("memory")},
			{"DISK", diskColumn},
		}
	case "machineImages":
		return []column{
			{"TYPE", stringColumn("type")},
			{"LOCATION", stringColumn("imageLocation")},
		}
	case "volumes", "volumeImages", "volumeConfigs":
		return volumeColumns(key)
	case "networks":
		return []column{
			{"FORWARD", stringColumn("forwardMode")},
			{"SUBNET", stringColumn("subnet")},
			{"BRIDGE", stringColumn("bridge")},
		}
	case "credentials":
		return []column{
			{"USER", stringColumn("userName")},
			{"KEY", func(r *cimiclient.Resource, _ view) string { return truncate(r.String("key"), 40) }},
		}
	case "addresses":
		return []column{
			{"IP", stringColumn("ip")},
			{"ALLOCATION", stringColumn("allocation")},
			{"MAC", stringColumn("macAddress")},
			{"NETWORK", refColumn("network")},
		}
	case "machineTemplates":
		return []column{
			{"CONFIG", refColumn("machineConfig")},
			{"IMAGE", refColumn("machineImage")},
			{"INITIAL STATE", stringColumn("initialState")},
		}
	}
	return nil
}

func stringColumn(name string) func(*cimiclient.Resource, view) string {
	return func(r *cimiclient.Resource, _ view) string { return r.String(name) }
}

func intColumn(name string) func(*cimiclient.Resource, view) string {
	return func(r *cimiclient.Resource, _ view) string {
		if n, ok := r.Int(name); ok {
			return strconv.FormatInt(n, 10)
		}
		return ""
	}
}

func memoryColumn(name string) func(*cimiclient.Resource, view) string {
	return func(r *cimiclient.Resource, _ view) string {
		if n, ok := r.Int(name); ok {
			return humanKiB(n)
		}
		return ""
	}
}

// refColumn shows a reference attribute as a path under the base URI; a
// structure given by value without an href shows as "(inline)".
func refColumn(name string) func(*cimiclient.Resource, view) string {
	return func(r *cimiclient.Resource, v view) string {
		if href := r.Href(name); href != "" {
			return v.short(href)
		}
		if r.Object(name) != nil {
			return "(inline)"
		}
		return ""
	}
}

// diskColumn lists the capacities of a configuration's disks.
func diskColumn(r *cimiclient.Resource, _ view) string {
	var sizes []string
	for _, d := range r.Objects("disks") {
		if n, ok := cimiclient.IntField(d, "capacity"); ok {
			sizes = append(sizes, humanKiB(n))
		}
	}
	return strings.Join(sizes, ", ")
}

func percent(n int64, ok bool) string {
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d%%", n)
}

// humanKiB renders a size given in KiB with binary units: 4194304 is
// "4 GiB", 1572864 is "1.5 GiB".
func humanKiB(kib int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(kib), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[i]
}
