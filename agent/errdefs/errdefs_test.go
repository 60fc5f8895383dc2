package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestHTTPStatusFollowsTheOutermostClass(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{errors.New("plain"), http.StatusInternalServerError},
		{Invalidf("bad %s", "body"), http.StatusBadRequest},
		{NotFoundf("gone"), http.StatusNotFound},
		{Conflictf("busy"), http.StatusConflict},
		{New(TooLarge, "big"), http.StatusRequestEntityTooLarge},
		{New(UnsupportedMedia, "text"), http.StatusUnsupportedMediaType},
		{fmt.Errorf("context: %w", Conflictf("busy")), http.StatusConflict},
		{Wrap(Invalid, NotFoundf("referenced thing")), http.StatusBadRequest},
	}
	for _, c := range cases {
		if got := HTTPStatus(c.err); got != c.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if Wrap(Invalid, nil) != nil {
		t.Error("wrapping nil made an error")
	}
	if !Is(fmt.Errorf("x: %w", NotFoundf("y")), NotFound) || Is(nil, NotFound) {
		t.Error("Is does not see through wrapping")
	}
}
