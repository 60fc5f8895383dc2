package libvirt

import (
	"strings"
	"testing"
	"time"

	"cimid/hypervisor"
)

// A snapshot description as libvirt 9.0 writes it, shortened inside the
// saved definition, whose own <name> must not be taken for the snapshot's.
const snapshotDoc = `<domainsnapshot>
  <name>8c1d</name>
  <state>running</state>
  <parent>
    <name>77aa</name>
  </parent>
  <creationTime>1795946945</creationTime>
  <memory snapshot='internal'/>
  <disks>
    <disk name='vda' snapshot='internal'/>
  </disks>
  <domain type='qemu'>
    <name>cimid-0badf00d-m1</name>
    <devices><disk type='file' device='disk'><target dev='vda'/></disk></devices>
  </domain>
  <active>1</active>
</domainsnapshot>`

func TestSnapshotInfo(t *testing.T) {
	info, parent, err := snapshotInfo(snapshotDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := hypervisor.SnapshotInfo{Name: "8c1d", Running: true, State: hypervisor.StateRunning, Created: time.Unix(1795946945, 0).UTC()}
	if info != want || parent != "77aa" {
		t.Errorf("got %+v parent %q, want %+v parent 77aa", info, parent, want)
	}

	cold := strings.NewReplacer("<state>running</state>", "<state>shutoff</state>",
		"<parent>\n    <name>77aa</name>\n  </parent>\n", "").Replace(snapshotDoc)
	info, parent, err = snapshotInfo(cold)
	if err != nil || info.Running || info.State != hypervisor.StateShutoff || parent != "" || info.Name != "8c1d" {
		t.Errorf("shut-off snapshot without a parent: %+v parent %q err %v", info, parent, err)
	}

	for name, doc := range map[string]string{
		"not XML":           "<domainsnapshot><name>x</name",
		"another document":  "<domain><name>x</name></domain>",
		"no name":           "<domainsnapshot><state>shutoff</state></domainsnapshot>",
		"bad creation time": "<domainsnapshot><name>x</name><creationTime>soon</creationTime></domainsnapshot>",
	} {
		if _, _, err := snapshotInfo(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
