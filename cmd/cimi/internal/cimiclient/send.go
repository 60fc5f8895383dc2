package cimiclient

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// Post sends body to href, the href of an operation or of a collection
// that is not listed in the entry point (such as a Machine's volumes).
func (c *Client) Post(ctx context.Context, href string, body any) (*Accepted, error) {
	return c.send(ctx, http.MethodPost, href, body)
}

// Update sends body to the "edit" operation of r. With attrs, the update
// is partial: only those attributes change ($select).
func (c *Client) Update(ctx context.Context, r *Resource, body any, attrs ...string) (*Accepted, error) {
	op, err := operation(r, "edit")
	if err != nil {
		return nil, err
	}
	href := op.Href
	if len(attrs) > 0 {
		u, err := url.Parse(href)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("$select", strings.Join(attrs, ","))
		u.RawQuery = q.Encode()
		href = u.String()
	}
	return c.send(ctx, http.MethodPut, href, body)
}
