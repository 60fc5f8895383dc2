package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

const prefix = "http://schemas.dmtf.org/cimi/1"

// fakeServer implements just enough of cimid's CIMI API for the CLI:
// the entry point, collections, machines and their actions, image and
// template creation, and jobs that advance one step each time they are
// read.
type fakeServer struct {
	// token, if set, must be presented as a bearer token.
	token string

	mu       sync.Mutex
	machines map[string]*fakeMachine
	jobs     map[string]*fakeJob
	jobOrder []string
	next     int
	// requests records "METHOD /path" of every request.
	requests []string
	// bodies records the decoded body of every POST, by path.
	bodies map[string]map[string]any
}

type fakeMachine struct {
	id, name, state string
	cpu, memory     int64
}

type fakeJob struct {
	id, name, action string
	target           string
	affected         []string
	steps            []jobStep
	pos              int
	reads            int
}

type jobStep struct {
	state    string
	progress int
	msg      string
}

func (j *fakeJob) current() jobStep { return j.steps[min(j.pos, len(j.steps)-1)] }

func newFakeServer() *fakeServer {
	f := &fakeServer{
		machines: map[string]*fakeMachine{
			"m1": {id: "m1", name: "web-1", state: "STARTED", cpu: 2, memory: 4194304},
			"m2": {id: "m2", name: "db-1", state: "STOPPED", cpu: 4, memory: 8388608},
		},
		jobs:   map[string]*fakeJob{},
		bodies: map[string]map[string]any{},
	}
	f.addJob(&fakeJob{id: "j-fail", name: "import image", action: "add", target: "machineImages",
		steps: []jobStep{{"RUNNING", 30, "converting"}, {"FAILED", 100, "qemu-img: disk full"}}})
	f.addJob(&fakeJob{id: "j-run", name: "stop web-1", action: prefix + "/action/stop", target: "machines/m1",
		steps: []jobStep{{"RUNNING", 10, "waiting for guest shutdown"}}})
	f.addJob(&fakeJob{id: "j-done", name: "start db-1", action: prefix + "/action/start", target: "machines/m2",
		steps: []jobStep{{"SUCCESS", 100, ""}}})
	return f
}

func (f *fakeServer) addJob(j *fakeJob) {
	f.jobs[j.id] = j
	f.jobOrder = append(f.jobOrder, j.id)
}

// newJob starts a job whose states are steps; it must be called with mu held.
func (f *fakeServer) newJob(name, action, target string, affected []string, steps ...jobStep) *fakeJob {
	f.next++
	j := &fakeJob{id: fmt.Sprintf("j%d", f.next), name: name, action: action, target: target,
		affected: affected, steps: steps}
	f.addJob(j)
	return j
}

func (f *fakeServer) requestLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeServer) body(path string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[path]
}

func (f *fakeServer) jobReads(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[id].reads
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if got := r.Header.Get("CIMI-Specification-Version"); got != "1.1.0" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unsupported CIMI-Specification-Version %q", got))
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		writeError(w, http.StatusUnauthorized, "missing or wrong token")
		return
	}
	var body map[string]any
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		f.bodies[r.URL.Path] = body
	}
	f.route(w, r, body)
}

func (f *fakeServer) route(w http.ResponseWriter, r *http.Request, body map[string]any) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/cimi"), "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "cloudEntryPoint":
		f.entryPoint(w, r)
	case r.Method == http.MethodGet && len(parts) == 1:
		f.collection(w, r, parts[0])
	case r.Method == http.MethodGet && len(parts) == 2:
		f.member(w, r, parts[0], parts[1])
	case r.Method == http.MethodPost && len(parts) == 1:
		f.create(w, r, parts[0], body)
	case r.Method == http.MethodPost && len(parts) == 3:
		f.action(w, r, parts[0], parts[1], parts[2], body)
	case r.Method == http.MethodDelete && len(parts) == 2 && parts[0] == "machines":
		f.deleteMachine(w, r, parts[1])
	default:
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	}
}

func baseURI(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/cimi/"
}

func ref(r *http.Request, path string) map[string]any {
	return map[string]any{"href": baseURI(r) + path}
}

func ops(r *http.Request, path string, rels ...string) []map[string]any {
	out := make([]map[string]any, 0, len(rels))
	for _, rel := range rels {
		href := baseURI(r) + path
		if strings.HasPrefix(rel, "action/") {
			href += "/" + strings.TrimPrefix(rel, "action/")
			rel = prefix + "/" + rel
		}
		out = append(out, map[string]any{"rel": rel, "href": href})
	}
	return out
}

func (f *fakeServer) entryPoint(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{
		"resourceURI": prefix + "/CloudEntryPoint",
		"id":          baseURI(r) + "cloudEntryPoint",
		"name":        "fake-host",
		"baseURI":     baseURI(r),
	}
	for _, k := range []string{"resourceMetadata", "machines", "machineConfigs", "machineImages", "machineTemplates", "jobs"} {
		doc[k] = ref(r, k)
	}
	writeDoc(w, r, http.StatusOK, "CloudEntryPoint", doc)
}

func memberKey(coll string) string {
	switch coll {
	case "machines", "jobs", "machineImages", "machineTemplates", "resourceMetadata":
		return coll
	case "machineConfigs":
		return "machineConfigurations"
	}
	return ""
}

func (f *fakeServer) collection(w http.ResponseWriter, r *http.Request, name string) {
	key := memberKey(name)
	if key == "" {
		writeError(w, http.StatusNotFound, "no collection "+name)
		return
	}
	members := f.members(r, name)
	doc := map[string]any{
		"resourceURI": prefix + "/" + strings.TrimSuffix(strings.ToUpper(name[:1])+name[1:], "s") + "Collection",
		"id":          baseURI(r) + name,
		"count":       len(members),
		"operations":  ops(r, name, "add"),
	}
	if len(members) > 0 {
		doc[key] = members
	}
	writeDoc(w, r, http.StatusOK, "Collection", doc)
}

func (f *fakeServer) members(r *http.Request, name string) []map[string]any {
	var out []map[string]any
	switch name {
	case "machines":
		ids := make([]string, 0, len(f.machines))
		for id := range f.machines {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			out = append(out, f.machineDoc(r, f.machines[id]))
		}
	case "jobs":
		for _, id := range f.jobOrder {
			out = append(out, f.jobDoc(r, f.jobs[id]))
		}
	default:
		if doc := staticDoc(r, name, ""); doc != nil {
			out = append(out, doc)
		}
	}
	return out
}

// staticDoc returns the one fixed member of the read-only collections; an
// empty id means whichever member there is.
func staticDoc(r *http.Request, coll, id string) map[string]any {
	var doc map[string]any
	switch coll {
	case "machineConfigs":
		doc = map[string]any{"resourceURI": prefix + "/MachineConfiguration", "id": baseURI(r) + "machineConfigs/small",
			"name": "small", "cpu": 1, "memory": 1048576, "cpuArch": "x86_64",
			"disks": []map[string]any{{"capacity": 10485760, "format": "ext4"}}}
	case "machineImages":
		doc = map[string]any{"resourceURI": prefix + "/MachineImage", "id": baseURI(r) + "machineImages/debian-12",
			"name": "debian-12", "state": "AVAILABLE", "type": "IMAGE",
			"imageLocation": "file:///var/lib/cimid/images/debian-12.qcow2",
			"operations":    ops(r, "machineImages/debian-12", "edit", "delete")}
	case "machineTemplates":
		doc = map[string]any{"resourceURI": prefix + "/MachineTemplate", "id": baseURI(r) + "machineTemplates/small-debian",
			"name": "small-debian", "initialState": "STARTED",
			"machineConfig": ref(r, "machineConfigs/small"), "machineImage": ref(r, "machineImages/debian-12")}
	default:
		return nil
	}
	if id != "" && !strings.HasSuffix(doc["id"].(string), "/"+id) {
		return nil
	}
	return doc
}

func (f *fakeServer) machineDoc(r *http.Request, m *fakeMachine) map[string]any {
	path := "machines/" + m.id
	var rels []string
	switch m.state {
	case "STARTED":
		rels = []string{"edit", "action/stop", "action/restart", "action/pause", "action/suspend"}
	case "STOPPED":
		rels = []string{"edit", "delete", "action/start", "action/restart"}
	case "PAUSED", "SUSPENDED":
		rels = []string{"edit", "action/start", "action/stop"}
	}
	return map[string]any{
		"resourceURI": prefix + "/Machine", "id": baseURI(r) + path, "name": m.name,
		"state": m.state, "cpu": m.cpu, "memory": m.memory, "cpuArch": "x86_64",
		"disks": ref(r, path+"/disks"), "operations": ops(r, path, rels...),
	}
}

func (f *fakeServer) jobDoc(r *http.Request, j *fakeJob) map[string]any {
	step := j.current()
	rels := []string{"delete"}
	if step.state == "RUNNING" || step.state == "QUEUED" {
		rels = append(rels, "action/stop")
	}
	affected := []map[string]any{ref(r, j.target)}
	for _, a := range j.affected {
		affected = append(affected, ref(r, a))
	}
	doc := map[string]any{
		"resourceURI": prefix + "/Job", "id": baseURI(r) + "jobs/" + j.id, "name": j.name,
		"state": step.state, "action": j.action, "targetResource": ref(r, j.target),
		"affectedResources": affected, "progress": step.progress, "returnCode": 0,
		"timeOfStatusChange": "2025-01-10T10:00:07Z", "operations": ops(r, "jobs/"+j.id, rels...),
	}
	if step.msg != "" {
		doc["statusMessage"] = step.msg
	}
	return doc
}

func (f *fakeServer) member(w http.ResponseWriter, r *http.Request, coll, id string) {
	var doc map[string]any
	switch coll {
	case "machines":
		if m, ok := f.machines[id]; ok {
			doc = f.machineDoc(r, m)
		}
	case "jobs":
		if j, ok := f.jobs[id]; ok {
			j.reads++
			doc = f.jobDoc(r, j)
			if j.pos < len(j.steps)-1 {
				j.pos++
			}
		}
	default:
		doc = staticDoc(r, coll, id)
	}
	if doc == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %q not found", strings.TrimSuffix(coll, "s"), id))
		return
	}
	writeDoc(w, r, http.StatusOK, "Resource", doc)
}

func (f *fakeServer) create(w http.ResponseWriter, r *http.Request, coll string, body map[string]any) {
	name, _ := body["name"].(string)
	switch coll {
	case "machines":
		if body["resourceURI"] != prefix+"/MachineCreate" || name == "" {
			writeError(w, http.StatusBadRequest, "want a MachineCreate with a name")
			return
		}
		id := fmt.Sprintf("m%d", len(f.machines)+1)
		f.machines[id] = &fakeMachine{id: id, name: name, state: "STARTED", cpu: 1, memory: 1048576}
		j := f.newJob("create "+name, "add", "machines", []string{"machines/" + id},
			jobStep{"QUEUED", 0, ""}, jobStep{"RUNNING", 60, "defining domain"}, jobStep{"SUCCESS", 100, "machine started"})
		accepted(w, r, j, "machines/"+id)
	case "machineImages":
		if body["resourceURI"] != prefix+"/MachineImageCreate" || body["imageLocation"] == nil {
			writeError(w, http.StatusBadRequest, "want a MachineImageCreate with an imageLocation")
			return
		}
		j := f.newJob("import "+name, "add", "machineImages", []string{"machineImages/img1"},
			jobStep{"RUNNING", 50, "downloading"}, jobStep{"SUCCESS", 100, ""})
		accepted(w, r, j, "machineImages/img1")
	case "machineTemplates":
		j := f.newJob("create "+name, "add", "machineTemplates", []string{"machineTemplates/t1"},
			jobStep{"SUCCESS", 100, ""})
		w.Header().Set("CIMI-Job-URI", baseURI(r)+"jobs/"+j.id)
		w.Header().Set("Location", baseURI(r)+"machineTemplates/t1")
		w.WriteHeader(http.StatusCreated)
	default:
		writeError(w, http.StatusMethodNotAllowed, "cannot add to "+coll)
	}
}

func (f *fakeServer) action(w http.ResponseWriter, r *http.Request, coll, id, action string, body map[string]any) {
	if body["resourceURI"] != prefix+"/Action" || body["action"] != prefix+"/action/"+action {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad Action body %v", body))
		return
	}
	switch coll {
	case "jobs":
		j, ok := f.jobs[id]
		if !ok || action != "stop" {
			writeError(w, http.StatusNotFound, "no such job operation")
			return
		}
		j.steps, j.pos = []jobStep{{"STOPPING", j.current().progress, ""}, {"STOPPED", 100, "stopped by user"}}, 0
		w.WriteHeader(http.StatusAccepted)
	case "machines":
		m, ok := f.machines[id]
		if !ok {
			writeError(w, http.StatusNotFound, "no machine "+id)
			return
		}
		next := map[string]string{"start": "STARTED", "stop": "STOPPED", "restart": "STARTED",
			"pause": "PAUSED", "suspend": "SUSPENDED"}[action]
		m.state = next
		j := f.newJob(action+" "+m.name, prefix+"/action/"+action, "machines/"+id, nil,
			jobStep{"RUNNING", 50, ""}, jobStep{"SUCCESS", 100, ""})
		accepted(w, r, j, "machines/"+id)
	default:
		writeError(w, http.StatusNotFound, "no actions on "+coll)
	}
}

func (f *fakeServer) deleteMachine(w http.ResponseWriter, r *http.Request, id string) {
	m, ok := f.machines[id]
	if !ok {
		writeError(w, http.StatusNotFound, "no machine "+id)
		return
	}
	if m.state != "STOPPED" {
		writeError(w, http.StatusConflict, "machine "+id+" is "+m.state)
		return
	}
	delete(f.machines, id)
	j := f.newJob("delete "+m.name, "delete", "machines/"+id, nil, jobStep{"SUCCESS", 100, ""})
	accepted(w, r, j, "")
}

func accepted(w http.ResponseWriter, r *http.Request, j *fakeJob, location string) {
	w.Header().Set("CIMI-Job-URI", baseURI(r)+"jobs/"+j.id)
	if location != "" {
		w.Header().Set("Location", baseURI(r)+location)
	}
	w.WriteHeader(http.StatusAccepted)
}

// writeDoc answers with doc as JSON, or as a minimal XML rendering of its
// id when the client asked for XML.
func writeDoc(w http.ResponseWriter, r *http.Request, status int, root string, doc map[string]any) {
	if strings.Contains(r.Header.Get("Accept"), "xml") {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<%s xmlns="%s"><id>%s</id></%s>`, root, prefix, doc["id"], root)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(doc)
}

// writeError answers with a Job-shaped error body, as CIMI prescribes.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"resourceURI": prefix + "/Job", "id": "", "state": "FAILED", "progress": 100,
		"returnCode": status, "statusMessage": msg,
	})
}
