package api

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"cimid/agent/cimi"
)

// itemRoutes serve one collection twice: /cimi/plain with its members as
// documents, /cimi/encoded with them already encoded as well, as a
// service with a cache of member documents does.
func itemRoutes() []Route {
	docs := func(rq *Request) []any {
		var out []any
		for i, name := range []string{"delta", "alpha", "charlie", "bravo", "echo"} {
			out = append(out, &cimi.MachineImage{
				Common: cimi.Common{ResourceURI: cimi.TypeURI("MachineImage"), ID: rq.URLs.Abs("items/" + strconv.Itoa(i)), Name: name,
					Description: `"quoted" <tagged> & more`},
				State:        "AVAILABLE",
				Capacity:     int64(i * 1024),
				RelatedImage: cimi.NewRef(rq.URLs.Abs("items/0")),
				Operations:   []cimi.Operation{{Rel: cimi.RelEdit, Href: rq.URLs.Abs("items/" + strconv.Itoa(i))}},
			})
		}
		return out
	}
	coll := func(rq *Request) *cimi.Collection {
		return &cimi.Collection{ResourceURI: cimi.TypeURI("MachineImageCollection"), ID: rq.URLs.Abs("items"), MemberKey: "machineImages",
			Operations: []cimi.Operation{{Rel: cimi.RelAdd, Href: rq.URLs.Abs("items")}}}
	}
	return []Route{
		{Method: http.MethodGet, Path: "/plain", Handler: func(rq *Request) (Reply, error) {
			c := coll(rq)
			c.Members = docs(rq)
			c.Count = len(c.Members)
			return Reply{Body: c}, nil
		}},
		{Method: http.MethodGet, Path: "/encoded", Handler: func(rq *Request) (Reply, error) {
			c := coll(rq)
			members := docs(rq)
			for _, m := range members {
				b, err := cimi.EncodeJSON(m)
				if err != nil {
					return Reply{}, err
				}
				c.MemberJSON = append(c.MemberJSON, b)
			}
			if !rq.JSONMembers() {
				c.Members = members
			}
			c.Count = len(members)
			return Reply{Body: c}, nil
		}},
	}
}

// A collection written from its members' encoded documents is, byte for
// byte, the one encoded from the members, with any query and in either
// format, and so has the same ETag.
func TestEncodedMembersReadAsTheMembers(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), itemRoutes())
	for _, query := range []string{
		"",
		"?$filter=capacity>=2048",
		"?$orderby=name&$first=2&$last=4",
		"?$filter=name!='echo'&$orderby=capacity:desc",
		"?$select=name,state",
		"?$select=*",
		"?$expand=relatedImage",
		"?$first=9",
		"?$format=xml",
		"?$format=xml&$filter=name='alpha'",
	} {
		want := serve(s, "GET", "/cimi/plain"+query, "")
		got := serve(s, "GET", "/cimi/encoded"+query, "")
		if want.Code != 200 || got.Code != 200 {
			t.Errorf("%s: status %d and %d", query, want.Code, got.Code)
			continue
		}
		if got.Body.String() != want.Body.String() {
			t.Errorf("%s: from encoded members:\n%s\nfrom the members:\n%s", query, got.Body, want.Body)
		}
		if got.Header().Get("ETag") != want.Header().Get("ETag") || got.Header().Get("Content-Length") != want.Header().Get("Content-Length") {
			t.Errorf("%s: headers %v and %v", query, got.Header(), want.Header())
		}
	}
}
