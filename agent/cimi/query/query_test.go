package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"cimid/agent/cimi"
)

const base = "http://h/cimi/"

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func machine(name, state string, cpu int, created string, props cimi.Properties) *cimi.Machine {
	m := &cimi.Machine{
		Common: cimi.Common{
			ResourceURI: cimi.TypeURI("Machine"),
			ID:          base + "machines/" + name,
			Name:        name,
			Properties:  props,
		},
		State:  state,
		CPU:    cpu,
		Memory: int64(cpu) * 1048576,
		Disks:  cimi.NewRef(base + "machines/" + name + "/disks"),
		Operations: []cimi.Operation{
			{Rel: cimi.RelEdit, Href: base + "machines/" + name},
			{Rel: cimi.ActionURI("stop"), Href: base + "machines/" + name + "/stop"},
		},
	}
	if created != "" {
		m.Created, m.Updated = at(created), at(created)
	}
	return m
}

// machines returns fresh fixtures: alpha, beta, gamma, delta in that order.
func machines() []any {
	alpha := machine("alpha", cimi.StateStarted, 2, "2026-01-01T10:00:00Z", cimi.Properties{"env": "prod", "owner": "o'brien"})
	alpha.Description = "first"
	beta := machine("beta", cimi.StateStopped, 4, "2026-01-02T10:00:00Z", cimi.Properties{"env": "dev"})
	beta.Description = `say "hi"`
	gamma := machine("gamma", cimi.StateStarted, 1, "2026-01-03T10:00:00.250Z", nil)
	gamma.CPUArch = "x86_64"
	delta := machine("delta", cimi.StateError, 8, "", cimi.Properties{"env": "prod"})
	delta.Description = `C:\dir`
	return []any{alpha, beta, gamma, delta}
}

func jobs() []any {
	return []any{
		&cimi.Job{
			Common:             cimi.Common{ResourceURI: cimi.TypeURI("Job"), ID: base + "jobs/1", Name: "j1"},
			State:              cimi.JobRunning,
			TargetResource:     cimi.NewRef(base + "machines/alpha"),
			AffectedResources:  []cimi.Ref{{Href: base + "machines/alpha"}, {Href: base + "volumes/v1"}},
			Action:             cimi.ActionURI("stop"),
			Progress:           40,
			TimeOfStatusChange: at("2026-03-01T12:00:00Z"),
		},
		&cimi.Job{
			Common:             cimi.Common{ResourceURI: cimi.TypeURI("Job"), ID: base + "jobs/2", Name: "j2"},
			State:              cimi.JobSuccess,
			TargetResource:     cimi.NewRef(base + "machines/beta"),
			AffectedResources:  []cimi.Ref{{Href: base + "machines/beta"}},
			Action:             cimi.ActionURI("start"),
			Progress:           100,
			TimeOfStatusChange: at("2026-03-01T13:00:00Z"),
		},
		&cimi.Job{
			Common:     cimi.Common{ResourceURI: cimi.TypeURI("Job"), ID: base + "jobs/3", Name: "j3"},
			State:      cimi.JobFailed,
			Action:     cimi.RelAdd,
			ReturnCode: 1,
			Progress:   100,
		},
	}
}

func templates() []any {
	return []any{
		&cimi.MachineTemplate{
			Common:        cimi.Common{ID: base + "machineTemplates/small", Name: "small"},
			MachineConfig: &cimi.MachineConfigInput{CPU: 2, Memory: 2097152},
			MachineImage:  &cimi.MachineImageInput{Href: base + "machineImages/debian"},
		},
		&cimi.MachineTemplate{
			Common:        cimi.Common{ID: base + "machineTemplates/ref", Name: "ref"},
			MachineConfig: &cimi.MachineConfigInput{Href: base + "machineConfigs/large"},
			MachineImage:  &cimi.MachineImageInput{Href: base + "machineImages/alpine"},
		},
	}
}

func metadata() []any {
	return []any{
		&cimi.ResourceMetadata{
			Common:     cimi.Common{Name: "Machine"},
			TypeURI:    cimi.TypeURI("Machine"),
			Attributes: []cimi.AttributeMeta{{Name: "name", Required: false}, {Name: "cpu", Required: true}},
		},
		&cimi.ResourceMetadata{
			Common:     cimi.Common{Name: "Volume"},
			TypeURI:    cimi.TypeURI("Volume"),
			Attributes: []cimi.AttributeMeta{{Name: "name", Required: false}},
		},
	}
}

// flagged has a top-level boolean, which no CIMI 1.1 resource does.
type flagged struct {
	Name    string `json:"name"`
	Enabled *bool  `json:"enabled,omitempty"`
}

func flags() []any {
	yes, no := true, false
	return []any{&flagged{"on", &yes}, &flagged{"off", &no}, &flagged{"unset", nil}}
}

// memberNames lists the Name of each member, all of which have one.
func memberNames(members []any) []string {
	out := []string{}
	for _, m := range members {
		out = append(out, reflect.ValueOf(m).Elem().FieldByName("Name").String())
	}
	return out
}

func mustParse(t *testing.T, v url.Values) *Query {
	t.Helper()
	q, err := Parse(v)
	if err != nil {
		t.Fatalf("Parse(%v): %v", v, err)
	}
	return q
}

func filter(s string) url.Values { return url.Values{"$filter": {s}} }

func TestFilter(t *testing.T) {
	all := []string{"alpha", "beta", "gamma", "delta"}
	cases := []struct {
		name    string
		members func() []any
		filter  string
		want    []string
	}{
		// strings: all six operators
		{"string =", machines, `name='alpha'`, []string{"alpha"}},
		{"string = double quotes", machines, `name="alpha"`, []string{"alpha"}},
		{"string !=", machines, `name!='alpha'`, []string{"beta", "gamma", "delta"}},
		{"string <", machines, `name<'beta'`, []string{"alpha"}},
		{"string <=", machines, `name<='beta'`, []string{"alpha", "beta"}},
		{"string >", machines, `name>'delta'`, []string{"gamma"}},
		{"string >=", machines, `name>='delta'`, []string{"gamma", "delta"}},
		{"string empty value", machines, `name=''`, nil},
		{"string value first", machines, `'alpha' = name`, []string{"alpha"}},
		{"string value first ordering", machines, `'beta' > name`, []string{"alpha"}},
		{"state", machines, `state = 'STARTED'`, []string{"alpha", "gamma"}},

		// numbers: all six operators
		{"int =", machines, `cpu=2`, []string{"alpha"}},
		{"int !=", machines, `cpu!=2`, []string{"beta", "gamma", "delta"}},
		{"int <", machines, `cpu<2`, []string{"gamma"}},
		{"int <=", machines, `cpu<=2`, []string{"alpha", "gamma"}},
		{"int >", machines, `cpu>2`, []string{"beta", "delta"}},
		{"int >=", machines, `cpu>=4`, []string{"beta", "delta"}},
		{"int value first", machines, `2 < cpu`, []string{"beta", "delta"}},
		{"int value first <=", machines, `4 <= cpu`, []string{"beta", "delta"}},
		{"int negative", machines, `cpu > -1`, all},
		{"int large", machines, `memory >= 4194304`, []string{"beta", "delta"}},
		{"int leading zeros", machines, `cpu = 004`, []string{"beta"}},

		// dateTime
		{"dateTime >", machines, `created > '2026-01-01T10:00:00Z'`, []string{"beta", "gamma"}},
		{"dateTime = other offset", machines, `created = '2026-01-01T11:00:00+01:00'`, []string{"alpha"}},
		{"dateTime = fractional", machines, `created = '2026-01-03T10:00:00.25Z'`, []string{"gamma"}},
		{"dateTime without offset is UTC", machines, `created <= '2026-01-02T10:00:00'`, []string{"alpha", "beta"}},
		{"date <", machines, `created < '2026-01-02'`, []string{"alpha"}},
		{"date >=", machines, `created >= "2026-01-02"`, []string{"beta", "gamma"}},
		{"date with offset", machines, `created < '2026-01-02+10:00'`, []string{"alpha"}},
		{"dateTime !=", machines, `created != '2026-01-01T10:00:00.000Z'`, []string{"beta", "gamma"}},
		{"dateTime value first", machines, `'2026-01-02T10:00:00Z' >= updated`, []string{"alpha", "beta"}},
		{"dateTime against non-date string", machines, `created = 'yesterday'`, nil},

		// absent attributes and mismatched types
		{"absent =", machines, `cpuArch = 'x86_64'`, []string{"gamma"}},
		{"absent !=", machines, `cpuArch != 'x86_64'`, nil},
		{"absent <", machines, `cpuArch < 'z'`, []string{"gamma"}},
		{"unknown attribute", machines, `nosuch = 1 or nosuch != 1 or nosuch < 'a'`, nil},
		{"number against string", machines, `cpu = '2'`, nil},
		{"number != string", machines, `cpu != '2'`, all},
		{"string against number", machines, `name = 2 or name > 0`, nil},
		{"object against string", machines, `disks = 'x' or disks > 'a'`, nil},

		// and, or, precedence, parentheses
		{"and", machines, `state='STARTED' and cpu>1`, []string{"alpha"}},
		{"or", machines, `name='alpha' or name='delta'`, []string{"alpha", "delta"}},
		{"and binds tighter, right", machines, `state='STARTED' or state='STOPPED' and cpu=1`, []string{"alpha", "gamma"}},
		{"and binds tighter, left", machines, `cpu=1 and name='alpha' or cpu=8`, []string{"delta"}},
		{"parentheses override", machines, `(state='STARTED' or state='STOPPED') and cpu=1`, []string{"gamma"}},
		{"parentheses nested", machines, `((name='alpha') or (cpu>=4 and (state='ERROR')))`, []string{"alpha", "delta"}},
		{"chains", machines, `cpu=1 or cpu=2 or cpu=4 and state='STOPPED' and name='beta'`, []string{"alpha", "beta", "gamma"}},
		{"whitespace", machines, " \tname\n=\r\n'alpha'  and(cpu = 2)  ", []string{"alpha"}},

		// properties
		{"property", machines, `property['env']='prod'`, []string{"alpha", "delta"}},
		{"properties", machines, `properties['env'] = 'prod'`, []string{"alpha", "delta"}},
		{"property double quotes", machines, `property["env"]="dev"`, []string{"beta"}},
		{"property !=", machines, `property['env'] != 'prod'`, []string{"beta"}},
		{"property ordering", machines, `property['env'] > 'dev'`, []string{"alpha", "delta"}},
		{"property absent key", machines, `property['nokey'] = 'x'`, nil},
		{"property value first", machines, `'dev' = property['env']`, []string{"beta"}},
		{"property as path", machines, `properties/env = 'dev'`, []string{"beta"}},
		{"property doubled quote", machines, `property['owner'] = 'o''brien'`, []string{"alpha"}},
		{"property backslash quote", machines, `property['owner'] = 'o\'brien'`, []string{"alpha"}},

		// string escapes
		{"escaped double quotes", machines, `description = "say \"hi\""`, []string{"beta"}},
		{"doubled double quotes", machines, `description = "say ""hi"""`, []string{"beta"}},
		{"other quote inside", machines, `description = 'say "hi"'`, []string{"beta"}},
		{"lone backslash", machines, `description = 'C:\dir'`, []string{"delta"}},
		{"escaped backslash", machines, `description = 'C:\\dir'`, []string{"delta"}},

		// nested paths
		{"ref href", jobs, `targetResource/href = 'http://h/cimi/machines/beta'`, []string{"j2"}},
		{"ref href absent", jobs, `targetResource/href != 'http://h/cimi/machines/beta'`, []string{"j1"}},
		{"array: some element", jobs, `affectedResources/href = 'http://h/cimi/volumes/v1'`, []string{"j1"}},
		{"array: no element", jobs, `affectedResources/href != 'http://h/cimi/volumes/v1'`, []string{"j2"}},
		{"array: ordering", jobs, `affectedResources/href > 'http://h/cimi/n'`, []string{"j1"}},
		{"zero integer present", jobs, `returnCode = 0`, []string{"j1", "j2"}},
		{"job fields", jobs, `progress = 100 and returnCode != 0`, []string{"j3"}},
		{"job dateTime", jobs, `timeOfStatusChange >= '2026-03-01T12:30:00Z'`, []string{"j2"}},
		{"by value", templates, `machineConfig/cpu = 2`, []string{"small"}},
		{"by reference", templates, `machineConfig/href = 'http://h/cimi/machineConfigs/large'`, []string{"ref"}},
		{"through a scalar", templates, `machineConfig/cpu/x = 2`, nil},
		{"deep absent", templates, `machineImage/nosuch/x != 2`, nil},

		// booleans
		{"bool =", flags, `enabled = true`, []string{"on"}},
		{"bool !=", flags, `enabled != true`, []string{"off"}},
		{"bool value first", flags, `false = enabled`, []string{"off"}},
		{"bool against string", flags, `enabled = 'true'`, nil},
		{"bool in array", metadata, `attributes/required = true`, []string{"Machine"}},
		{"bool in array !=", metadata, `attributes/required != true`, []string{"Volume"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := mustParse(t, filter(c.filter))
			members := c.members()
			count, page, err := q.Apply(members)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := c.want
			if want == nil {
				want = []string{}
			}
			if got := memberNames(page); !slices.Equal(got, want) {
				t.Errorf("%s: got %q, want %q", c.filter, got, want)
			}
			if count != len(want) {
				t.Errorf("%s: count %d, want %d", c.filter, count, len(want))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		param, value, want string
	}{
		// unclosed quotes point at the opening quote
		{"$filter", `name='alpha`, `$filter: position 6: unclosed string: no closing ' for the quote at this position`},
		{"$filter", `name="alpha'`, `$filter: position 6: unclosed string: no closing " for the quote at this position`},
		{"$filter", `name='it\'`, `$filter: position 6: unclosed string: no closing ' for the quote at this position`},
		{"$filter", `name='a' or x='b''`, `$filter: position 15: unclosed string: no closing ' for the quote at this position`},
		// missing values point at what stands in their place
		{"$filter", `name=`, `$filter: position 6: expected a value after '='`},
		{"$filter", `state='a' or cpu>= `, `$filter: position 20: expected a value after '>='`},
		{"$filter", `name = alpha`, `$filter: position 8: expected a value after '=', found alpha: quote strings, as in 'alpha'`},
		{"$filter", `name = and cpu=1`, `$filter: position 8: expected a value after '=', found and`},
		{"$filter", `name = )`, `$filter: position 8: expected a value after '=', found ')'`},
		{"$filter", `'a' = 'b'`, `$filter: position 7: expected an attribute after '=' (one side of a comparison must be an attribute), found 'b'`},
		{"$filter", `1 = true`, `$filter: position 5: expected an attribute after '=' (one side of a comparison must be an attribute), found true`},
		// dangling and/or, missing comparisons
		{"$filter", `name='a' and`, `$filter: position 13: expected a comparison after 'and'`},
		{"$filter", `name='a' or `, `$filter: position 13: expected a comparison after 'or'`},
		{"$filter", `and name='a'`, `$filter: position 1: expected a comparison, found and`},
		{"$filter", `name='a' and and cpu=1`, `$filter: position 14: expected a comparison after 'and', found and`},
		{"$filter", `name='a' or * `, `$filter: position 13: expected a comparison after 'or', found '*'`},
		// parentheses
		{"$filter", `(name='a'`, `$filter: position 10: missing ')' to close the '(' at position 1`},
		{"$filter", `cpu=1 and ((name='a') or cpu=2`, `$filter: position 31: missing ')' to close the '(' at position 11`},
		{"$filter", `name='a')`, `$filter: position 9: unexpected ')' without a matching '('`},
		{"$filter", `(name='a'))`, `$filter: position 11: unexpected ')' without a matching '('`},
		{"$filter", `()`, `$filter: position 2: expected a comparison after '(', found ')'`},
		{"$filter", `(name='a' cpu=1)`, `$filter: position 11: expected 'and', 'or' or ')', found cpu`},
		{"$filter", `(`, `$filter: position 2: expected a comparison after '('`},
		{"$filter", strings.Repeat("(", 65) + "a=1" + strings.Repeat(")", 65), `$filter: position 65: parentheses nested deeper than 64`},
		// operators
		{"$filter", `name=='a'`, `$filter: position 5: unknown operator '==': use '='`},
		{"$filter", `name <> 'a'`, `$filter: position 6: unknown operator '<>': use '!='`},
		{"$filter", `cpu => 2`, `$filter: position 5: unknown operator '=>': use '>='`},
		{"$filter", `name ~ 'a'`, `$filter: position 6: unknown operator '~'`},
		{"$filter", `name ^= 'a'`, `$filter: position 6: unknown operator '^='`},
		{"$filter", `name 'a'`, `$filter: position 6: expected an operator (=, !=, <, <=, >, >=) after name, found 'a'`},
		{"$filter", `name`, `$filter: position 5: expected an operator (=, !=, <, <=, >, >=) after name`},
		{"$filter", `'alpha'`, `$filter: position 8: expected an operator (=, !=, <, <=, >, >=) after 'alpha'`},
		{"$filter", `enabled < true`, `$filter: position 9: booleans only compare with = or !=, not '<'`},
		{"$filter", `false >= enabled`, `$filter: position 7: booleans only compare with = or !=, not '>='`},
		// after a comparison
		{"$filter", `name='a' AND cpu=1`, `$filter: position 10: expected 'and', 'or' or the end of the filter, found AND`},
		{"$filter", `name='a' cpu=1`, `$filter: position 10: expected 'and', 'or' or the end of the filter, found cpu`},
		// properties and paths
		{"$filter", `property['k'] = 3`, `$filter: position 17: property values are strings: quote 3`},
		{"$filter", `true = properties['k']`, `$filter: position 1: property values are strings: quote true`},
		{"$filter", `property[k] = 'v'`, `$filter: position 10: expected a quoted key after '[', found k`},
		{"$filter", `property['k' = 'v'`, `$filter: position 14: expected ']' after the key, found '='`},
		{"$filter", `machineConfig/ = 2`, `$filter: position 16: expected an attribute name after '/', found '='`},
		{"$filter", `machineConfig/`, `$filter: position 15: expected an attribute name after '/'`},
		{"$filter", `2 = machineConfig/`, `$filter: position 19: expected an attribute name after '/'`},
		{"$filter", `'v' = property['k`, `$filter: position 16: unclosed string: no closing ' for the quote at this position`},
		// values
		{"$filter", `created > 2026-01-01`, `$filter: position 11: dateTime values must be quoted: '2026-01-01'`},
		{"$filter", `created > 2026-01-01T00:00:00Z`, `$filter: position 11: dateTime values must be quoted: '2026-01-01T00:00:00Z'`},
		{"$filter", `cpu = 2x`, `$filter: position 7: malformed integer 2x (only decimal integers are supported)`},
		{"$filter", `cpu = 1.5`, `$filter: position 7: malformed integer 1.5 (only decimal integers are supported)`},
		{"$filter", `cpu = 99999999999999999999`, `$filter: position 7: integer 99999999999999999999 is out of range`},
		{"$filter", `cpu = - 1`, `$filter: position 7: unexpected character '-'`},
		{"$filter", `name = 'a' # x`, `$filter: position 12: unexpected character '#'`},
		{"$filter", `name = 'é' and ü = 1`, `$filter: position 16: unexpected character 'ü'`},
		{"$filter", `name='é' and x`, `$filter: position 15: expected an operator (=, !=, <, <=, >, >=) after x`},
		// the first problem in the text wins
		{"$filter", `name = and 'unclosed`, `$filter: position 8: expected a value after '=', found and`},
		{"$filter", `name = 'x' and 'unclosed`, `$filter: position 16: unclosed string: no closing ' for the quote at this position`},
		{"$filter", `name = 'a long string value that goes on and on and on' 'x'`, `$filter: position 57: expected 'and', 'or' or the end of the filter, found 'x'`},
		{"$filter", `name 'a long string value that goes on and on and on'`, `$filter: position 6: expected an operator (=, !=, <, <=, >, >=) after name, found 'a long string value that goes on an…'`},

		{"$orderby", `name:up`, `$orderby: position 6: unknown sort order up: use asc or desc`},
		{"$orderby", `name up`, `$orderby: position 6: unknown sort order up: use asc or desc`},
		{"$orderby", `name:`, `$orderby: position 6: expected asc or desc after ':'`},
		{"$orderby", `name:,cpu`, `$orderby: position 6: expected asc or desc after ':', found ','`},
		{"$orderby", `name desc cpu`, `$orderby: position 11: expected ',' or the end of $orderby, found cpu`},
		{"$orderby", `name:desc:asc`, `$orderby: position 10: expected ',' or the end of $orderby, found ':'`},
		{"$orderby", `'name'`, `$orderby: position 1: expected an attribute name, found 'name'`},
		{"$orderby", `cpu,:desc`, `$orderby: position 5: expected an attribute name, found ':'`},
		{"$orderby", `property[env]`, `$orderby: position 10: expected a quoted key after '[', found env`},

		{"$first", `abc`, `$first: position 1: expected a positive integer, found "abc"`},
		{"$first", `  2x`, `$first: position 3: expected a positive integer, found "2x"`},
		{"$first", `0`, `$first: position 1: must be at least 1 (members count from 1), found 0`},
		{"$first", `-3`, `$first: position 1: must be at least 1 (members count from 1), found -3`},
		{"$first", `-99999999999999999999`, `$first: position 1: must be at least 1 (members count from 1), found -99999999999999999999`},
		{"$last", `1.5`, `$last: position 1: expected a positive integer, found "1.5"`},
		{"$last", `0`, `$last: position 1: must be at least 1 (members count from 1), found 0`},

		{"$select", `name state`, `$select: position 6: expected ',' or the end of $select, found state`},
		{"$select", `na-me`, `$select: position 3: unexpected character '-'`},
		{"$select", `disks/`, `$select: position 7: expected an attribute name after '/'`},
		{"$select", `name,'state'`, `$select: position 6: expected an attribute name or '*', found 'state'`},
		{"$expand", `'x'`, `$expand: position 1: expected an attribute name or '*', found 'x'`},
		{"$expand", `disks,*x`, `$expand: position 8: expected ',' or the end of $expand, found x`},
	}
	for _, c := range cases {
		_, err := Parse(url.Values{c.param: {c.value}})
		var qerr *Error
		if !errors.As(err, &qerr) {
			t.Errorf("%s=%s: error %v (%T), want *Error", c.param, c.value, err, err)
			continue
		}
		if got := err.Error(); got != c.want {
			t.Errorf("%s=%s:\n got %s\nwant %s", c.param, c.value, got, c.want)
		}
		if qerr.Param != c.param {
			t.Errorf("%s=%s: Param = %q", c.param, c.value, qerr.Param)
		}
	}
}

func TestErrorWithoutPosition(t *testing.T) {
	e := &Error{Param: "$filter", Msg: "oops"}
	if got := e.Error(); got != "$filter: oops" {
		t.Errorf("got %q", got)
	}
}

func TestEvaluationErrors(t *testing.T) {
	cases := []struct {
		members func() []any
		filter  string
		want    string
	}{
		{flags, `enabled > 1`, `$filter: position 9: enabled is a boolean: booleans only compare with = or !=, not '>'`},
		{flags, `name = 'on' and enabled <= 'x'`, `$filter: position 25: enabled is a boolean: booleans only compare with = or !=, not '<='`},
		{flags, `1 < enabled`, `$filter: position 3: enabled is a boolean: booleans only compare with = or !=, not '>'`},
		{metadata, `attributes/required >= 0`, `$filter: position 21: attributes/required is a boolean: booleans only compare with = or !=, not '>='`},
	}
	for _, c := range cases {
		q := mustParse(t, filter(c.filter))
		_, page, err := q.Apply(c.members())
		var qerr *Error
		if !errors.As(err, &qerr) || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", c.filter, err, c.want)
		}
		if page != nil {
			t.Errorf("%s: page %v along with an error", c.filter, memberNames(page))
		}
	}
	// Short-circuiting: the boolean comparison is never reached.
	q := mustParse(t, filter(`name = 'nobody' and enabled > 1`))
	if _, _, err := q.Apply(flags()); err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}

func TestApplyMarshalError(t *testing.T) {
	q := mustParse(t, filter(`a = 1`))
	if _, _, err := q.Apply([]any{make(chan int)}); err == nil {
		t.Error("want an error for a member JSON cannot encode")
	}
}

func TestParseParameters(t *testing.T) {
	q := mustParse(t, url.Values{
		"$filter": {"name='beta'", "name='alpha'"}, // first wins
		"$first":  {"1", "x"},
		"$format": {"xml"}, // not ours
		"filter":  {"(("},  // not a query parameter
		"$bogus":  {"(("},
	})
	count, page, err := q.Apply(machines())
	if err != nil || count != 1 || !slices.Equal(memberNames(page), []string{"beta"}) {
		t.Errorf("got %d %q %v", count, memberNames(page), err)
	}

	for _, v := range []url.Values{
		nil,
		{},
		{"$format": {"json"}},
		{"$filter": {"  "}, "$orderby": {""}, "$first": {" "}, "$last": {""}, "$select": {""}},
	} {
		q := mustParse(t, v)
		if !q.Empty() {
			t.Errorf("%v: not Empty", v)
		}
		count, page, err := q.Apply(machines())
		if err != nil || count != 4 || len(page) != 4 {
			t.Errorf("%v: Apply = %d, %d members, %v", v, count, len(page), err)
		}
	}
	for _, v := range []url.Values{
		filter("cpu=1"), {"$orderby": {"name"}}, {"$first": {"1"}}, {"$last": {"1"}},
		{"$select": {"name"}}, {"$expand": {""}},
	} {
		if mustParse(t, v).Empty() {
			t.Errorf("%v: Empty", v)
		}
	}
}

func TestNilQuery(t *testing.T) {
	var q *Query
	if !q.Empty() {
		t.Error("nil query not Empty")
	}
	members := machines()
	count, page, err := q.Apply(members)
	if err != nil || count != 4 || !slices.Equal(memberNames(page), memberNames(members)) {
		t.Errorf("Apply = %d, %q, %v", count, memberNames(page), err)
	}
	m := members[0].(*cimi.Machine)
	if err := q.Select(m); err != nil || m.State == "" {
		t.Errorf("Select changed the document: %v", err)
	}
	if all, attrs := q.Expand(); all || attrs != nil {
		t.Errorf("Expand = %v, %v", all, attrs)
	}
	if all, attrs := q.Selection(); all || attrs != nil {
		t.Errorf("Selection = %v, %v", all, attrs)
	}
}

func TestPaging(t *testing.T) {
	cases := []struct {
		first, last string
		filter      string
		count       int
		want        []string
	}{
		{"", "", "", 4, []string{"alpha", "beta", "gamma", "delta"}},
		{"2", "", "", 4, []string{"beta", "gamma", "delta"}},
		{"", "2", "", 4, []string{"alpha", "beta"}},
		{"2", "3", "", 4, []string{"beta", "gamma"}},
		{"3", "3", "", 4, []string{"gamma"}},
		{"4", "", "", 4, []string{"delta"}},
		{"5", "", "", 4, nil},
		{"3", "2", "", 4, nil},
		{"", "10", "", 4, []string{"alpha", "beta", "gamma", "delta"}},
		{"2", "10", "", 4, []string{"beta", "gamma", "delta"}},
		{"99999999999999999999", "", "", 4, nil},
		{"", "99999999999999999999", "", 4, []string{"alpha", "beta", "gamma", "delta"}},
		{" 2 ", " 3", "", 4, []string{"beta", "gamma"}},
		// count is taken after filtering, before paging
		{"2", "", "cpu >= 2", 3, []string{"beta", "delta"}},
		{"", "1", "cpu >= 2", 3, []string{"alpha"}},
		{"4", "", "cpu >= 2", 3, nil},
		{"1", "", "cpu > 100", 0, nil},
	}
	for _, c := range cases {
		v := url.Values{"$first": {c.first}, "$last": {c.last}, "$filter": {c.filter}}
		q := mustParse(t, v)
		count, page, err := q.Apply(machines())
		want := c.want
		if want == nil {
			want = []string{}
		}
		if err != nil || count != c.count || !slices.Equal(memberNames(page), want) {
			t.Errorf("first=%q last=%q filter=%q: got %d %q %v, want %d %q",
				c.first, c.last, c.filter, count, memberNames(page), err, c.count, want)
		}
	}
}

func TestPageIsACopy(t *testing.T) {
	members := machines()
	q := mustParse(t, url.Values{"$last": {"2"}})
	_, page, _ := q.Apply(members)
	_ = append(page, "intruder")
	page[0] = "replaced"
	if members[2] == "intruder" || members[0] == "replaced" {
		t.Error("the page shares the members' backing array")
	}
}

func TestOrderBy(t *testing.T) {
	cases := []struct {
		members func() []any
		orderBy string
		want    []string
	}{
		{machines, `name`, []string{"alpha", "beta", "delta", "gamma"}},
		{machines, `name:asc`, []string{"alpha", "beta", "delta", "gamma"}},
		{machines, `name asc`, []string{"alpha", "beta", "delta", "gamma"}},
		{machines, `name:desc`, []string{"gamma", "delta", "beta", "alpha"}},
		{machines, `name desc`, []string{"gamma", "delta", "beta", "alpha"}},
		{machines, `name DESC`, []string{"gamma", "delta", "beta", "alpha"}},
		{machines, `cpu`, []string{"gamma", "alpha", "beta", "delta"}},
		{machines, `cpu:desc`, []string{"delta", "beta", "alpha", "gamma"}},
		// stable: equal keys keep the members' order
		{machines, `state`, []string{"delta", "alpha", "gamma", "beta"}},
		{machines, `state:desc`, []string{"beta", "alpha", "gamma", "delta"}},
		// several keys, both syntaxes
		{machines, `state,name:desc`, []string{"delta", "gamma", "alpha", "beta"}},
		{machines, `state asc, name desc`, []string{"delta", "gamma", "alpha", "beta"}},
		{machines, `state:desc,cpu`, []string{"beta", "gamma", "alpha", "delta"}},
		{machines, `,state desc,,cpu,`, []string{"beta", "gamma", "alpha", "delta"}},
		// missing values sort last in both directions
		{machines, `cpuArch`, []string{"gamma", "alpha", "beta", "delta"}},
		{machines, `cpuArch:desc`, []string{"gamma", "alpha", "beta", "delta"}},
		{machines, `created:desc`, []string{"gamma", "beta", "alpha", "delta"}},
		{machines, `created`, []string{"alpha", "beta", "gamma", "delta"}},
		{machines, `description:desc`, []string{"beta", "alpha", "delta", "gamma"}},
		{machines, `property['env'],name:desc`, []string{"beta", "delta", "alpha", "gamma"}},
		{machines, `properties/env:desc, cpu:desc`, []string{"delta", "alpha", "beta", "gamma"}},
		{machines, `nosuch`, []string{"alpha", "beta", "gamma", "delta"}},
		// objects are not ordered: as if missing
		{machines, `disks,name:desc`, []string{"gamma", "delta", "beta", "alpha"}},
		{jobs, `targetResource/href:desc`, []string{"j2", "j1", "j3"}},
		{jobs, `timeOfStatusChange:desc`, []string{"j2", "j1", "j3"}},
		{jobs, `progress:desc,returnCode:desc`, []string{"j3", "j2", "j1"}},
		{templates, `machineConfig/cpu`, []string{"small", "ref"}},
		// booleans: false before true
		{flags, `enabled`, []string{"off", "on", "unset"}},
		{flags, `enabled:desc`, []string{"on", "off", "unset"}},
	}
	for _, c := range cases {
		members := c.members()
		before := memberNames(members)
		q := mustParse(t, url.Values{"$orderby": {c.orderBy}})
		_, page, err := q.Apply(members)
		if err != nil || !slices.Equal(memberNames(page), c.want) {
			t.Errorf("%s: got %q %v, want %q", c.orderBy, memberNames(page), err, c.want)
		}
		if !slices.Equal(memberNames(members), before) {
			t.Errorf("%s: Apply reordered its input", c.orderBy)
		}
	}
}

func TestOrderByMixedTypes(t *testing.T) {
	// A property whose values mix dateTimes and plain strings still sorts
	// into one total order: dateTimes (as instants) before other strings.
	mk := func(name, v string) any {
		return &cimi.Machine{Common: cimi.Common{Name: name, Properties: cimi.Properties{"k": v}}}
	}
	members := []any{
		mk("text", "abc"),
		mk("late", "2026-01-01T00:30:00Z"),
		mk("early", "2026-01-01T01:00:00+02:00"),
		mk("none", ""),
	}
	members[3].(*cimi.Machine).Properties = nil
	q := mustParse(t, url.Values{"$orderby": {"property['k']"}})
	_, page, _ := q.Apply(members)
	if want := []string{"early", "late", "text", "none"}; !slices.Equal(memberNames(page), want) {
		t.Errorf("got %q, want %q", memberNames(page), want)
	}
}

func TestOrderByTypeRank(t *testing.T) {
	// Values of different types order by type: booleans, numbers,
	// dateTimes, other strings; then the members without one.
	type loose struct {
		Name string `json:"name"`
		V    any    `json:"v,omitempty"`
	}
	members := []any{
		&loose{"string", "abc"},
		&loose{"object", map[string]any{"a": 1}},
		&loose{"number", 3},
		&loose{"missing", nil},
		&loose{"time", "2026-01-01T00:00:00Z"},
		&loose{"bool", true},
	}
	cases := map[string][]string{
		"v":      {"bool", "number", "time", "string", "object", "missing"},
		"v:desc": {"string", "time", "number", "bool", "object", "missing"},
	}
	for orderBy, want := range cases {
		_, page, err := mustParse(t, url.Values{"$orderby": {orderBy}}).Apply(members)
		if err != nil || !slices.Equal(memberNames(page), want) {
			t.Errorf("%s: got %q %v, want %q", orderBy, memberNames(page), err, want)
		}
	}
}

func TestOperators(t *testing.T) {
	holds := map[op][3]bool{ // for -1, 0, +1
		opEQ: {false, true, false},
		opNE: {true, false, true},
		opLT: {true, false, false},
		opLE: {true, true, false},
		opGT: {false, false, true},
		opGE: {false, true, true},
	}
	for o, want := range holds {
		for i, c := range []int{-1, 0, 1} {
			if got := o.holds(c); got != want[i] {
				t.Errorf("%s holds(%d) = %v", o, c, got)
			}
			// a op b is the same as b mirror(op) a
			if o.holds(c) != o.mirror().holds(-c) {
				t.Errorf("%s mirrored as %s", o, o.mirror())
			}
		}
	}
}

func TestFilterSortPage(t *testing.T) {
	q := mustParse(t, url.Values{
		"$filter":  {"state != 'STOPPED'"},
		"$orderby": {"cpu:desc"},
		"$first":   {"2"},
		"$last":    {"3"},
	})
	count, page, err := q.Apply(machines())
	if err != nil || count != 3 || !slices.Equal(memberNames(page), []string{"alpha", "gamma"}) {
		t.Errorf("got %d %q %v", count, memberNames(page), err)
	}
}

// jsonKeys returns the top-level keys of v's JSON encoding.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestSelect(t *testing.T) {
	full := jsonKeys(t, machines()[0])
	cases := []struct {
		doc  func() any
		sel  string
		want []string
	}{
		{func() any { return machines()[0] }, "name,state", []string{"id", "name", "resourceURI", "state"}},
		{func() any { return machines()[0] }, " state , name,state", []string{"id", "name", "resourceURI", "state"}},
		{func() any { return machines()[0] }, "operations", []string{"id", "operations", "resourceURI"}},
		{func() any { return machines()[0] }, "properties,nosuch,disks/name", []string{"disks", "id", "properties", "resourceURI"}},
		{func() any { return machines()[0] }, "created,cpu,memory", []string{"cpu", "created", "id", "memory", "resourceURI"}},
		{func() any { return machines()[0] }, "nosuch", []string{"id", "resourceURI"}},
		{func() any { return machines()[0] }, ",", []string{"id", "resourceURI"}},
		{func() any { return machines()[0] }, "*", full},
		{func() any { return machines()[0] }, "name,*", full},
		// attributes the wire model always writes stay, with their zero value
		{func() any { return jobs()[0] }, "state", []string{"id", "progress", "resourceURI", "returnCode", "state"}},
		{func() any { return templates()[0] }, "machineImage", []string{"id", "machineImage", "resourceURI"}},
		{func() any { return flags()[0] }, "enabled", []string{"enabled", "name"}},
	}
	for _, c := range cases {
		doc := c.doc()
		q := mustParse(t, url.Values{"$select": {c.sel}})
		if err := q.Select(doc); err != nil {
			t.Fatalf("%s: %v", c.sel, err)
		}
		if got := jsonKeys(t, doc); !slices.Equal(got, c.want) {
			t.Errorf("$select=%s: keys %q, want %q", c.sel, got, c.want)
		}
	}
}

func TestSelectMachineBothFormats(t *testing.T) {
	m := machines()[0].(*cimi.Machine)
	q := mustParse(t, url.Values{"$select": {"name,state"}})
	if err := q.Select(m); err != nil {
		t.Fatal(err)
	}
	want := &cimi.Machine{
		Common: cimi.Common{ResourceURI: cimi.TypeURI("Machine"), ID: base + "machines/alpha", Name: "alpha"},
		State:  cimi.StateStarted,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}

	var js bytes.Buffer
	if err := cimi.Encode(&js, cimi.JSON, m); err != nil {
		t.Fatal(err)
	}
	if got, want := jsonKeys(t, json.RawMessage(js.Bytes())), []string{"id", "name", "resourceURI", "state"}; !slices.Equal(got, want) {
		t.Errorf("JSON keys %q, want %q:\n%s", got, want, js.String())
	}
	var x bytes.Buffer
	if err := cimi.Encode(&x, cimi.XML, m); err != nil {
		t.Fatal(err)
	}
	wantXML := `<?xml version="1.0" encoding="UTF-8"?>
<Machine xmlns="http://schemas.dmtf.org/cimi/1">
  <id>http://h/cimi/machines/alpha</id>
  <name>alpha</name>
  <state>STARTED</state>
</Machine>
`
	if x.String() != wantXML {
		t.Errorf("XML:\n%s\nwant\n%s", x.String(), wantXML)
	}
}

func TestSelectLeavesNonAttributes(t *testing.T) {
	m := &cimi.Machine{Extra: cimi.Extra{{}}}
	m.XMLName.Local = "Machine"
	q := mustParse(t, url.Values{"$select": {"name"}})
	if err := q.Select(m); err != nil {
		t.Fatal(err)
	}
	if m.XMLName.Local != "Machine" || len(m.Extra) != 1 {
		t.Errorf("json:\"-\" fields were changed: %+v", m)
	}
}

func TestSelectEmbeddedPointer(t *testing.T) {
	type doc struct {
		*cimi.Common
		State string `json:"state"`
		Other string
	}
	d := &doc{Common: &cimi.Common{ID: "i", Name: "n", Description: "d"}, State: "s", Other: "o"}
	if err := mustParse(t, url.Values{"$select": {"Other,name"}}).Select(d); err != nil {
		t.Fatal(err)
	}
	if d.ID != "i" || d.Name != "n" || d.Description != "" || d.State != "" || d.Other != "o" {
		t.Errorf("got %+v %+v", d, d.Common)
	}
	if err := mustParse(t, url.Values{"$select": {"name"}}).Select(&doc{State: "s"}); err != nil {
		t.Errorf("nil embedded pointer: %v", err)
	}
}

func TestSelectNeedsAStructPointer(t *testing.T) {
	q := mustParse(t, url.Values{"$select": {"name"}})
	var nilMachine *cimi.Machine
	for _, doc := range []any{cimi.Machine{}, nilMachine, nil, new(int)} {
		if err := q.Select(doc); err == nil {
			t.Errorf("Select(%T): no error", doc)
		}
	}
	// Without $select there is nothing to check.
	if err := mustParse(t, nil).Select(cimi.Machine{}); err != nil {
		t.Errorf("Select without $select: %v", err)
	}
}

func TestExpandAndSelection(t *testing.T) {
	cases := []struct {
		value   *string
		all     bool
		attrs   []string
		selAll  bool
		selList []string
	}{
		{nil, false, nil, false, nil},
		{ptr(""), true, nil, false, nil},
		{ptr("*"), true, nil, true, nil},
		{ptr("volumes, disks,volumes"), false, []string{"volumes", "disks"}, false, []string{"volumes", "disks"}},
		{ptr("disks/volume,*"), true, []string{"disks/volume"}, true, []string{"disks/volume"}},
	}
	for _, c := range cases {
		v := url.Values{}
		if c.value != nil {
			v.Set("$expand", *c.value)
			v.Set("$select", *c.value)
		}
		q := mustParse(t, v)
		all, attrs := q.Expand()
		if all != c.all || !slices.Equal(attrs, c.attrs) {
			t.Errorf("$expand=%v: got %v %q, want %v %q", v.Get("$expand"), all, attrs, c.all, c.attrs)
		}
		all, attrs = q.Selection()
		if all != c.selAll || !slices.Equal(attrs, c.selList) {
			t.Errorf("$select=%v: got %v %q, want %v %q", v.Get("$select"), all, attrs, c.selAll, c.selList)
		}
		if len(attrs) > 0 {
			attrs[0] = "changed"
			if _, again := q.Selection(); again[0] == "changed" {
				t.Error("Selection returns the query's own slice")
			}
		}
	}
}

func ptr(s string) *string { return &s }

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		`name='alpha'`, `name="a""b" or cpu>=2 and (state!='X')`, `property['env'] = 'prod'`,
		`machineConfig/cpu = 2`, `created > '2026-01-01T00:00:00Z'`, `'a' = name`, `enabled < true`,
		`(name='a'`, `name=='a'`, `cpu = 2x`, `name='é`, `a\'b`, `((((((x=1))))))`, `x = -5`, `a/b['k']/c = 'v'`,
	} {
		f.Add(s)
	}
	members := append(append(append(machines(), jobs()...), flags()...), metadata()...)
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(filter(s))
		if err != nil {
			var qerr *Error
			if !errors.As(err, &qerr) {
				t.Fatalf("%q: error %v is a %T, not *Error", s, err, err)
			}
			if qerr.Param != "$filter" || qerr.Pos < 1 || qerr.Pos > utf8.RuneCountInString(s)+1 {
				t.Fatalf("%q: bad error %+v", s, qerr)
			}
			return
		}
		if _, _, err := q.Apply(members); err != nil {
			var qerr *Error
			if !errors.As(err, &qerr) {
				t.Fatalf("%q: evaluation error %v is a %T, not *Error", s, err, err)
			}
		}
	})
}
