package compute

import (
	"encoding/json"
	"testing"
)

// TestVolumeDisksOfStoredAttachments reads attachments as the store keeps
// them, one written before volumes could be shared among them, and checks
// the disks a domain definition gets from them.
func TestVolumeDisksOfStoredAttachments(t *testing.T) {
	stored := `{"id":"m1","state":"STOPPED","domain":"d","volumes":[
		{"id":"a1","volumeId":"1234567890abcdef-1234567890","target":"vdb","path":"/pool/volume-1.qcow2","format":"qcow2","state":"ATTACHED"},
		{"id":"a2","volumeId":"v2","target":"vdc","path":"/pool/volume-2.raw","format":"raw","state":"ATTACHED","shareable":true},
		{"id":"a3","volumeId":"v3","target":"vdd","path":"/pool/volume-3.raw","format":"raw","state":"ATTACHING","shareable":true}]}`
	var m machineRecord
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		t.Fatal(err)
	}
	disks := volumeDisks(m)
	if len(disks) != 2 {
		t.Fatalf("disks %+v: want the two ATTACHED volumes", disks)
	}
	if d := disks[0]; d.Shareable || d.Target != "vdb" || d.Format != "qcow2" || d.Serial != "1234567890abcdef1234" {
		t.Errorf("volume attached before sharing existed: %+v", d)
	}
	if d := disks[1]; !d.Shareable || d.Target != "vdc" || d.Format != "raw" || d.Path != "/pool/volume-2.raw" {
		t.Errorf("shared volume: %+v", d)
	}

	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var again machineRecord
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if !sameAttachments(m.Volumes, again.Volumes) || again.Volumes[0].Shareable || !again.Volumes[1].Shareable {
		t.Errorf("attachments after a round trip: %+v", again.Volumes)
	}
}
