package ovf

import "strings"

// Disk format URIs met in descriptors.
const (
	FormatStreamOptimized = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
	FormatVMDKSparseOld   = "http://www.vmware.com/specifications/vmdk.html#sparse"
	FormatQCOW2           = "http://www.gnome.org/~markmc/qcow-image-format.html"
	FormatRaw             = "http://en.wikipedia.org/wiki/Byte"
	FormatVHD             = "http://www.microsoft.com/technet/virtualserver/downloads/vhdspec.mspx"
	FormatISO             = "http://www.ecma-international.org/publications/standards/Ecma-119.htm"
)

// FormatName returns the short name of a disk format URI: "vmdk/<subformat>"
// for VMware's URIs (old and new spellings), "qcow2", "raw", "vhd" or
// "iso". An empty URI gives "", an unknown one is returned unchanged.
// The name is only a hint: the content of an image decides its format.
func FormatName(uri string) string {
	if uri == "" {
		return ""
	}
	base, frag, _ := strings.Cut(uri, "#")
	b := strings.ToLower(base)
	b = strings.TrimPrefix(b, "https://")
	b = strings.TrimPrefix(b, "http://")
	switch b {
	case "www.vmware.com/interfaces/specifications/vmdk.html", "www.vmware.com/specifications/vmdk.html":
		if frag == "" {
			return "vmdk"
		}
		return "vmdk/" + frag
	case "www.gnome.org/~markmc/qcow-image-format.html":
		return "qcow2"
	case "en.wikipedia.org/wiki/byte":
		return "raw"
	case "www.microsoft.com/technet/virtualserver/downloads/vhdspec.mspx":
		return "vhd"
	case "www.ecma-international.org/publications/standards/ecma-119.htm":
		return "iso"
	}
	return uri
}

// FormatURI returns the URI written for a short format name; names
// FormatName does not produce are returned unchanged.
func FormatURI(name string) string {
	switch {
	case name == "" || name == "vmdk/streamOptimized":
		return FormatStreamOptimized
	case strings.HasPrefix(name, "vmdk/"):
		return "http://www.vmware.com/interfaces/specifications/vmdk.html#" + strings.TrimPrefix(name, "vmdk/")
	case name == "qcow2":
		return FormatQCOW2
	case name == "raw":
		return FormatRaw
	case name == "vhd":
		return FormatVHD
	case name == "iso":
		return FormatISO
	}
	return name
}

// knownFormat tells whether FormatName recognised the URI.
func knownFormat(uri string) bool {
	return uri == "" || FormatName(uri) != uri
}
