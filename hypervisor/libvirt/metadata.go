package libvirt

import (
	"encoding/xml"
	"fmt"
	"time"

	"cimid/hypervisor"
)

// The cimid metadata element lives in the domain's <metadata> under its own
// namespace (as a default namespace after DefineDomain, with the cimid prefix
// after SetMetadata; the two are the same XML):
//
//	<cimid:machine xmlns:cimid="urn:x-cimid:domain:1">
//	  <cimid:instance>…</cimid:instance>
//	  <cimid:machine-id>…</cimid:machine-id>
//	  <cimid:desired-state>STARTED</cimid:desired-state>
//	  <cimid:stop-deadline>2025-01-02T15:04:05Z</cimid:stop-deadline>
//	  <cimid:force-after-deadline>false</cimid:force-after-deadline>
//	</cimid:machine>
const (
	metadataNamespace = "urn:x-cimid:domain:1"
	metadataPrefix    = "cimid"
	metadataElement   = "machine"
)

type metadataXML struct {
	XMLName            xml.Name
	Instance           string `xml:"instance"`
	MachineID          string `xml:"machine-id"`
	DesiredState       string `xml:"desired-state"`
	StopDeadline       string `xml:"stop-deadline"`
	ForceAfterDeadline bool   `xml:"force-after-deadline"`
}

// encodeMetadata renders md as the cimid element. With namespaced set the
// element declares the cimid namespace, as <metadata> in a domain definition
// requires; without it the element is bare, as virDomainSetMetadata expects
// (libvirt then applies the namespace itself).
func encodeMetadata(md hypervisor.Metadata, namespaced bool) (string, error) {
	el := metadataXML{
		XMLName:            xml.Name{Local: metadataElement},
		Instance:           md.Instance,
		MachineID:          md.MachineID,
		DesiredState:       md.DesiredState,
		ForceAfterDeadline: md.ForceAfterDeadline,
	}
	if namespaced {
		el.XMLName.Space = metadataNamespace
	}
	if !md.StopDeadline.IsZero() {
		el.StopDeadline = md.StopDeadline.UTC().Format(time.RFC3339)
	}
	out, err := xml.Marshal(el)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	return string(out), nil
}

// decodeMetadata parses the cimid element as returned by
// virDomainGetMetadata, with or without its namespace.
func decodeMetadata(doc string) (*hypervisor.Metadata, error) {
	var el metadataXML
	if err := xml.Unmarshal([]byte(doc), &el); err != nil {
		return nil, fmt.Errorf("decode metadata: %w", err)
	}
	if el.XMLName.Local != metadataElement {
		return nil, fmt.Errorf("decode metadata: unexpected element <%s>", el.XMLName.Local)
	}
	md := &hypervisor.Metadata{
		Instance:           el.Instance,
		MachineID:          el.MachineID,
		DesiredState:       el.DesiredState,
		ForceAfterDeadline: el.ForceAfterDeadline,
	}
	if el.StopDeadline != "" {
		t, err := time.Parse(time.RFC3339, el.StopDeadline)
		if err != nil {
			return nil, fmt.Errorf("decode metadata: stop deadline: %w", err)
		}
		md.StopDeadline = t
	}
	return md, nil
}
