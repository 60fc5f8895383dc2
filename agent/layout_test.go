package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointDown keeps the module's layering: cmd uses agent, agent
// uses hypervisor, store and ovf, and those three use none of the others;
// the CLI talks to the API only; the wire types and the HTTP layer never
// reach the hypervisor.
func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "cimid/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	type rule struct {
		pkg       string // the package, or a tree when it ends in "/..."
		forbidden []string
	}
	rules := []rule{
		{"cimid/store", []string{"cimid/agent", "cimid/cmd", "cimid/hypervisor", "cimid/ovf"}},
		{"cimid/ovf", []string{"cimid/agent", "cimid/cmd", "cimid/hypervisor", "cimid/store"}},
		{"cimid/hypervisor/...", []string{"cimid/agent", "cimid/cmd", "cimid/store", "cimid/ovf"}},
		{"cimid/agent/...", []string{"cimid/cmd"}},
		{"cimid/agent/cimi/...", []string{"cimid/hypervisor", "cimid/store"}},
		{"cimid/agent/api", []string{"cimid/hypervisor"}},
		{"cimid/cmd/cimi/...", []string{"cimid/agent", "cimid/hypervisor", "cimid/store"}},
	}
	within := func(pkg, tree string) bool {
		if root, ok := strings.CutSuffix(tree, "/..."); ok {
			return pkg == root || strings.HasPrefix(pkg, root+"/")
		}
		return pkg == tree
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, deps := fields[0], fields[1:]
		for _, r := range rules {
			if !within(pkg, r.pkg) {
				continue
			}
			checked++
			for _, dep := range deps {
				for _, f := range r.forbidden {
					if within(dep, f+"/...") {
						t.Errorf("%s depends on %s (rule: %s uses nothing of %s)", pkg, dep, r.pkg, f)
					}
				}
			}
		}
	}
	if checked < len(rules) {
		t.Fatalf("only %d package checks were made: go list said\n%s", checked, out)
	}
}
