package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"cimid/agent/cimi"
	"cimid/agent/cimi/query"
	"cimid/agent/errdefs"
)

// applyQuery applies the query parameters of a read to its document: on a
// collection $filter, $orderby, $first/$last (count is taken before paging)
// and $select on each member; on a single resource $select. $expand inlines
// the referenced documents.
func (s *Server) applyQuery(rq *Request, q *query.Query, reply *Reply) error {
	coll, ok := reply.Body.(*cimi.Collection)
	if !ok {
		if reply.Body == nil {
			return nil
		}
		if err := q.Select(reply.Body); err != nil {
			return err
		}
		return s.expand(rq, q, reply.Body)
	}
	var count int
	var page []any
	var err error
	switch {
	case coll.MemberJSON != nil && (coll.Members == nil || len(coll.MemberJSON) == len(coll.Members)):
		var docs [][]byte
		count, page, docs, err = q.ApplyJSON(coll.Members, coll.MemberJSON)
		coll.MemberJSON = docs
	default:
		coll.MemberJSON = nil
		count, page, err = q.Apply(coll.Members)
	}
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return errdefs.Wrap(errdefs.Invalid, err)
		}
		return err
	}
	coll.Count, coll.Members = count, page
	if all, attrs := q.Selection(); !all && len(attrs) > 0 && !slices.Contains(attrs, "operations") {
		coll.Operations = nil
	}
	if q.Reshapes() {
		coll.MemberJSON = nil // the members change below: their documents are made anew
	}
	for _, m := range coll.Members {
		if err := q.Select(m); err != nil {
			return err
		}
		if err := s.expand(rq, q, m); err != nil {
			return err
		}
	}
	return nil
}

// expand inlines, for each reference attribute of doc named by $expand (or
// all with *), the document it points to, as a GET of it would return.
func (s *Server) expand(rq *Request, q *query.Query, doc any) error {
	all, names := q.Expand()
	if !all && len(names) == 0 {
		return nil
	}
	v := reflect.ValueOf(doc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	v = v.Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name == "" || name == "-" || (!all && !slices.Contains(names, name)) {
			continue
		}
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeOf(&cimi.Ref{}) && !f.IsNil():
			s.expandRef(rq, f.Interface().(*cimi.Ref))
		case f.Type() == reflect.TypeOf([]cimi.Ref{}):
			for j := 0; j < f.Len(); j++ {
				s.expandRef(rq, f.Index(j).Addr().Interface().(*cimi.Ref))
			}
		}
	}
	return nil
}

func (s *Server) expandRef(rq *Request, ref *cimi.Ref) {
	path, ok := rq.URLs.Path(ref.Href)
	if !ok {
		return
	}
	rec := s.internalGet(rq.Request, "/cimi/"+path, cimi.JSON)
	if rec.Code != http.StatusOK {
		return
	}
	var m map[string]any
	if json.Unmarshal(rec.Body.Bytes(), &m) == nil {
		ref.Expanded = m
	}
}
