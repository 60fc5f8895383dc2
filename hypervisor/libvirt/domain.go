package libvirt

import (
	"context"
	"fmt"

	"libvirt.org/go/libvirt"

	"cimid/hypervisor"
)

// DefineDomain creates or replaces the persistent definition of spec.Name.
// When spec.UUID is empty and the domain exists, its UUID is kept.
func (d *Driver) DefineDomain(ctx context.Context, spec hypervisor.DomainSpec) error {
	if err := validateSpec(spec); err != nil {
		return fmt.Errorf("define domain %s: %w", spec.Name, err)
	}
	err := d.call(ctx, func(c *libvirt.Connect) error {
		def := spec
		if def.UUID == "" {
			uuid, err := existingUUID(c, def.Name)
			if err != nil {
				return err
			}
			def.UUID = uuid
		}
		doc, err := domainXML(def)
		if err != nil {
			return err
		}
		dom, err := c.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
		if err != nil {
			return err
		}
		return dom.Free()
	})
	if err != nil {
		return fmt.Errorf("define domain %s: %w", spec.Name, err)
	}
	return nil
}

// existingUUID returns the UUID of the domain called name, or "" when there
// is none.
func existingUUID(c *libvirt.Connect, name string) (string, error) {
	dom, err := c.LookupDomainByName(name)
	if hasCode(err, libvirt.ERR_NO_DOMAIN) {
		return "", nil
	}
	if err != nil {
		return "", classify(err)
	}
	defer dom.Free()
	return dom.GetUUIDString()
}

// undefineFlags are tried in order: drivers that do not know a flag (the
// test driver has no NVRAM) refuse the call as a whole.
var undefineFlags = []libvirt.DomainUndefineFlagsValues{
	libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.DOMAIN_UNDEFINE_NVRAM,
	libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
	libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE,
}

// UndefineDomain removes the definition of name together with its managed
// save image, snapshot metadata and NVRAM. A missing domain is not an error.
// A running domain keeps running as a transient one.
func (d *Driver) UndefineDomain(ctx context.Context, name string) error {
	err := d.withDomain(ctx, name, func(dom *libvirt.Domain) error {
		var err error
		for _, flags := range undefineFlags {
			err = dom.UndefineFlags(flags)
			if !hasCode(err, libvirt.ERR_INVALID_ARG) && !hasCode(err, libvirt.ERR_NO_SUPPORT) {
				return err
			}
		}
		return err
	})
	if hasCode(err, libvirt.ERR_NO_DOMAIN) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("undefine domain %s: %w", name, err)
	}
	return nil
}

// DomainStatus returns the state of name; the error wraps
// hypervisor.ErrNotFound when there is no such domain.
func (d *Driver) DomainStatus(ctx context.Context, name string) (hypervisor.DomainStatus, error) {
	var status hypervisor.DomainStatus
	err := d.withDomain(ctx, name, func(dom *libvirt.Domain) error {
		var err error
		status, err = domainStatus(dom)
		return err
	})
	if err != nil {
		return hypervisor.DomainStatus{}, fmt.Errorf("status of domain %s: %w", name, err)
	}
	return status, nil
}

// ListDomains lists every persistent and transient domain on the host.
// Domains that vanish while being listed are left out.
func (d *Driver) ListDomains(ctx context.Context) ([]hypervisor.DomainStatus, error) {
	var list []hypervisor.DomainStatus
	err := d.call(ctx, func(c *libvirt.Connect) error {
		doms, err := c.ListAllDomains(0)
		if err != nil {
			return err
		}
		defer freeDomains(doms)
		list = make([]hypervisor.DomainStatus, 0, len(doms))
		for i := range doms {
			status, err := domainStatus(&doms[i])
			if hasCode(err, libvirt.ERR_NO_DOMAIN) {
				continue
			}
			if err != nil {
				return err
			}
			list = append(list, status)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return list, nil
}

func freeDomains(doms []libvirt.Domain) {
	for i := range doms {
		_ = doms[i].Free()
	}
}

// SetMetadata replaces the cimid metadata of name in its persistent
// definition and, while it runs, in the live domain.
func (d *Driver) SetMetadata(ctx context.Context, name string, md hypervisor.Metadata) error {
	doc, err := encodeMetadata(md, false)
	if err != nil {
		return fmt.Errorf("set metadata of domain %s: %w", name, err)
	}
	err = d.withDomain(ctx, name, func(dom *libvirt.Domain) error {
		err := setMetadata(dom, doc)
		if hasCode(err, libvirt.ERR_OPERATION_INVALID) {
			// The domain started or stopped between choosing the flags and
			// applying them; choose again.
			err = setMetadata(dom, doc)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set metadata of domain %s: %w", name, err)
	}
	return nil
}

func setMetadata(dom *libvirt.Domain, doc string) error {
	flags, err := modificationImpact(dom)
	if err != nil {
		return err
	}
	return dom.SetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, doc, metadataPrefix, metadataNamespace, flags)
}

// modificationImpact selects the persistent config and, when the domain
// runs, the live one.
func modificationImpact(dom *libvirt.Domain) (libvirt.DomainModificationImpact, error) {
	var flags libvirt.DomainModificationImpact
	persistent, err := dom.IsPersistent()
	if err != nil {
		return 0, err
	}
	active, err := dom.IsActive()
	if err != nil {
		return 0, err
	}
	if persistent {
		flags |= libvirt.DOMAIN_AFFECT_CONFIG
	}
	if active {
		flags |= libvirt.DOMAIN_AFFECT_LIVE
	}
	return flags, nil
}

// domainStatus gathers what DomainStatus reports about dom.
func domainStatus(dom *libvirt.Domain) (hypervisor.DomainStatus, error) {
	var st hypervisor.DomainStatus
	var err error
	if st.Name, err = dom.GetName(); err != nil {
		return st, err
	}
	if st.UUID, err = dom.GetUUIDString(); err != nil {
		return st, err
	}
	state, _, err := dom.GetState()
	if err != nil {
		return st, err
	}
	st.State = runState(state)
	if st.HasManagedSave, err = dom.HasManagedSaveImage(0); err != nil {
		return st, err
	}
	st.Metadata, err = domainMetadata(dom)
	return st, err
}

// domainMetadata reads the cimid element of dom (live while it runs), nil
// when the domain carries none.
func domainMetadata(dom *libvirt.Domain) (*hypervisor.Metadata, error) {
	doc, err := dom.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, metadataNamespace, libvirt.DOMAIN_AFFECT_CURRENT)
	if hasCode(err, libvirt.ERR_NO_DOMAIN_METADATA) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeMetadata(doc)
}

func runState(s libvirt.DomainState) hypervisor.State {
	switch s {
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
		return hypervisor.StateRunning
	case libvirt.DOMAIN_PAUSED:
		return hypervisor.StatePaused
	case libvirt.DOMAIN_SHUTOFF:
		return hypervisor.StateShutoff
	case libvirt.DOMAIN_SHUTDOWN:
		return hypervisor.StateShuttingDown
	case libvirt.DOMAIN_CRASHED:
		return hypervisor.StateCrashed
	case libvirt.DOMAIN_PMSUSPENDED:
		return hypervisor.StatePMSuspended
	default:
		return hypervisor.StateUnknown
	}
}

// withDomain looks name up and runs fn on it.
func (d *Driver) withDomain(ctx context.Context, name string, fn func(*libvirt.Domain) error) error {
	return d.call(ctx, func(c *libvirt.Connect) error {
		dom, err := c.LookupDomainByName(name)
		if err != nil {
			return err
		}
		defer dom.Free()
		return fn(dom)
	})
}
