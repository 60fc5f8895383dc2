package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"cimid/cmd/cimi/internal/cimiclient"
)

func volumeKind() kind {
	return kind{noun: "volume", collection: "volumes", deletable: true}
}

func volumeConfigKind() kind {
	return kind{noun: "volume config", collection: "volumeConfigs"}
}

func volumeImageKind() kind {
	return kind{noun: "volume image", collection: "volumeImages", deletable: true}
}

func (a *app) volumeCommand() *cobra.Command {
	k := volumeKind()
	return a.kindCommand(k, "Create, list, grow, snapshot and delete volumes",
		a.volumeCreateCommand(k), a.volumeResizeCommand(k), a.volumeSnapshotCommand(k))
}

// volumeConfig is a VolumeConfiguration by reference (Href) or by value.
type volumeConfig struct {
	Href       string `json:"href,omitempty"`
	Capacity   int64  `json:"capacity,omitempty"`
	Format     string `json:"format,omitempty"`
	DiskFormat string `json:"diskFormat,omitempty"`
	Shareable  bool   `json:"shareable,omitempty"`
}

type volumeTemplate struct {
	Href         string          `json:"href,omitempty"`
	VolumeConfig *volumeConfig   `json:"volumeConfig,omitempty"`
	VolumeImage  *cimiclient.Ref `json:"volumeImage,omitempty"`
}

type volumeCreate struct {
	ResourceURI    string            `json:"resourceURI"`
	Name           string            `json:"name"`
	Description    string            `json:"description,omitempty"`
	Properties     map[string]string `json:"properties,omitempty"`
	VolumeTemplate volumeTemplate    `json:"volumeTemplate"`
}

func (a *app) volumeCreateCommand(k kind) *cobra.Command {
	var (
		c                                 createFlags
		capacity, config, template, image string
		diskFormat, filesystem            string
		shareable                         bool
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME (--capacity SIZE | --config REF | --template REF | --image REF)",
		Short: "Create a volume",
		Long: `Create a volume: empty (--capacity, with --disk-format qcow2 or raw, and a
file system with --format), of a stored configuration (--config), from a
stored template (--template), or as a copy of a volume image (--image, with
--capacity to make it larger). With --shareable the volume can be attached to
several machines at once; it is then raw. SIZE takes a binary unit: 512M,
10G, 1.5GiB; a bare number counts KiB. Waits for the job and prints the new
volume's URL.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runE(func(ctx context.Context, _ []string) error {
			var tmpl volumeTemplate
			byValue := volumeConfig{Format: filesystem, DiskFormat: diskFormat, Shareable: shareable}
			if capacity != "" {
				kib, err := parseSizeKiB(capacity)
				if err != nil {
					return err
				}
				byValue.Capacity = kib
			}
			if byValue != (volumeConfig{}) {
				tmpl.VolumeConfig = &byValue
			}
			prefix, err := a.client.Prefix(ctx)
			if err != nil {
				return err
			}
			if template != "" {
				if tmpl.Href, err = a.client.ResolveMember(ctx, "volumeTemplates", template); err != nil {
					return err
				}
			}
			if config != "" {
				href, err := a.client.ResolveMember(ctx, volumeConfigKind().collection, config)
				if err != nil {
					return err
				}
				tmpl.VolumeConfig = &volumeConfig{Href: href}
			}
			if image != "" {
				href, err := a.client.ResolveMember(ctx, volumeImageKind().collection, image)
				if err != nil {
					return err
				}
				tmpl.VolumeImage = &cimiclient.Ref{Href: href}
			}
			body := volumeCreate{ResourceURI: prefix + "/VolumeCreate", Name: c.name, Description: c.description,
				Properties: c.properties, VolumeTemplate: tmpl}
			return a.create(ctx, k, c.name, body, c.noWait)
		}),
	}
	c.register(cmd, k.noun)
	f := cmd.Flags()
	f.StringVar(&capacity, "capacity", "", "size of the volume, e.g. 10G")
	f.StringVar(&config, "config", "", "volume configuration: ID, path or URL")
	f.StringVar(&template, "template", "", "volume template: ID, path or URL")
	f.StringVar(&image, "image", "", "volume image to copy: ID, path or URL")
	f.StringVar(&diskFormat, "disk-format", "", "image format of the volume: qcow2 (default) or raw")
	f.StringVar(&filesystem, "format", "", "file system to make on the new volume, e.g. ext4 (default: none)")
	f.BoolVar(&shareable, "shareable", false, "let the volume be attached to several machines at once (raw)")
	cmd.MarkFlagsOneRequired("capacity", "config", "template", "image")
	cmd.MarkFlagsMutuallyExclusive("config", "capacity")
	cmd.MarkFlagsMutuallyExclusive("config", "disk-format")
	cmd.MarkFlagsMutuallyExclusive("config", "format")
	cmd.MarkFlagsMutuallyExclusive("config", "shareable")
	return cmd
}

func (a *app) volumeResizeCommand(k kind) *cobra.Command {
	var (
		capacity string
		noWait   bool
	)
	cmd := &cobra.Command{
		Use:   "resize ID --capacity SIZE",
		Short: "Grow a volume (a running guest that uses it sees the new size at once)",
		Args:  exactArgs(1, "one volume ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			kib, err := parseSizeKiB(capacity)
			if err != nil {
				return err
			}
			r, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			body := map[string]any{"resourceURI": cimiclient.PrefixOf(r.ResourceURI) + "/Volume", "capacity": kib}
			acc, err := a.client.Update(ctx, r, body, "capacity")
			if err != nil {
				return err
			}
			return a.settle(ctx, acc, noWait, false)
		}),
	}
	cmd.Flags().StringVar(&capacity, "capacity", "", "new size of the volume, e.g. 20G")
	_ = cmd.MarkFlagRequired("capacity")
	noWaitFlag(cmd, &noWait)
	return cmd
}

// imageRequest is the body of the operations that make an image of a
// resource: a MachineImageCreate or VolumeImageCreate.
type imageRequest struct {
	ResourceURI   string            `json:"resourceURI"`
	Name          string            `json:"name,omitempty"`
	Description   string            `json:"description,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
	Type          string            `json:"type,omitempty"`
	ImageLocation string            `json:"imageLocation,omitempty"`
}

func (a *app) volumeSnapshotCommand(k kind) *cobra.Command {
	var c createFlags
	cmd := &cobra.Command{
		Use:   "snapshot ID --name NAME",
		Short: "Copy a volume into a new volume image (the volume must be detached or its machines stopped)",
		Args:  exactArgs(1, "one volume ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			r, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			body := imageRequest{ResourceURI: cimiclient.PrefixOf(r.ResourceURI) + "/VolumeImageCreate", Name: c.name,
				Description: c.description, Properties: c.properties, ImageLocation: r.ID}
			return a.post(ctx, r, "snapshot", body, c.noWait, true)
		}),
	}
	c.register(cmd, "volume image")
	return cmd
}

// machineStorageCommands are the machine subcommands for volumes and
// images.
func (a *app) machineStorageCommands(k kind) []*cobra.Command {
	return []*cobra.Command{
		a.machineAttachCommand(k), a.machineDetachCommand(k),
		a.machineImageCommand(k, "capture", "IMAGE", "Copy a stopped machine's disk into a new machine image that new machines boot from"),
		a.machineImageCommand(k, "snapshot", "SNAPSHOT", "Take a snapshot of a machine's disks (and memory, when it runs)"),
		a.machineRestoreCommand(k),
	}
}

func (a *app) machineAttachCommand(k kind) *cobra.Command {
	var (
		location string
		noWait   bool
	)
	cmd := &cobra.Command{
		Use:   "attach MACHINE VOLUME [--location vdb]",
		Short: "Attach a volume to a machine: hot-plugged while it runs, at its next boot when stopped",
		Args:  exactArgs(2, "a machine and a volume (ID, path or URL)"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			m, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			volume, err := a.client.ResolveMember(ctx, volumeKind().collection, args[1])
			if err != nil {
				return err
			}
			href := m.Href("volumes")
			if href == "" {
				return fmt.Errorf("machine %s has no volumes collection", m.Label())
			}
			body := map[string]any{"resourceURI": cimiclient.PrefixOf(m.ResourceURI) + "/MachineVolume",
				"volume": cimiclient.Ref{Href: volume}}
			if location != "" {
				body["initialLocation"] = location
			}
			acc, err := a.client.Post(ctx, href, body)
			if err != nil {
				return err
			}
			return a.settle(ctx, acc, noWait, true)
		}),
	}
	cmd.Flags().StringVar(&location, "location", "", "guest device, e.g. vdb or /dev/vdb (default: the first free one)")
	noWaitFlag(cmd, &noWait)
	return cmd
}

func (a *app) machineDetachCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "detach MACHINE VOLUME|DEVICE",
		Short: "Detach a volume from a machine; VOLUME may also be its device (vdb) or attachment URL",
		Args:  exactArgs(2, "a machine and a volume (ID, path, URL or device)"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			m, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			entry, err := a.findAttachment(ctx, m, args[1])
			if err != nil {
				return err
			}
			acc, err := a.client.Delete(ctx, entry)
			if err != nil {
				return err
			}
			return a.settle(ctx, acc, noWait, false)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

// findAttachment finds the entry of m's volumes collection that ref names:
// the attached volume, its guest device, or the entry itself.
func (a *app) findAttachment(ctx context.Context, m *cimiclient.Resource, ref string) (*cimiclient.Resource, error) {
	href := m.Href("volumes")
	if href == "" {
		return nil, fmt.Errorf("machine %s has no volumes collection", m.Label())
	}
	raw, err := a.client.GetRaw(ctx, href, cimiclient.MediaJSON)
	if err != nil {
		return nil, err
	}
	var coll cimiclient.Collection
	if err := json.Unmarshal(raw, &coll); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", href, err)
	}
	volume, err := a.client.ResolveMember(ctx, volumeKind().collection, ref)
	if err != nil {
		return nil, err
	}
	device := "/dev/" + strings.TrimPrefix(ref, "/dev/")
	var attached []string
	for i := range coll.Members {
		e := &coll.Members[i]
		if e.Href("volume") == volume || e.String("initialLocation") == device || e.ID == ref || cimiclient.LastSegment(e.ID) == ref {
			return e, nil
		}
		attached = append(attached, fmt.Sprintf("%s as %s", cimiclient.LastSegment(e.Href("volume")), e.String("initialLocation")))
	}
	if len(attached) == 0 {
		return nil, fmt.Errorf("machine %s has no volume attached", m.Label())
	}
	return nil, fmt.Errorf("machine %s has no volume %s attached (attached: %s)", m.Label(), ref, strings.Join(attached, ", "))
}

func (a *app) machineImageCommand(k kind, op, typ, short string) *cobra.Command {
	var c createFlags
	cmd := &cobra.Command{
		Use:   op + " MACHINE --name NAME",
		Short: short,
		Long: short + `.
Waits for the job and prints the new machine image's URL.`,
		Args: exactArgs(1, "one machine ID, path or URL"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			m, err := a.member(ctx, k, args[0])
			if err != nil {
				return err
			}
			body := imageRequest{ResourceURI: cimiclient.PrefixOf(m.ResourceURI) + "/MachineImageCreate", Name: c.name,
				Description: c.description, Properties: c.properties, Type: typ, ImageLocation: m.ID}
			return a.post(ctx, m, op, body, c.noWait, true)
		}),
	}
	c.register(cmd, "image")
	return cmd
}

func (a *app) machineRestoreCommand(k kind) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "restore MACHINE SNAPSHOT",
		Short: "Bring a machine back to one of its snapshots (running, if it ran when the snapshot was taken)",
		Args:  exactArgs(2, "a machine and one of its snapshots (machine image ID, path or URL)"),
		RunE: a.runE(func(ctx context.Context, args []string) error {
			image, err := a.client.ResolveMember(ctx, imageKind().collection, args[1])
			if err != nil {
				return err
			}
			return a.act(ctx, k, args[0], "restore", map[string]any{"image": cimiclient.Ref{Href: image}}, noWait)
		}),
	}
	noWaitFlag(cmd, &noWait)
	return cmd
}

// post sends body to the operation op of r and reports the outcome.
func (a *app) post(ctx context.Context, r *cimiclient.Resource, op string, body any, noWait, created bool) error {
	o, ok := r.Operations.Find(op)
	if !ok {
		return &cimiclient.UnavailableError{Op: op, Resource: r.Label(), State: r.State, Available: r.Operations.Names()}
	}
	acc, err := a.client.Post(ctx, o.Href, body)
	if err != nil {
		return err
	}
	return a.settle(ctx, acc, noWait, created)
}

// sizeUnits are the suffixes parseSizeKiB accepts, in KiB.
var sizeUnits = map[string]float64{
	"": 1, "k": 1, "kib": 1, "m": 1 << 10, "mib": 1 << 10, "g": 1 << 20, "gib": 1 << 20, "t": 1 << 30, "tib": 1 << 30,
}

// parseSizeKiB reads a size such as 512M, 10G or 1.5GiB as KiB; a bare
// number counts KiB.
func parseSizeKiB(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := sizeUnits[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || v <= 0 || math.IsInf(v, 0) {
		return 0, usagef("invalid size %q: want a positive number with an optional unit K, M, G or T (binary), e.g. 10G", s)
	}
	kib := v * mult
	if kib != math.Trunc(kib) || kib > math.MaxInt64/2 {
		return 0, usagef("invalid size %q: not a whole number of KiB", s)
	}
	return int64(kib), nil
}

// volumeColumns are the listing columns particular to the volume family.
func volumeColumns(key string) []column {
	switch key {
	case "volumes":
		return []column{{"CAPACITY", memoryColumn("capacity")}, {"DISK FORMAT", stringColumn("diskFormat")}, {"FORMAT", stringColumn("format")},
			{"SHAREABLE", shareableColumn}, {"MACHINES", machinesColumn}}
	case "volumeImages":
		return []column{{"CAPACITY", memoryColumn("capacity")}, {"VOLUME", refColumn("volume")}}
	case "volumeConfigs":
		return []column{{"CAPACITY", memoryColumn("capacity")}, {"DISK FORMAT", stringColumn("diskFormat")}, {"FORMAT", stringColumn("format")}}
	}
	return nil
}

// machinesColumn lists the machines a volume is attached to, by their
// ids.
func machinesColumn(r *cimiclient.Resource, _ view) string {
	var ids []string
	for _, m := range r.Objects("machines") {
		if href, _ := m["href"].(string); href != "" {
			ids = append(ids, cimiclient.LastSegment(href))
		}
	}
	return strings.Join(ids, ",")
}

// shareableColumn shows "yes" for a volume that attaches to several
// machines at once.
func shareableColumn(r *cimiclient.Resource, _ view) string {
	if shared, _ := r.Attrs["shareable"].(bool); shared {
		return "yes"
	}
	return ""
}
