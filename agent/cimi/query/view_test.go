package query

import (
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"testing"
)

// The view of a document holds exactly the root attributes asked for, as
// a full decode of the document shows them.
func TestViewMatchesAFullDecode(t *testing.T) {
	docs := []string{
		`{"a":1,"b":"x","c":{"d":[1,2,{"e":"}]"}]},"f":null,"g":true}`,
		` { "a" : -1.5e3 , "b\"q" : "quote \" and \\ backslash" , "c" : [ ] , "d" : { } } `,
		`{"\u0061x":"escaped key","b":"\\\\","c":"\\\"","d":["\"]",{"x":"{"}],"e":false}`,
		`{"ü":"ß","b":"日本","c":[[[]]],"d":{"e":{"f":{"g":"h"}}}}`,
		`{}`,
		`[1,2,3]`,
		`"text"`,
	}
	for _, m := range append(machines(), jobs()...) {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	for _, doc := range docs {
		var full any
		if err := json.Unmarshal([]byte(doc), &full); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		obj, isObject := full.(map[string]any)
		if !isObject {
			got, err := view([]byte(doc), map[string]bool{"a": true})
			if err != nil || !reflect.DeepEqual(got, full) {
				t.Errorf("view of %s = %#v, %v; want %#v", doc, got, err, full)
			}
			continue
		}
		all := map[string]bool{"missing": true}
		for k := range obj {
			all[k] = true
			got, err := view([]byte(doc), map[string]bool{k: true})
			if err != nil || !reflect.DeepEqual(got, map[string]any{k: obj[k]}) {
				t.Errorf("view of %s at %q = %#v, %v; want %#v", doc, k, got, err, obj[k])
			}
		}
		got, err := view([]byte(doc), all)
		if err != nil || !reflect.DeepEqual(got, full) {
			t.Errorf("view of %s at every key = %#v, %v; want %#v", doc, got, err, full)
		}
	}
}

func TestViewRefusesATruncatedDocument(t *testing.T) {
	for _, doc := range []string{`{"a":1`, `{"a":"x`, `{"a":[1,2`, `{"a"`, `{"a":{"b":"}"`} {
		if v, err := view([]byte(doc), map[string]bool{"a": true}); err == nil {
			t.Errorf("view of %s = %#v, want an error", doc, v)
		}
	}
}

// ApplyJSON, with or without the members, chooses the same page as Apply.
func TestApplyJSONAgreesWithApply(t *testing.T) {
	queries := []url.Values{
		{},
		{"$filter": {"state != 'STOPPED'"}, "$orderby": {"cpu:desc"}, "$first": {"2"}, "$last": {"3"}},
		{"$filter": {"property['env'] = 'prod'"}},
		{"$orderby": {"created, name:desc"}},
		{"$filter": {"operations/rel = 'edit' and cpu >= 2"}, "$last": {"1"}},
		{"$filter": {"state = 'NONE'"}},
	}
	for _, v := range queries {
		q := mustParse(t, v)
		members := machines()
		var docs [][]byte
		for _, m := range members {
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, b)
		}
		wantCount, wantPage, err := q.Apply(members)
		if err != nil {
			t.Fatal(err)
		}
		count, page, pageDocs, err := q.ApplyJSON(members, docs)
		if err != nil || count != wantCount || !slices.Equal(memberNames(page), memberNames(wantPage)) {
			t.Errorf("%v: ApplyJSON gives %d %q (%v), Apply %d %q", v, count, memberNames(page), err, wantCount, memberNames(wantPage))
			continue
		}
		for i, m := range wantPage {
			if b, _ := json.Marshal(m); string(b) != string(pageDocs[i]) {
				t.Errorf("%v: document %d of the page is not its member's", v, i)
			}
		}
		count, page, docsOnly, err := q.ApplyJSON(nil, docs)
		if err != nil || count != wantCount || page != nil || !reflect.DeepEqual(docsOnly, pageDocs) {
			t.Errorf("%v: ApplyJSON without members gives %d %v %d documents (%v)", v, count, page, len(docsOnly), err)
		}
	}
	if _, _, _, err := mustParse(t, url.Values{}).ApplyJSON(machines(), nil); err == nil {
		t.Error("ApplyJSON took fewer documents than members")
	}
}
