package query

import (
	"bytes"
	"encoding/json"
	"errors"
)

// view is the JSON form of a document as far as a query reads it: the
// attributes at its root named in roots, decoded into maps, slices,
// strings, float64 numbers and booleans, and nothing else. doc is the
// JSON of a resource document; one that is not an object is decoded
// whole.
func view(doc []byte, roots map[string]bool) (any, error) {
	d := bytes.TrimLeft(doc, " \t\r\n")
	if len(d) == 0 || d[0] != '{' {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
	out := make(map[string]any, len(roots))
	i := 1
	for {
		i = skipSpace(d, i)
		if i >= len(d) {
			return nil, errTruncated
		}
		if d[i] == '}' {
			return out, nil
		}
		if d[i] == ',' {
			i = skipSpace(d, i+1)
		}
		if i >= len(d) || d[i] != '"' {
			return nil, errors.New("malformed JSON document: expected an attribute name")
		}
		end, err := skipString(d, i)
		if err != nil {
			return nil, err
		}
		name := d[i+1 : end-1]
		var key string
		wanted := false
		if bytes.IndexByte(name, '\\') >= 0 {
			if err := json.Unmarshal(d[i:end], &key); err != nil {
				return nil, err
			}
			wanted = roots[key]
		} else if roots[string(name)] {
			key, wanted = string(name), true
		}
		i = skipSpace(d, end)
		if i >= len(d) || d[i] != ':' {
			return nil, errors.New("malformed JSON document: expected ':'")
		}
		start := skipSpace(d, i+1)
		if i, err = skipValue(d, start); err != nil {
			return nil, err
		}
		if wanted {
			var v any
			if err := json.Unmarshal(d[start:i], &v); err != nil {
				return nil, err
			}
			out[key] = v
		}
	}
}

var errTruncated = errors.New("malformed JSON document: it ends early")

func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at d[i].
func skipString(d []byte, i int) (int, error) {
	for i++; i < len(d); {
		q := bytes.IndexByte(d[i:], '"')
		if q < 0 {
			break
		}
		i += q
		// the quote ends the string unless an odd run of backslashes
		// escapes it
		n := 0
		for j := i - 1; j >= 0 && d[j] == '\\'; j-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i, nil
		}
	}
	return 0, errTruncated
}

// skipValue returns the index after the value that starts at d[i]: the
// value is checked only as far as finding its end needs.
func skipValue(d []byte, i int) (int, error) {
	if i >= len(d) {
		return 0, errTruncated
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for ; i < len(d); i++ {
			switch d[i] {
			case '"':
				end, err := skipString(d, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errTruncated
	}
	for ; i < len(d); i++ {
		switch d[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i, nil
		}
	}
	return i, nil
}
