package ovf

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Namespace URIs of OVF envelopes and of the schemas used inside them.
const (
	NamespaceOVF09     = "http://www.vmware.com/schema/ovf/1/envelope"
	NamespaceOVF1      = "http://schemas.dmtf.org/ovf/envelope/1"
	NamespaceOVF1oVirt = "http://schemas.dmtf.org/ovf/envelope/1/"
	NamespaceOVF2      = "http://schemas.dmtf.org/ovf/envelope/2"

	NamespaceRASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	NamespaceVSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	NamespaceCIM  = "http://schemas.dmtf.org/wbem/wscim/1/common"

	NamespaceVMware     = "http://www.vmware.com/schema/ovf"
	NamespaceVirtualBox = "http://www.virtualbox.org/ovf/machine"
	NamespaceOVirt      = "http://www.ovirt.org/ovf"

	nsXSI = "http://www.w3.org/2001/XMLSchema-instance"
	// nsCIMPrefix starts the namespaces of every CIM schema (rasd, sasd,
	// epasd, pasd, vssd), including misspelt variants met in real files.
	nsCIMPrefix = "http://schemas.dmtf.org/wbem/wscim/1/"
)

// toleratedNamespaces are vendor namespaces whose unknown elements are
// ignored with a warning even without ovf:required="false": their
// producers (VMware, VirtualBox, oVirt, XenServer, Ganeti) omit the
// attribute on content that only configures their own products.
var toleratedNamespaces = []string{
	NamespaceVMware,
	"http://www.vmware.com/vcloud/",
	"http://www.vmware.com/schema/vadk",
	NamespaceVirtualBox,
	NamespaceOVirt,
	"http://schemas.citrix.com/ovf/envelope/1",
	"http://www.citrix.com/xenclient/ovf/1",
	"http://ganeti",
	nsCIMPrefix,
}

// Options control how a descriptor is read.
type Options struct {
	// Configuration selects a deployment option by id; empty selects the
	// default one (ovf:default="true", else the first).
	Configuration string
	// Properties override ProductSection property values, by key or by
	// fully qualified key (class.key.instance). Values are checked against
	// the property's type and qualifiers.
	Properties map[string]string
	// Strict refuses unknown elements of the tolerated vendor namespaces
	// (VMware, VirtualBox, oVirt, XenServer, Ganeti) unless they are
	// marked ovf:required="false", as the OVF specification says.
	Strict bool
	// Limits bound the cost of reading the descriptor.
	Limits Limits
}

// ParseReader reads a descriptor from r, refusing more than
// Limits.MaxDescriptorBytes, and parses it.
func ParseReader(r io.Reader, opts Options) (*Envelope, error) {
	data, err := readLimited(r, opts.Limits.withDefaults().MaxDescriptorBytes)
	if err != nil {
		return nil, err
	}
	return Parse(data, opts)
}

// Parse parses an OVF descriptor.
func Parse(data []byte, opts Options) (*Envelope, error) {
	lim := opts.Limits.withDefaults()
	if int64(len(data)) > lim.MaxDescriptorBytes {
		return nil, unsafef(0, "descriptor is larger than %d bytes", lim.MaxDescriptorBytes)
	}
	root, warnings, err := decodeTree(data, lim)
	if err != nil {
		return nil, err
	}
	p := &parser{
		opts:      opts,
		env:       &Envelope{},
		warned:    map[string]bool{},
		usedFiles: map[string]bool{},
		usedDisks: map[string]string{},
	}
	for _, w := range warnings {
		p.warnf("%s", w)
	}
	if err := p.parseEnvelope(root); err != nil {
		return nil, err
	}
	return p.env, nil
}

type parser struct {
	opts  Options
	env   *Envelope
	ovirt bool
	// warned deduplicates warnings.
	warned map[string]bool
	// products collects every ProductSection, for ${property} references.
	products []*Product
	// usedFiles and usedDisks record references from hardware items;
	// usedDisks maps a disk id to the item that uses it.
	usedFiles map[string]bool
	usedDisks map[string]string
	// diskLines remembers where each Disk was declared.
	diskLines map[string]int
	// foundProps records which Options.Properties were applied.
	foundProps map[string]bool
}

// maxWarnings caps the warnings of one descriptor.
const maxWarnings = 100

func (p *parser) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.warned[msg] {
		return
	}
	p.warned[msg] = true
	switch n := len(p.env.Warnings); {
	case n < maxWarnings:
		p.env.Warnings = append(p.env.Warnings, msg)
	case n == maxWarnings:
		p.env.Warnings = append(p.env.Warnings, "further warnings omitted")
	}
}

// isOVFSpace tells whether a namespace is one of the OVF envelope
// namespaces; in oVirt's dialect unqualified elements belong to OVF too.
func (p *parser) isOVFSpace(space string) bool {
	switch space {
	case NamespaceOVF09, NamespaceOVF1, NamespaceOVF1oVirt, NamespaceOVF2:
		return true
	case "":
		return p.ovirt
	}
	return false
}

// ovfName returns the OVF name of an element: its local name, or for the
// 0.9/oVirt forms <Section xsi:type="ovf:XSection_Type"> and
// <Content xsi:type="ovf:VirtualSystem_Type"> the name of the type. It
// returns "" for elements outside the OVF namespaces.
func (p *parser) ovfName(n *node) string {
	if !p.isOVFSpace(n.name.Space) {
		return ""
	}
	local := n.name.Local
	if (local == "Section" || local == "Content") && strings.HasSuffix(n.xsiType.Local, "_Type") && p.isOVFSpace(n.xsiType.Space) {
		return strings.TrimSuffix(n.xsiType.Local, "_Type")
	}
	return local
}

// ovfAttr returns an attribute in any OVF namespace, or unqualified.
func (p *parser) ovfAttr(n *node, local string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local != local {
			continue
		}
		switch a.Name.Space {
		case NamespaceOVF09, NamespaceOVF1, NamespaceOVF1oVirt, NamespaceOVF2:
			return a.Value, true
		}
	}
	return n.attr("", local)
}

func (p *parser) attrText(n *node, local string) string {
	v, _ := p.ovfAttr(n, local)
	return strings.TrimSpace(v)
}

// requiredAttr returns whether n is required and whether the descriptor
// said so explicitly. Without ovf:required, content is required.
func (p *parser) requiredAttr(n *node) (required, explicit bool) {
	v, ok := p.ovfAttr(n, "required")
	if !ok {
		return true, false
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "false", "0":
		return false, true
	}
	return true, true
}

// describe names an element for messages.
func (p *parser) describe(n *node) string {
	if name := p.ovfName(n); name != "" {
		return name
	}
	if n.name.Space == "" {
		return n.name.Local
	}
	return fmt.Sprintf("%s (namespace %s)", n.name.Local, n.name.Space)
}

func tolerated(space string) bool {
	for _, t := range toleratedNamespaces {
		if space == t || (strings.HasSuffix(t, "/") && strings.HasPrefix(space, t)) {
			return true
		}
	}
	return false
}

// unknown handles an element the reader does not understand: optional
// elements and tolerated vendor extensions are ignored with a warning,
// required ones fail.
func (p *parser) unknown(n *node, where string) error {
	required, explicit := p.requiredAttr(n)
	desc := p.describe(n)
	switch {
	case !required:
		p.warnf("ignored optional %s in %s", desc, where)
		return nil
	case p.ovirt && n.name.Space == "" && !explicit:
		p.warnf("ignored oVirt-specific elements")
		return nil
	case !explicit && !p.opts.Strict && tolerated(n.name.Space):
		p.warnf("ignored vendor extension %s in %s", desc, where)
		return nil
	}
	return unsupportedf(n.line, "%s in %s is required but not supported", desc, where)
}

func (p *parser) parseEnvelope(root *node) error {
	if root.name.Local != "Envelope" {
		return invalidf(root.line, "root element is %s, not an OVF Envelope", root.name.Local)
	}
	switch root.name.Space {
	case NamespaceOVF09:
		p.env.Version = "0.9"
	case NamespaceOVF1:
		p.env.Version = "1.0"
	case NamespaceOVF1oVirt:
		p.env.Version = "1.0"
		p.env.Dialect = "ovirt"
		p.ovirt = true
		p.warnf("descriptor uses oVirt's internal OVF dialect")
	case NamespaceOVF2:
		p.env.Version = "2.0"
	case "":
		return unsupportedf(root.line, "Envelope has no namespace; expected an OVF envelope namespace such as %s", NamespaceOVF1)
	default:
		return unsupportedf(root.line, "Envelope namespace %q is not an OVF envelope namespace", root.name.Space)
	}
	p.env.Namespace = root.name.Space

	if err := p.applyConfiguration(root); err != nil {
		return err
	}
	var sawRefs bool
	for _, c := range root.children {
		var err error
		switch p.ovfName(c) {
		case "References":
			if sawRefs {
				return invalidf(c.line, "Envelope has more than one References element")
			}
			sawRefs = true
			err = p.parseReferences(c)
		case "DiskSection":
			err = p.parseDiskSection(c)
		case "NetworkSection":
			err = p.parseNetworkSection(c)
		case "DeploymentOptionSection", "Strings", "Info":
			// Configurations were applied above; strings are for UIs.
		case "VirtualSystem", "VirtualSystemCollection":
			if p.env.Content != nil {
				return invalidf(c.line, "Envelope has more than one VirtualSystem or VirtualSystemCollection")
			}
			p.env.Content, err = p.parseEntity(c)
		case "ResourceAllocationSection":
			p.warnf("ignored ResourceAllocationSection of Envelope")
		case "StartupSection", "AnnotationSection", "ProductSection", "EulaSection", "InstallSection", "OperatingSystemSection":
			// Package-level copies of entity sections (XenCenter writes a
			// StartupSection here) add nothing for a single entity.
			err = p.checkSection(c, "Envelope")
		default:
			err = p.unknown(c, "Envelope")
		}
		if err != nil {
			return err
		}
	}
	if p.env.Content == nil {
		return invalidf(root.line, "Envelope has no VirtualSystem or VirtualSystemCollection")
	}
	return p.finish()
}

// applyConfiguration reads the DeploymentOptionSection, chooses the
// configuration and removes every element that belongs only to others.
func (p *parser) applyConfiguration(root *node) error {
	var section *node
	for _, c := range root.children {
		if p.ovfName(c) == "DeploymentOptionSection" {
			if section != nil {
				return invalidf(c.line, "Envelope has more than one DeploymentOptionSection")
			}
			section = c
		}
	}
	if section == nil {
		if p.opts.Configuration != "" {
			return invalidf(0, "configuration %q requested but the descriptor has no DeploymentOptionSection", p.opts.Configuration)
		}
		if p.hasConfigurationAttr(root) {
			p.warnf("ovf:configuration attributes are ignored: the descriptor has no DeploymentOptionSection")
		}
		return nil
	}
	ids := map[string]bool{}
	for _, c := range section.children {
		switch p.ovfName(c) {
		case "Info":
			continue
		case "Configuration":
		default:
			if err := p.unknown(c, "DeploymentOptionSection"); err != nil {
				return err
			}
			continue
		}
		cfg := Configuration{ID: p.attrText(c, "id")}
		if cfg.ID == "" {
			return invalidf(c.line, "Configuration without ovf:id")
		}
		if ids[cfg.ID] {
			return invalidf(c.line, "duplicate Configuration id %q", cfg.ID)
		}
		ids[cfg.ID] = true
		cfg.Default = strings.EqualFold(p.attrText(c, "default"), "true")
		for _, cc := range c.children {
			switch p.ovfName(cc) {
			case "Label":
				cfg.Label = cc.trimmed()
			case "Description":
				cfg.Description = cc.trimmed()
			}
		}
		p.env.DeploymentOptions = append(p.env.DeploymentOptions, cfg)
	}
	if len(p.env.DeploymentOptions) == 0 {
		return invalidf(section.line, "DeploymentOptionSection lists no Configuration")
	}
	chosen := p.opts.Configuration
	if chosen == "" {
		chosen = p.env.DeploymentOptions[0].ID
		for _, c := range p.env.DeploymentOptions {
			if c.Default {
				chosen = c.ID
				break
			}
		}
	} else if !ids[chosen] {
		return invalidf(section.line, "configuration %q is not offered; the descriptor offers %s", chosen, strings.Join(slices.Sorted(maps.Keys(ids)), ", "))
	}
	p.env.Configuration = chosen
	p.prune(root, section, chosen, ids)
	return nil
}

func (p *parser) hasConfigurationAttr(n *node) bool {
	if _, ok := p.ovfAttr(n, "configuration"); ok {
		return true
	}
	for _, c := range n.children {
		if p.hasConfigurationAttr(c) {
			return true
		}
	}
	return false
}

// prune removes the descendants of n that carry ovf:configuration without
// the chosen id.
func (p *parser) prune(n, section *node, chosen string, ids map[string]bool) {
	kept := n.children[:0]
	for _, c := range n.children {
		if c == section {
			kept = append(kept, c)
			continue
		}
		if v, ok := p.ovfAttr(c, "configuration"); ok {
			in := false
			for _, id := range strings.Fields(v) {
				if id == chosen {
					in = true
				}
				if !ids[id] {
					p.warnf("line %d: ovf:configuration names unknown configuration %q", c.line, id)
				}
			}
			if !in {
				continue
			}
		}
		p.prune(c, section, chosen, ids)
		kept = append(kept, c)
	}
	n.children = kept
}

func (p *parser) parseReferences(n *node) error {
	ids := map[string]bool{}
	for _, c := range n.children {
		if p.ovfName(c) != "File" {
			if err := p.unknown(c, "References"); err != nil {
				return err
			}
			continue
		}
		f := File{ID: p.attrText(c, "id")}
		f.Href, _ = p.ovfAttr(c, "href")
		if f.ID == "" {
			return invalidf(c.line, "File without ovf:id")
		}
		if ids[f.ID] {
			return invalidf(c.line, "duplicate File id %q", f.ID)
		}
		ids[f.ID] = true
		if f.Href == "" {
			return invalidf(c.line, "File %q has no ovf:href", f.ID)
		}
		if v, ok := p.ovfAttr(c, "size"); ok {
			size, err := parseUint(v)
			if err != nil {
				return invalidf(c.line, "File %q: ovf:size %v", f.ID, err)
			}
			f.Size, f.SizeKnown = size, true
		}
		switch comp := strings.TrimSpace(p.attrText(c, "compression")); strings.ToLower(comp) {
		case "", "identity":
		case "gzip":
			f.Compression = "gzip"
		default:
			return unsupportedf(c.line, "File %q: compression %q is not supported (only gzip)", f.ID, comp)
		}
		if v, ok := p.ovfAttr(c, "chunkSize"); ok {
			cs, err := parseUint(v)
			if err != nil || cs == 0 {
				return invalidf(c.line, "File %q: ovf:chunkSize %q is not a positive integer", f.ID, v)
			}
			if !f.SizeKnown {
				return invalidf(c.line, "File %q is chunked but has no ovf:size", f.ID)
			}
			if chunkCount(f.Size, cs) > maxChunks {
				return unsafef(c.line, "File %q would be stored in more than %d chunks", f.ID, maxChunks)
			}
			f.ChunkSize = cs
		}
		if f.Compression == "" && strings.HasSuffix(strings.ToLower(f.Href), ".gz") {
			p.warnf("File %q is named %q but declares no compression; its content decides", f.ID, f.Href)
		}
		p.env.Files = append(p.env.Files, f)
	}
	return nil
}

// maxChunks bounds the number of pieces of one chunked file.
const maxChunks = 100_000

func chunkCount(size, chunk int64) int64 {
	if size == 0 {
		return 1
	}
	return (size + chunk - 1) / chunk
}

func chunkName(href string, i int) string {
	return fmt.Sprintf("%s.%09d", href, i)
}

func (p *parser) parseDiskSection(n *node) error {
	if p.diskLines == nil {
		p.diskLines = map[string]int{}
	}
	for _, c := range n.children {
		switch p.ovfName(c) {
		case "Info":
			continue
		case "Disk":
		default:
			if err := p.unknown(c, "DiskSection"); err != nil {
				return err
			}
			continue
		}
		d := Disk{
			ID:            p.attrText(c, "diskId"),
			FileRef:       p.attrText(c, "fileRef"),
			CapacityText:  p.attrText(c, "capacity"),
			CapacityUnits: p.attrText(c, "capacityAllocationUnits"),
			Format:        p.attrText(c, "format"),
			ParentRef:     p.attrText(c, "parentRef"),
		}
		if d.ID == "" {
			return invalidf(c.line, "Disk without ovf:diskId")
		}
		if _, ok := p.env.File(d.FileRef); !ok && p.ovirt {
			// oVirt's fileRef is the File's href.
			for _, f := range p.env.Files {
				if f.Href == d.FileRef {
					d.FileRef = f.ID
				}
			}
		}
		if _, dup := p.diskLines[d.ID]; dup {
			return invalidf(c.line, "duplicate Disk id %q", d.ID)
		}
		p.diskLines[d.ID] = c.line
		if v := p.attrText(c, "populatedSize"); v != "" {
			ps, err := parseUint(v)
			if err != nil {
				p.warnf("Disk %q: ignored ovf:populatedSize: %v", d.ID, err)
			}
			d.PopulatedSize = ps
		}
		if d.ParentRef != "" {
			return unsupportedf(c.line, "Disk %q is a delta disk on %q (ovf:parentRef); delta disks are not supported", d.ID, d.ParentRef)
		}
		if !knownFormat(d.Format) {
			p.warnf("Disk %q has unknown format %q; its content decides", d.ID, d.Format)
		}
		p.env.Disks = append(p.env.Disks, d)
	}
	return nil
}

func (p *parser) parseNetworkSection(n *node) error {
	for _, c := range n.children {
		switch p.ovfName(c) {
		case "Info":
			continue
		case "Network":
		default:
			if err := p.unknown(c, "NetworkSection"); err != nil {
				return err
			}
			continue
		}
		nw := Network{Name: p.attrText(c, "name")}
		if nw.Name == "" {
			return invalidf(c.line, "Network without ovf:name")
		}
		for _, cc := range c.children {
			switch p.ovfName(cc) {
			case "Description":
				nw.Description = cc.trimmed()
			case "NetworkPortProfile", "NetworkPortProfileURI":
			default:
				if err := p.unknown(cc, "Network "+nw.Name); err != nil {
					return err
				}
			}
		}
		if slices.ContainsFunc(p.env.Networks, func(o Network) bool { return o.Name == nw.Name }) {
			p.warnf("network %q is declared twice", nw.Name)
			continue
		}
		p.env.Networks = append(p.env.Networks, nw)
	}
	return nil
}

// checkSection accepts a known section that is not used, checking only
// that it holds nothing required the reader does not know.
func (p *parser) checkSection(n *node, where string) error {
	known := sectionChildren[p.ovfName(n)]
	for _, c := range n.children {
		if name := p.ovfName(c); name != "" && slices.Contains(known, name) {
			continue
		}
		if err := p.unknown(c, p.ovfName(n)+" of "+where); err != nil {
			return err
		}
	}
	return nil
}

// sectionChildren lists the OVF children of sections read by checkSection.
var sectionChildren = map[string][]string{
	"StartupSection":         {"Info", "Item"},
	"AnnotationSection":      {"Info", "Annotation"},
	"ProductSection":         {"Info", "Product", "Vendor", "Version", "FullVersion", "ProductUrl", "VendorUrl", "AppUrl", "Icon", "Category", "Property"},
	"EulaSection":            {"Info", "License"},
	"InstallSection":         {"Info"},
	"OperatingSystemSection": {"Info", "Description"},
}

func (p *parser) parseEntity(n *node) (Entity, error) {
	if p.ovfName(n) == "VirtualSystem" {
		return p.parseSystem(n)
	}
	return p.parseCollection(n)
}

// commonSection parses the sections shared by systems and collections.
// It returns false for sections it does not handle.
func (p *parser) commonSection(c *node, where string, name, info, annotation *string, products *[]Product, eulas *[]string) (bool, error) {
	switch p.ovfName(c) {
	case "Info":
		*info = c.trimmed()
	case "Name":
		*name = c.trimmed()
	case "AnnotationSection":
		if err := p.checkSection(c, where); err != nil {
			return true, err
		}
		for _, cc := range c.children {
			if p.ovfName(cc) == "Annotation" {
				*annotation = cc.trimmed()
			}
		}
	case "EulaSection":
		if err := p.checkSection(c, where); err != nil {
			return true, err
		}
		for _, cc := range c.children {
			if p.ovfName(cc) == "License" {
				*eulas = append(*eulas, strings.TrimSpace(cc.text))
			}
		}
	case "ProductSection":
		prod, err := p.parseProduct(c, where)
		if err != nil {
			return true, err
		}
		*products = append(*products, prod)
	case "ResourceAllocationSection":
		// Reservations and limits for the host; none are applied.
		p.warnf("ignored ResourceAllocationSection of %s", where)
	default:
		return false, nil
	}
	return true, nil
}

func (p *parser) parseSystem(n *node) (*VirtualSystem, error) {
	vs := &VirtualSystem{ID: p.attrText(n, "id"), InstallDelay: -1}
	if vs.ID == "" {
		return nil, invalidf(n.line, "VirtualSystem without ovf:id")
	}
	where := fmt.Sprintf("VirtualSystem %q", vs.ID)
	var vboxMachine *node
	for _, c := range n.children {
		handled, err := p.commonSection(c, where, &vs.Name, &vs.Info, &vs.Annotation, &vs.Products, &vs.EULAs)
		if err != nil {
			return nil, err
		}
		if handled {
			continue
		}
		switch p.ovfName(c) {
		case "OperatingSystemSection":
			if vs.OS != nil {
				p.warnf("%s has more than one OperatingSystemSection; the first is used", where)
				continue
			}
			vs.OS, err = p.parseOS(c, where)
		case "VirtualHardwareSection":
			var hw HardwareSection
			hw, err = p.parseHardware(c, where)
			vs.Hardware = append(vs.Hardware, hw)
		case "InstallSection":
			if err = p.checkSection(c, where); err == nil {
				vs.InstallDelay = 0
				if v := p.attrText(c, "initialBootStopDelay"); v != "" {
					d, perr := parseUint(v)
					if perr != nil {
						return nil, invalidf(c.line, "InstallSection: ovf:initialBootStopDelay %v", perr)
					}
					vs.InstallDelay = int(min(d, 1<<31-1))
				}
			}
		case "StartupSection":
			err = p.checkSection(c, where)
		default:
			if c.name.Space == NamespaceVirtualBox && c.name.Local == "Machine" {
				vboxMachine = c
				continue
			}
			err = p.unknown(c, where)
		}
		if err != nil {
			return nil, err
		}
	}
	if vs.Name == "" {
		vs.Name = vs.ID
	}
	if len(vs.Hardware) == 0 {
		p.warnf("%s has no VirtualHardwareSection", where)
		return vs, nil
	}
	vs.HardwareIndex = p.chooseHardware(vs, where)
	m, err := p.resolveMachine(vs.Hardware[vs.HardwareIndex], where)
	if err != nil {
		return nil, err
	}
	if m.Firmware == "" && vboxMachine != nil {
		m.Firmware = vboxFirmware(vboxMachine)
	}
	vs.Machine = m
	return vs, nil
}

func (p *parser) parseCollection(n *node) (*VirtualSystemCollection, error) {
	vc := &VirtualSystemCollection{ID: p.attrText(n, "id")}
	if vc.ID == "" {
		return nil, invalidf(n.line, "VirtualSystemCollection without ovf:id")
	}
	where := fmt.Sprintf("VirtualSystemCollection %q", vc.ID)
	for _, c := range n.children {
		handled, err := p.commonSection(c, where, &vc.Name, &vc.Info, &vc.Annotation, &vc.Products, &vc.EULAs)
		if err != nil {
			return nil, err
		}
		if handled {
			continue
		}
		switch p.ovfName(c) {
		case "VirtualSystem", "VirtualSystemCollection":
			var m Entity
			m, err = p.parseEntity(c)
			if err == nil {
				if slices.ContainsFunc(vc.Members, func(o Entity) bool { return o.entityID() == m.entityID() }) {
					return nil, invalidf(c.line, "%s has two members with id %q", where, m.entityID())
				}
				vc.Members = append(vc.Members, m)
			}
		case "StartupSection":
			vc.Startup, err = p.parseStartup(c, where)
		case "OperatingSystemSection", "InstallSection", "VirtualHardwareSection":
			p.warnf("ignored %s of %s", p.ovfName(c), where)
		default:
			err = p.unknown(c, where)
		}
		if err != nil {
			return nil, err
		}
	}
	if vc.Name == "" {
		vc.Name = vc.ID
	}
	if len(vc.Members) == 0 {
		return nil, invalidf(n.line, "%s has no members", where)
	}
	for _, s := range vc.Startup {
		if !slices.ContainsFunc(vc.Members, func(o Entity) bool { return o.entityID() == s.ID }) {
			return nil, invalidf(n.line, "StartupSection of %s names %q, which is not a member", where, s.ID)
		}
	}
	return vc, nil
}

func (p *parser) parseStartup(n *node, where string) ([]StartupEntry, error) {
	if err := p.checkSection(n, where); err != nil {
		return nil, err
	}
	var out []StartupEntry
	for _, c := range n.children {
		if p.ovfName(c) != "Item" {
			continue
		}
		e := StartupEntry{
			ID:              p.attrText(c, "id"),
			WaitingForGuest: strings.EqualFold(p.attrText(c, "waitingForGuest"), "true"),
			StartAction:     p.attrText(c, "startAction"),
			StopAction:      p.attrText(c, "stopAction"),
		}
		for attr, dst := range map[string]*int{"order": &e.Order, "startDelay": &e.StartDelay, "stopDelay": &e.StopDelay} {
			if v := p.attrText(c, attr); v != "" {
				x, err := parseUint(v)
				if err != nil {
					return nil, invalidf(c.line, "StartupSection item %q: ovf:%s %v", e.ID, attr, err)
				}
				*dst = int(min(x, 1<<31-1))
			}
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b StartupEntry) int { return a.Order - b.Order })
	return out, nil
}

func (p *parser) parseOS(n *node, where string) (*OperatingSystem, error) {
	os := &OperatingSystem{Version: p.attrText(n, "version")}
	if v := p.attrText(n, "id"); v != "" {
		id, err := strconv.Atoi(v)
		if err != nil || id < 0 {
			p.warnf("%s: OperatingSystemSection id %q is not a number", where, v)
		} else {
			os.ID = id
		}
	}
	if v, ok := n.attr(NamespaceVMware, "osType"); ok {
		os.VendorType = strings.TrimSpace(v)
	}
	if v, ok := n.attr(NamespaceOVirt, "id"); ok && os.VendorType == "" {
		os.VendorType = strings.TrimSpace(v)
	}
	for _, c := range n.children {
		switch p.ovfName(c) {
		case "Info":
		case "Description":
			os.Description = c.trimmed()
		default:
			if c.name.Space == NamespaceVirtualBox && c.name.Local == "OSType" {
				if os.VendorType == "" {
					os.VendorType = c.trimmed()
				}
				continue
			}
			if err := p.unknown(c, "OperatingSystemSection of "+where); err != nil {
				return nil, err
			}
		}
	}
	return os, nil
}

func (p *parser) parseProduct(n *node, where string) (Product, error) {
	prod := Product{Class: p.attrText(n, "class"), Instance: p.attrText(n, "instance")}
	where = "ProductSection of " + where
	for _, c := range n.children {
		switch p.ovfName(c) {
		case "Info", "Icon", "Category":
		case "Product":
			prod.Product = c.trimmed()
		case "Vendor":
			prod.Vendor = c.trimmed()
		case "Version":
			prod.Version = c.trimmed()
		case "FullVersion":
			prod.FullVersion = c.trimmed()
		case "ProductUrl":
			prod.ProductURL = c.trimmed()
		case "VendorUrl":
			prod.VendorURL = c.trimmed()
		case "AppUrl":
			prod.AppURL = c.trimmed()
		case "Property":
			prop, err := p.parseProperty(c, where)
			if err != nil {
				return prod, err
			}
			prod.Properties = append(prod.Properties, prop)
		default:
			if err := p.unknown(c, where); err != nil {
				return prod, err
			}
		}
	}
	for i := range prod.Properties {
		if err := p.override(&prod, &prod.Properties[i]); err != nil {
			return prod, err
		}
	}
	stored := prod
	p.products = append(p.products, &stored)
	return prod, nil
}

func (p *parser) parseProperty(n *node, where string) (Property, error) {
	prop := Property{
		Key:              p.attrText(n, "key"),
		Type:             p.attrText(n, "type"),
		Qualifiers:       p.attrText(n, "qualifiers"),
		UserConfigurable: strings.EqualFold(p.attrText(n, "userConfigurable"), "true"),
		Password:         strings.EqualFold(p.attrText(n, "password"), "true"),
	}
	prop.Value, _ = p.ovfAttr(n, "value")
	if prop.Key == "" {
		return prop, invalidf(n.line, "Property without ovf:key in %s", where)
	}
	for _, c := range n.children {
		switch p.ovfName(c) {
		case "Label":
			prop.Label = c.trimmed()
		case "Description":
			prop.Description = c.trimmed()
		case "Value":
			// Values for other configurations were pruned.
			prop.Value, _ = p.ovfAttr(c, "value")
		default:
			if err := p.unknown(c, "Property "+prop.Key); err != nil {
				return prop, err
			}
		}
	}
	return prop, nil
}

func (p *parser) parseHardware(n *node, where string) (HardwareSection, error) {
	hw := HardwareSection{ID: p.attrText(n, "id"), Transport: strings.Fields(p.attrText(n, "transport"))}
	where = "VirtualHardwareSection of " + where
	for _, c := range n.children {
		switch name := p.ovfName(c); name {
		case "Info":
		case "System":
			for _, f := range c.children {
				if !strings.HasPrefix(f.name.Space, nsCIMPrefix) {
					if err := p.unknown(f, "System of "+where); err != nil {
						return hw, err
					}
					continue
				}
				switch f.name.Local {
				case "VirtualSystemType":
					hw.SystemTypes = strings.Fields(f.text)
				case "VirtualSystemIdentifier":
					hw.SystemID = f.trimmed()
				}
			}
		case "Item", "StorageItem", "EthernetPortItem":
			it, err := p.parseItem(c, name, where)
			if err != nil {
				return hw, err
			}
			hw.Items = append(hw.Items, it)
		default:
			if c.name.Space == NamespaceVMware && (c.name.Local == "Config" || c.name.Local == "ExtraConfig") {
				kv := KeyValue{}
				kv.Key, _ = c.attr(NamespaceVMware, "key")
				kv.Value, _ = c.attr(NamespaceVMware, "value")
				kv.Required, _ = p.requiredAttr(c)
				hw.Config = append(hw.Config, kv)
				continue
			}
			if err := p.unknown(c, where); err != nil {
				return hw, err
			}
		}
	}
	items, err := p.effectiveItems(hw.Items, where)
	hw.Items = items
	return hw, err
}

// effectiveItems applies configuration overrides: an item gated by
// ovf:configuration replaces an ungated item with the same InstanceID
// (the pattern of COT and ovftool). Any other repeated InstanceID is an
// error.
func (p *parser) effectiveItems(items []Item, where string) ([]Item, error) {
	out := make([]Item, 0, len(items))
	index := map[string]int{}
	for _, it := range items {
		i, dup := index[it.InstanceID]
		if !dup {
			index[it.InstanceID] = len(out)
			out = append(out, it)
			continue
		}
		prev := out[i]
		switch {
		case len(prev.Configuration) == 0 && len(it.Configuration) > 0 && p.env.Configuration != "":
			out[i] = it
		case len(prev.Configuration) > 0 && len(it.Configuration) == 0 && p.env.Configuration != "":
		default:
			return nil, invalidf(it.Line, "%s: InstanceID %q is used by the items at lines %d and %d", where, it.InstanceID, prev.Line, it.Line)
		}
	}
	return out, nil
}

// rasdFields are the CIM properties an Item may carry (RASD, SASD and
// EPASD); unknown ones marked ovf:required="true" are refused.
var rasdFields = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`Address AddressOnParent AllocationUnits AutomaticAllocation
		AutomaticDeallocation Caption ChangeableType ComponentSetting ConfigurationName Connection
		ConsumerVisibility Description ElementName Generation HostResource InstanceID Limit
		MappingBehavior OtherResourceType Parent PoolID Reservation ResourceSubType ResourceType
		SoID SoOrgID VirtualQuantity VirtualQuantityUnits Weight BusNumber
		Access HostExtentName HostExtentNameFormat HostExtentNameNamespace HostExtentStartingAddress
		HostResourceBlockSize OtherHostExtentNameFormat OtherHostExtentNameNamespace VirtualResourceBlockSize
		AllowedPriorities AllowedToReceiveMACAddresses AllowedToReceiveVLANs AllowedToTransmitMACAddresses
		AllowedToTransmitVLANs DefaultPortVID DefaultPriority DesiredVLANEndpointMode GroupID ManagerID
		NetworkPortProfileID NetworkPortProfileIDType OtherEndpointMode OtherNetworkPortProfileIDTypeInfo
		PortCorrelationID PortVID Promiscuous ReceiveBandwidthLimit ReceiveBandwidthReservation
		SourceMACFilteringEnabled VSITypeID VSITypeIDVersion`) {
		rasdFields[f] = true
	}
}

func (p *parser) parseItem(n *node, element, where string) (Item, error) {
	it := Item{Element: element, Line: n.line, Bound: p.attrText(n, "bound"), Configuration: strings.Fields(p.attrText(n, "configuration"))}
	it.Required, _ = p.requiredAttr(n)
	var rtText string
	for _, c := range n.children {
		if !strings.HasPrefix(c.name.Space, nsCIMPrefix) {
			if c.name.Space == NamespaceVMware {
				switch c.name.Local {
				case "CoresPerSocket":
					setOther(&it, "CoresPerSocket", c.trimmed())
					continue
				case "Config", "ExtraConfig":
					// Device settings of VMware products (PCI slots,
					// connection flags): nothing to apply elsewhere.
					continue
				}
			}
			if err := p.unknown(c, fmt.Sprintf("%s at line %d of %s", element, n.line, where)); err != nil {
				return it, err
			}
			continue
		}
		v := c.trimmed()
		switch c.name.Local {
		case "InstanceID", "InstanceId":
			it.InstanceID = v
		case "ResourceType":
			rtText = v
		case "OtherResourceType":
			it.OtherResourceType = v
		case "ResourceSubType":
			it.ResourceSubType = v
		case "ElementName":
			it.ElementName = v
		case "Caption":
			it.Caption = v
		case "Description":
			it.Description = v
		case "AllocationUnits":
			it.AllocationUnits = v
		case "VirtualQuantity":
			q, err := parseUint(v)
			if err != nil {
				return it, invalidf(c.line, "%s: VirtualQuantity %v", element, err)
			}
			it.VirtualQuantity, it.HasQuantity = q, true
		case "Reservation":
			it.Reservation = v
		case "Limit":
			it.Limit = v
		case "Parent":
			it.Parent = v
		case "AddressOnParent":
			it.AddressOnParent = v
		case "Address":
			it.Address = v
		case "HostResource":
			it.HostResource = append(it.HostResource, v)
		case "Connection":
			it.Connection = append(it.Connection, v)
		case "AutomaticAllocation":
			it.AutomaticAllocation = v
		default:
			if req, explicit := p.requiredAttr(c); req && explicit && !rasdFields[c.name.Local] {
				return it, unsupportedf(c.line, "%s in %s at line %d of %s is required but not supported", p.describe(c), element, n.line, where)
			}
			setOther(&it, c.name.Local, v)
		}
	}
	if rtText == "" {
		return it, invalidf(n.line, "%s %q has no ResourceType", element, it.InstanceID)
	}
	rt, err := strconv.Atoi(rtText)
	if err != nil || rt < 0 {
		return it, invalidf(n.line, "%s %q: ResourceType %q is not a number", element, it.InstanceID, rtText)
	}
	it.ResourceType = rt
	if it.InstanceID == "" {
		return it, invalidf(n.line, "%s of ResourceType %d has no InstanceID", element, rt)
	}
	return it, nil
}

func setOther(it *Item, k, v string) {
	if it.Other == nil {
		it.Other = map[string]string{}
	}
	it.Other[k] = v
}

// chooseHardware picks the hardware section to deploy: one for KVM/QEMU
// first, then VMware, VirtualBox, Xen, anything else; the first of equals.
func (p *parser) chooseHardware(vs *VirtualSystem, where string) int {
	if len(vs.Hardware) == 1 {
		return 0
	}
	rank := func(h HardwareSection) int {
		best := 5
		for _, t := range h.SystemTypes {
			t = strings.ToLower(t)
			r := 4
			switch {
			case strings.HasPrefix(t, "kvm"), strings.HasPrefix(t, "qemu"), strings.HasPrefix(t, "libvirt"):
				r = 0
			case strings.HasPrefix(t, "vmx-"):
				r = 1
			case strings.HasPrefix(t, "virtualbox"):
				r = 2
			case strings.HasPrefix(t, "xen"):
				r = 3
			}
			best = min(best, r)
		}
		return best
	}
	idx := 0
	for i, h := range vs.Hardware {
		if rank(h) < rank(vs.Hardware[idx]) {
			idx = i
		}
	}
	chosen := vs.Hardware[idx]
	p.warnf("%s has %d VirtualHardwareSections; using the one for %q and ignoring the others", where, len(vs.Hardware), strings.Join(chosen.SystemTypes, " "))
	return idx
}

// vboxFirmware reads the firmware type from a vbox:Machine element.
func vboxFirmware(n *node) string {
	var fw string
	var walk func(*node, int)
	walk = func(x *node, depth int) {
		if depth > 3 || fw != "" {
			return
		}
		if x.name.Local == "Firmware" {
			for _, a := range x.attrs {
				if a.Name.Local == "type" {
					fw = normaliseFirmware(a.Value)
				}
			}
			return
		}
		for _, c := range x.children {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return fw
}

func normaliseFirmware(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	switch {
	case strings.HasPrefix(v, "efi"), v == "uefi":
		return "efi"
	case v == "bios":
		return "bios"
	}
	return ""
}
