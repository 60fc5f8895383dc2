package ovf

// Envelope is the neutral model of an OVF descriptor, with the chosen
// deployment configuration applied: elements gated by other configurations
// are gone and property values are those of the chosen configuration.
type Envelope struct {
	// Version is "0.9", "1.0" or "2.0", told by the root namespace.
	Version string
	// Namespace is the namespace URI of the root element.
	Namespace string
	// Dialect is "ovirt" for oVirt's internal OVF (trailing-slash
	// namespace, unqualified elements), else empty.
	Dialect string

	Files    []File
	Disks    []Disk
	Networks []Network

	// DeploymentOptions lists the configurations offered, in document order.
	DeploymentOptions []Configuration
	// Configuration is the id of the applied configuration; empty when the
	// descriptor has no DeploymentOptionSection.
	Configuration string

	// Content is the top-level entity: a *VirtualSystem or a
	// *VirtualSystemCollection.
	Content Entity

	// Warnings lists what was ignored or guessed, once each.
	Warnings []string
}

// File is one entry of References.
type File struct {
	ID   string
	Href string
	// Size is the declared ovf:size in bytes, meaningful when SizeKnown.
	// It is the size as stored: compressed, and of the whole file for
	// chunked files.
	Size      int64
	SizeKnown bool
	// Compression is "gzip" or empty.
	Compression string
	// ChunkSize is the size of each stored piece, 0 when not chunked.
	ChunkSize int64
}

// ChunkNames returns the names under which the pieces of a chunked file
// are stored (href.000000000, href.000000001, ...), or just the href.
func (f File) ChunkNames() []string {
	if f.ChunkSize <= 0 {
		return []string{f.Href}
	}
	n := chunkCount(f.Size, f.ChunkSize)
	names := make([]string, n)
	for i := range names {
		names[i] = chunkName(f.Href, i)
	}
	return names
}

// ChunkLength returns the stored size of piece i of a chunked file.
func (f File) ChunkLength(i int) int64 {
	if f.ChunkSize <= 0 {
		return f.Size
	}
	rest := f.Size - int64(i)*f.ChunkSize
	return min(rest, f.ChunkSize)
}

// Disk is one entry of DiskSection.
type Disk struct {
	ID string
	// FileRef is the id of the File holding the image; empty for a disk
	// to be created blank.
	FileRef string
	// Capacity is the virtual size in bytes, with the allocation units and
	// ${property} references resolved.
	Capacity int64
	// CapacityText and CapacityUnits are the attributes as written.
	CapacityText  string
	CapacityUnits string
	// Format is the ovf:format URI as written; FormatName gives its short name.
	Format        string
	PopulatedSize int64
	ParentRef     string
}

// FormatName is the short name of the disk's format URI, see FormatName.
func (d Disk) FormatName() string { return FormatName(d.Format) }

// Network is one entry of NetworkSection.
type Network struct {
	Name        string
	Description string
}

// Configuration is one entry of DeploymentOptionSection.
type Configuration struct {
	ID          string
	Default     bool
	Label       string
	Description string
}

// Entity is a *VirtualSystem or a *VirtualSystemCollection.
type Entity interface {
	entityID() string
}

// VirtualSystem is one virtual machine.
type VirtualSystem struct {
	ID string
	// Name is the Name element, or the id when there is none.
	Name       string
	Info       string
	Annotation string
	OS         *OperatingSystem
	// Hardware lists every VirtualHardwareSection in document order;
	// Machine is resolved from Hardware[HardwareIndex].
	Hardware      []HardwareSection
	HardwareIndex int
	Machine       Machine
	Products      []Product
	EULAs         []string
	// InstallDelay is InstallSection's ovf:initialBootStopDelay in seconds,
	// -1 without InstallSection.
	InstallDelay int
}

func (v *VirtualSystem) entityID() string { return v.ID }

// VirtualSystemCollection is a group of entities deployed together.
type VirtualSystemCollection struct {
	ID         string
	Name       string
	Info       string
	Annotation string
	Products   []Product
	EULAs      []string
	Startup    []StartupEntry
	// Members are *VirtualSystem and *VirtualSystemCollection, in
	// document order.
	Members []Entity
}

func (c *VirtualSystemCollection) entityID() string { return c.ID }

// StartupEntry is one Item of a StartupSection.
type StartupEntry struct {
	ID              string
	Order           int
	StartDelay      int
	WaitingForGuest bool
	StartAction     string
	StopDelay       int
	StopAction      string
}

// VirtualSystems returns every VirtualSystem of the envelope, depth first
// in document order.
func (e *Envelope) VirtualSystems() []*VirtualSystem {
	var out []*VirtualSystem
	var walk func(Entity)
	walk = func(x Entity) {
		switch v := x.(type) {
		case *VirtualSystem:
			out = append(out, v)
		case *VirtualSystemCollection:
			for _, m := range v.Members {
				walk(m)
			}
		}
	}
	if e.Content != nil {
		walk(e.Content)
	}
	return out
}

// File returns the File with the given id.
func (e *Envelope) File(id string) (File, bool) {
	for _, f := range e.Files {
		if f.ID == id {
			return f, true
		}
	}
	return File{}, false
}

// Disk returns the Disk with the given id.
func (e *Envelope) Disk(id string) (Disk, bool) {
	for _, d := range e.Disks {
		if d.ID == id {
			return d, true
		}
	}
	return Disk{}, false
}

// OperatingSystem is an OperatingSystemSection.
type OperatingSystem struct {
	// ID is the CIM_OperatingSystem OsType number.
	ID          int
	Version     string
	Description string
	// VendorType is the vendor's own OS name when one is given
	// (vmw:osType, vbox:OSType or ovirt:id), which is usually more precise
	// than ID.
	VendorType string
}

// Type returns the most precise name of the OS: the vendor type, else the
// CIM name of a specific id, else the description, else the CIM name.
func (o *OperatingSystem) Type() string {
	if o == nil {
		return ""
	}
	if o.VendorType != "" {
		return o.VendorType
	}
	generic := o.ID == 0 || o.ID == 1 || o.ID == 66 || o.ID == 102
	if name := CIMOSName(o.ID); name != "" && !generic {
		return name
	}
	if o.Description != "" {
		return o.Description
	}
	return CIMOSName(o.ID)
}

// Product is a ProductSection.
type Product struct {
	Class       string
	Instance    string
	Product     string
	Vendor      string
	Version     string
	FullVersion string
	ProductURL  string
	VendorURL   string
	AppURL      string
	Properties  []Property
}

// Property is a ProductSection property with the value of the applied
// configuration (and of Options.Properties when given).
type Property struct {
	Key              string
	Type             string
	Qualifiers       string
	Value            string
	UserConfigurable bool
	// Password properties must not be logged or displayed.
	Password    bool
	Label       string
	Description string
}

// HardwareSection is a VirtualHardwareSection.
type HardwareSection struct {
	ID        string
	Transport []string
	// SystemTypes are the platform families of vssd:VirtualSystemType.
	SystemTypes []string
	SystemID    string
	Items       []Item
	// Config holds vmw:Config and vmw:ExtraConfig pairs.
	Config []KeyValue
}

// KeyValue is a vendor configuration pair.
type KeyValue struct {
	Key      string
	Value    string
	Required bool
}

// Item is a RASD Item, StorageItem or EthernetPortItem.
type Item struct {
	// Element is "Item", "StorageItem" or "EthernetPortItem".
	Element           string
	InstanceID        string
	ResourceType      int
	OtherResourceType string
	ResourceSubType   string
	ElementName       string
	Caption           string
	Description       string
	AllocationUnits   string
	// VirtualQuantity is meaningful when HasQuantity.
	VirtualQuantity     int64
	HasQuantity         bool
	Reservation         string
	Limit               string
	Parent              string
	AddressOnParent     string
	Address             string
	HostResource        []string
	Connection          []string
	AutomaticAllocation string
	// Required is false for items marked ovf:required="false".
	Required bool
	Bound    string
	// Configuration lists the ids of ovf:configuration, empty for items
	// present in every configuration.
	Configuration []string
	// Other holds CIM and vendor fields without a field here, by local
	// name (vmw:CoresPerSocket, oVirt's num_of_sockets...).
	Other map[string]string
	Line  int
}

// Machine is a hardware section resolved for deployment.
type Machine struct {
	CPUs           int
	CoresPerSocket int
	MemoryBytes    int64
	// Firmware is "efi", "bios" or empty when the descriptor does not say.
	Firmware    string
	Controllers []Controller
	// Disks are the hard disks; Removables the CD, DVD and floppy drives.
	Disks      []DiskDevice
	Removables []DiskDevice
	NICs       []NIC
}

// Controller is a storage or USB controller item.
type Controller struct {
	InstanceID   string
	ResourceType int
	// Bus is "ide", "scsi", "sata", "usb", "fc", "iscsi" or "other".
	Bus string
	// Model is the first ResourceSubType alternative.
	Model string
	// Models lists every alternative of ResourceSubType.
	Models []string
}

// DiskDevice is a disk, CD/DVD or floppy drive with what backs it.
type DiskDevice struct {
	InstanceID string
	// Device is "disk", "cdrom" or "floppy".
	Device string
	// DiskID names the Disk backing the device, FileID the File holding
	// the image. A blank disk has a DiskID and no FileID; an ISO attached
	// by ovf:/file/ has a FileID and no DiskID; an empty drive has neither.
	DiskID string
	FileID string
	// Href is the href of FileID.
	Href string
	// CapacityBytes is the Disk's capacity, 0 without a Disk.
	CapacityBytes int64
	// Format is the short name of the Disk's format.
	Format string
	// Bus is the controller's bus ("ide", "scsi", "sata"...), empty when
	// the item has no Parent.
	Bus          string
	ControllerID string
	// Unit is AddressOnParent.
	Unit string
}

// NIC is an Ethernet adapter.
type NIC struct {
	InstanceID string
	Network    string
	Model      string
	MAC        string
	// Connected is false when AutomaticAllocation is false.
	Connected bool
}

// RequiredBytes returns the sum of the capacities of the disks attached to
// the virtual systems: the space their images may take once converted,
// for checking free space before an import. Disks whose capacity only the
// image knows count as 0.
func (e *Envelope) RequiredBytes() (int64, error) {
	var total int64
	for _, vs := range e.VirtualSystems() {
		for _, d := range vs.Machine.Disks {
			var err error
			if total, err = addChecked(total, d.CapacityBytes); err != nil {
				return 0, invalidf(0, "total disk capacity: %v", err)
			}
		}
	}
	return total, nil
}
