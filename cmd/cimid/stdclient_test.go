package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stdClient knows nothing of cimid: it starts at the entry point and
// follows the hrefs and operations the documents give, in one format.
type stdClient struct {
	t   *testing.T
	d   *daemon
	xml bool
}

// doc is a CIMI document reduced to what a generic client reads: simple
// attributes, references and operations.
type doc struct {
	attrs map[string]string // attribute -> text, or href for references
	ops   map[string]string // rel -> href
	items []doc             // collection members
}

func (c *stdClient) contentType() string {
	if c.xml {
		return "application/xml"
	}
	return "application/json"
}

func (c *stdClient) request(method, href, body string) (response, doc) {
	c.t.Helper()
	r := c.d.do(method, href, contentTypeIf(body, c.contentType()), []byte(body), "Accept", c.contentType())
	if len(r.Body) == 0 {
		return r, doc{}
	}
	if c.xml {
		return r, parseXMLDoc(c.t, r.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		c.t.Fatalf("%s %s: %v\n%s", method, href, err, r.Body)
	}
	return r, jsonDoc(m)
}

func contentTypeIf(body, ct string) string {
	if body == "" {
		return ""
	}
	return ct
}

func jsonDoc(m map[string]any) doc {
	d := doc{attrs: map[string]string{}, ops: map[string]string{}}
	for k, v := range m {
		switch val := v.(type) {
		case string:
			d.attrs[k] = val
		case float64:
			d.attrs[k] = fmt.Sprint(val)
		case map[string]any:
			if href, ok := val["href"].(string); ok {
				d.attrs[k] = href
			}
		case []any:
			for _, item := range val {
				im, ok := item.(map[string]any)
				if !ok {
					continue
				}
				if k == "operations" {
					d.ops[im["rel"].(string)] = im["href"].(string)
				} else {
					d.items = append(d.items, jsonDoc(im))
				}
			}
		}
	}
	return d
}

// parseXMLDoc reads the children of the root: text elements, elements with
// an href, <operation rel href>, and nested member elements.
func parseXMLDoc(t *testing.T, b []byte) doc {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var root xml.StartElement
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("XML: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok {
			root = se
			break
		}
	}
	if root.Name.Space != "http://schemas.dmtf.org/cimi/1" {
		t.Fatalf("XML root %v is not in the CIMI namespace", root.Name)
	}
	return xmlChildren(t, dec)
}

func xmlChildren(t *testing.T, dec *xml.Decoder) doc {
	d := doc{attrs: map[string]string{}, ops: map[string]string{}}
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.EndElement:
			return d
		case xml.StartElement:
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch {
			case el.Name.Local == "operation":
				d.ops[attr("rel")] = attr("href")
				dec.Skip()
			case attr("href") != "":
				d.attrs[el.Name.Local] = attr("href")
				dec.Skip()
			case strings.ToUpper(el.Name.Local[:1]) == el.Name.Local[:1]:
				d.items = append(d.items, xmlChildren(t, dec)) // a member
			default:
				var text string
				dec.DecodeElement(&text, &el)
				d.attrs[el.Name.Local] = strings.TrimSpace(text)
			}
		}
	}
}

// waitJob follows a CIMI-Job-URI until the Job ends; it must succeed.
func (c *stdClient) waitJob(r response, what string) {
	c.t.Helper()
	job := r.Header.Get("CIMI-Job-URI")
	if job == "" {
		c.t.Fatalf("%s: no CIMI-Job-URI (%d %s)", what, r.Status, r.Body)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, j := c.request(http.MethodGet, job, "")
		switch j.attrs["state"] {
		case "SUCCESS":
			return
		case "FAILED", "STOPPED":
			c.t.Fatalf("%s: job %v", what, j.attrs)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: job still %s", what, j.attrs["state"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// body renders a request document in the client's format.
func (c *stdClient) body(typ string, attrs string) string {
	if c.xml {
		return `<` + typ + ` xmlns="http://schemas.dmtf.org/cimi/1">` + attrs + `</` + typ + `>`
	}
	return `{"resourceURI":"http://schemas.dmtf.org/cimi/1/` + typ + `",` + attrs + `}`
}

func (c *stdClient) pick(jsonAttrs, xmlAttrs string) string {
	if c.xml {
		return xmlAttrs
	}
	return jsonAttrs
}

func (c *stdClient) act(machine doc, action string, jsonParams, xmlParams string) {
	c.t.Helper()
	rel := "http://schemas.dmtf.org/cimi/1/action/" + action
	href := machine.ops[rel]
	if href == "" {
		c.t.Fatalf("the Machine (%s) offers no %s: %v", machine.attrs["state"], action, machine.ops)
	}
	body := c.body("Action", c.pick(`"action":"`+rel+`"`+jsonParams, `<action>`+rel+`</action>`+xmlParams))
	r, _ := c.request(http.MethodPost, href, body)
	if r.Status != http.StatusAccepted {
		c.t.Fatalf("%s: %d %s", action, r.Status, r.Body)
	}
	c.waitJob(r, action)
}

// TestStandardClient drives a machine's life knowing only the entry point
// and what the documents link to, once in JSON and once in XML.
func TestStandardClient(t *testing.T) {
	for _, useXML := range []bool{false, true} {
		name := "json"
		if useXML {
			name = "xml"
		}
		t.Run(name, func(t *testing.T) {
			d := machineDaemon(t, newStateDir(t))
			c := &stdClient{t: t, d: d, xml: useXML}
			// a disk image no guest boots from: the domain runs, ignoring ACPI
			img := filepath.Join(d.stateDir, "blank.raw")
			if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			_, cep := c.request(http.MethodGet, "cloudEntryPoint", "")
			for _, key := range []string{"machines", "machineImages", "machineConfigs", "jobs"} {
				if cep.attrs[key] == "" {
					t.Fatalf("entry point lacks %s: %v", key, cep.attrs)
				}
			}
			_, images := c.request(http.MethodGet, cep.attrs["machineImages"], "")
			r, _ := c.request(http.MethodPost, images.ops["add"], c.body("MachineImageCreate",
				c.pick(`"name":"blank","imageLocation":"file://`+img+`"`, `<name>blank</name><imageLocation>file://`+img+`</imageLocation>`)))
			c.waitJob(r, "register the image")
			image := r.Header.Get("Location")

			_, configs := c.request(http.MethodGet, cep.attrs["machineConfigs"], "")
			var config string
			for _, m := range configs.items {
				if m.attrs["name"] == "small" {
					config = m.attrs["id"]
				}
			}
			if config == "" {
				t.Fatalf("no provider configuration named small among %d", len(configs.items))
			}
			_, machines := c.request(http.MethodGet, cep.attrs["machines"], "")
			r, _ = c.request(http.MethodPost, machines.ops["add"], c.body("MachineCreate", c.pick(
				`"name":"std","machineTemplate":{"machineConfig":{"href":"`+config+`"},"machineImage":{"href":"`+image+`"},"initialState":"STOPPED"}`,
				`<name>std</name><machineTemplate><machineConfig href="`+config+`"/><machineImage href="`+image+`"/><initialState>STOPPED</initialState></machineTemplate>`)))
			c.waitJob(r, "create the machine")
			machineURI := r.Header.Get("Location")
			get := func() doc {
				_, m := c.request(http.MethodGet, machineURI, "")
				return m
			}

			c.act(get(), "start", "", "")
			if st := get().attrs["state"]; st != "STARTED" {
				t.Fatalf("after start: %s", st)
			}
			c.act(get(), "stop", `,"force":true`, `<force>true</force>`)
			if st := get().attrs["state"]; st != "STOPPED" {
				t.Fatalf("after stop: %s", st)
			}
			captureHref := get().ops["http://schemas.dmtf.org/cimi/1/action/capture"]
			if captureHref == "" {
				t.Fatalf("a STOPPED Machine offers no capture: %v", get().ops)
			}
			r, _ = c.request(http.MethodPost, captureHref, c.body("MachineImageCreate", c.pick(
				`"name":"captured","imageLocation":"`+machineURI+`"`, `<name>captured</name><imageLocation>`+machineURI+`</imageLocation>`)))
			if r.Status != http.StatusAccepted && r.Status != http.StatusCreated {
				t.Fatalf("capture: %d %s", r.Status, r.Body)
			}
			c.waitJob(r, "capture")
			if captured := r.Header.Get("Location"); captured != "" {
				if _, im := c.request(http.MethodGet, captured, ""); im.attrs["state"] != "AVAILABLE" || im.attrs["type"] != "IMAGE" {
					t.Fatalf("captured image: %v", im.attrs)
				}
			}
			r, _ = c.request(http.MethodDelete, get().ops["delete"], "")
			c.waitJob(r, "delete")
			if gone, _ := c.request(http.MethodGet, machineURI, ""); gone.Status != http.StatusNotFound {
				t.Fatalf("deleted machine: %d", gone.Status)
			}
		})
	}
}
