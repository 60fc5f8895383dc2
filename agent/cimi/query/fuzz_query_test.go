package query_test

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"cimid/agent/cimi"
	"cimid/agent/cimi/query"
)

// fuzzMachines returns fresh documents for one run: Select trims them in
// place.
func fuzzMachines() []any {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(id, name, state string, cpu int, props cimi.Properties) *cimi.Machine {
		return &cimi.Machine{
			Common: cimi.Common{ResourceURI: cimi.TypeURI("Machine"), ID: "http://h/cimi/machines/" + id, Name: name,
				Created: &created, Properties: props},
			State: state, CPU: cpu, Memory: int64(cpu) << 20,
			Disks:      cimi.NewRef("http://h/cimi/machines/" + id + "/disks"),
			Operations: []cimi.Operation{{Rel: cimi.RelEdit, Href: "http://h/cimi/machines/" + id}},
		}
	}
	return []any{
		mk("1", "alpha", cimi.StateStarted, 2, cimi.Properties{"env": "prod"}),
		mk("2", "beta", cimi.StateStopped, 1, nil),
		mk("3", "", cimi.StateError, 8, cimi.Properties{"env": "dev", "k'": "v\""}),
		mk("4", "délta", cimi.StateStopped, 4, cimi.Properties{}),
	}
}

// FuzzParseQuery takes whole raw query strings through what a read does
// with them: url.ParseQuery (whose errors the server ignores, keeping what
// parsed), query.Parse, Apply on a few Machines, then Select on each member
// of the page and encoding in both formats. Nothing may panic, every error
// must be a *query.Error (a 400), and the page must fit the count.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "$filter=name%3D'alpha'", "$filter=cpu>=2 and state!='ERROR'&$orderby=cpu:desc,name&$first=1&$last=2",
		"$select=name,cpu,operations&$expand=disks", "$select=*&$expand", "$expand=*&$format=xml",
		"$orderby=name desc&$orderby=cpu", "$first=0", "$last=-1", "$first=99999999999999999999999",
		"$filter=property['env']='prod' or (properties['k''']=\"v\\\"\")", "$filter=created>'2026-01-01'",
		"$filter=disks/href!=''&$select=disks/href", "$filter=((((((((((cpu=1))))))))))",
		"$filter=%ZZ", "a=1&&b=2;c=3", "$filter=name%3D%27%E2%82%AC%27", "$filter=\x00", "$select=,,,&$orderby=:desc",
		"$first=%20%203%20&$last=%202", "$filter=cpu<true", "$orderby=name:sideways", "$select=name&$select=cpu",
		"$filter=" + strings.Repeat("(", 200) + "cpu=1" + strings.Repeat(")", 200),
		"$filter=" + strings.Repeat("cpu=1 and ", 100) + "cpu=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw)
		q, err := query.Parse(v)
		if err != nil {
			var qerr *query.Error
			if !errors.As(err, &qerr) {
				t.Fatalf("%q: error %v is a %T, not a *query.Error", raw, err, err)
			}
			if qerr.Error() == "" || !strings.HasPrefix(qerr.Param, "$") {
				t.Fatalf("%q: error %+v", raw, qerr)
			}
			return
		}
		q.Empty()
		q.Expand()
		q.Selection()
		members := fuzzMachines()
		count, page, err := q.Apply(members)
		if err != nil {
			var qerr *query.Error
			if !errors.As(err, &qerr) {
				t.Fatalf("%q: Apply error %v is a %T, not a *query.Error", raw, err, err)
			}
			return
		}
		if count < 0 || count > len(members) || len(page) > count {
			t.Fatalf("%q: count %d, page of %d, from %d members", raw, count, len(page), len(members))
		}
		for _, m := range page {
			if err := q.Select(m); err != nil {
				t.Fatalf("%q: Select: %v", raw, err)
			}
			for _, format := range []cimi.Format{cimi.JSON, cimi.XML} {
				if err := cimi.Encode(&bytes.Buffer{}, format, m); err != nil {
					t.Fatalf("%q: encode the selected %s: %v", raw, format, err)
				}
			}
		}
	})
}
