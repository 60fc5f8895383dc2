package cimiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// EntryPoint returns the Cloud Entry Point, reading it on first use.
func (c *Client) EntryPoint(ctx context.Context) (*EntryPoint, error) {
	if c.cep != nil {
		return c.cep, nil
	}
	var cep EntryPoint
	if err := c.getJSON(ctx, c.cepURL.String(), &cep); err != nil {
		return nil, fmt.Errorf("reading the cloud entry point: %w", err)
	}
	c.cep = &cep
	return c.cep, nil
}

// EntryPointURL is where the client finds the Cloud Entry Point.
func (c *Client) EntryPointURL() string { return c.cepURL.String() }

// Prefix returns the CIMI namespace of the server, such as
// http://schemas.dmtf.org/cimi/1.
func (c *Client) Prefix(ctx context.Context) (string, error) {
	cep, err := c.EntryPoint(ctx)
	if err != nil {
		return "", err
	}
	return cep.Prefix(), nil
}

// BaseURI returns the URI that relative references resolve against.
func (c *Client) BaseURI(ctx context.Context) (string, error) {
	cep, err := c.EntryPoint(ctx)
	if err != nil {
		return "", err
	}
	if cep.BaseURI != "" {
		return cep.BaseURI, nil
	}
	return c.cepURL.ResolveReference(&url.URL{Path: "./"}).String(), nil
}

// Resolve turns a reference relative to the base URI into an absolute URL.
// Absolute references are returned unchanged.
func (c *Client) Resolve(ctx context.Context, ref string) (string, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", ref, err)
	}
	if r.IsAbs() {
		return ref, nil
	}
	base, err := c.BaseURI(ctx)
	if err != nil {
		return "", err
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parsing base URI %q: %w", base, err)
	}
	return b.ResolveReference(r).String(), nil
}

// CollectionHref returns the href of the collection the entry point lists
// under key (machines, machineConfigs, jobs, …).
func (c *Client) CollectionHref(ctx context.Context, key string) (string, error) {
	cep, err := c.EntryPoint(ctx)
	if err != nil {
		return "", err
	}
	href, ok := cep.Collections[key]
	if !ok {
		return "", fmt.Errorf("the server has no %q collection (it offers: %s)",
			key, strings.Join(cep.Keys(), ", "))
	}
	return href, nil
}

// ResolveMember turns a user's reference to a member of the collection
// under key into a URL. ref may be a full URL, a path relative to the base
// URI (anything containing a slash), or a bare id, which is looked up
// under the collection's href.
func (c *Client) ResolveMember(ctx context.Context, key, ref string) (string, error) {
	switch {
	case ref == "":
		return "", fmt.Errorf("empty reference to a member of %s", key)
	case strings.Contains(ref, "://"), strings.Contains(ref, "/"):
		return c.Resolve(ctx, ref)
	}
	coll, err := c.CollectionHref(ctx, key)
	if err != nil {
		return "", err
	}
	coll, err = c.Resolve(ctx, coll)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(coll, "/") + "/" + url.PathEscape(ref), nil
}

// Query holds the CIMI query parameters of a collection read.
type Query struct {
	Filter  string
	OrderBy string
	Select  string
	First   int
	Last    int
}

func (q Query) apply(href string) (string, error) {
	u, err := url.Parse(href)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", href, err)
	}
	v := u.Query()
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("$filter", q.Filter)
	set("$orderby", q.OrderBy)
	set("$select", q.Select)
	if q.First > 0 {
		v.Set("$first", strconv.Itoa(q.First))
	}
	if q.Last > 0 {
		v.Set("$last", strconv.Itoa(q.Last))
	}
	u.RawQuery = v.Encode()
	return u.String(), nil
}

// GetRaw reads href in the given media type and returns the body as sent.
func (c *Client) GetRaw(ctx context.Context, href, media string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, href, media, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (c *Client) getJSON(ctx context.Context, href string, v any) error {
	body, err := c.GetRaw(ctx, href, MediaJSON)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding %s: %w", href, err)
	}
	return nil
}

// Get reads one resource.
func (c *Client) Get(ctx context.Context, href string) (*Resource, error) {
	var r Resource
	if err := c.getJSON(ctx, href, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CollectionURL returns the URL that reads the collection under key with
// the query q applied.
func (c *Client) CollectionURL(ctx context.Context, key string, q Query) (string, error) {
	href, err := c.CollectionHref(ctx, key)
	if err != nil {
		return "", err
	}
	if href, err = c.Resolve(ctx, href); err != nil {
		return "", err
	}
	return q.apply(href)
}

// List reads the collection under key.
func (c *Client) List(ctx context.Context, key string, q Query) (*Collection, error) {
	href, err := c.CollectionURL(ctx, key, q)
	if err != nil {
		return nil, err
	}
	var coll Collection
	if err := c.getJSON(ctx, href, &coll); err != nil {
		return nil, err
	}
	return &coll, nil
}

// Job reads a Job.
func (c *Client) Job(ctx context.Context, href string) (*Job, error) {
	var j Job
	if err := c.getJSON(ctx, href, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Accepted is the server's answer to a state-changing request.
type Accepted struct {
	StatusCode int
	// JobURI is the CIMI-Job-URI header: the Job tracking the request.
	JobURI string
	// Location is the resource created or acted upon, when the server says.
	Location string
	Body     []byte
}

func (c *Client) send(ctx context.Context, method, href string, body any) (*Accepted, error) {
	resp, err := c.do(ctx, method, href, MediaJSON, body)
	if err != nil {
		return nil, err
	}
	return &Accepted{
		StatusCode: resp.StatusCode,
		JobURI:     resp.Header.Get("CIMI-Job-URI"),
		Location:   resp.Header.Get("Location"),
		Body:       resp.Body,
	}, nil
}

// Create posts body to the "add" operation of the collection under key.
func (c *Client) Create(ctx context.Context, key string, body any) (*Accepted, error) {
	coll, err := c.List(ctx, key, Query{Select: "operations"})
	if err != nil {
		return nil, fmt.Errorf("reading the %s collection: %w", key, err)
	}
	op, ok := coll.Operations.Find("add")
	if !ok {
		return nil, &UnavailableError{Op: "add", Resource: "the " + key + " collection",
			Available: coll.Operations.Names()}
	}
	return c.send(ctx, http.MethodPost, op.Href, body)
}

// Act invokes the operation named name (start, stop, …) on r, sending
// params alongside the action URI.
func (c *Client) Act(ctx context.Context, r *Resource, name string, params map[string]any) (*Accepted, error) {
	op, err := operation(r, name)
	if err != nil {
		return nil, err
	}
	prefix, err := c.prefixOf(ctx, r.ResourceURI)
	if err != nil {
		return nil, err
	}
	action := op.Rel
	if !strings.Contains(action, "://") {
		action = prefix + "/action/" + name
	}
	body := map[string]any{"resourceURI": prefix + "/Action", "action": action}
	for k, v := range params {
		body[k] = v
	}
	return c.send(ctx, http.MethodPost, op.Href, body)
}

// Delete deletes r through its "delete" operation.
func (c *Client) Delete(ctx context.Context, r *Resource) (*Accepted, error) {
	op, err := operation(r, "delete")
	if err != nil {
		return nil, err
	}
	return c.send(ctx, http.MethodDelete, op.Href, nil)
}

func operation(r *Resource, name string) (Operation, error) {
	op, ok := r.Operations.Find(name)
	if !ok {
		return Operation{}, &UnavailableError{Op: name, Resource: r.Label(), State: r.State,
			Available: r.Operations.Names()}
	}
	return op, nil
}

func (c *Client) prefixOf(ctx context.Context, typeURI string) (string, error) {
	if strings.Contains(typeURI, "://") {
		return PrefixOf(typeURI), nil
	}
	return c.Prefix(ctx)
}

// WaitJob follows the Job at href until it reaches a final state or ctx
// ends, handing each reading to observe, and returns the last reading,
// also when ctx ends first. Each GET asks the agent to hold the answer
// until the Job ends, for a second at most (Prefer: wait, RFC 7240), so
// an ending Job is seen at once and progress still shows; an agent that
// does not honour the preference is polled every interval.
func (c *Client) WaitJob(ctx context.Context, href string, interval time.Duration, observe func(*Job)) (*Job, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	var last *Job
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-t.C:
		}
		job, held, err := c.heldJob(ctx, href)
		if err != nil {
			return last, fmt.Errorf("polling job %s: %w", href, err)
		}
		last = job
		observe(job)
		if job.Done() {
			return job, nil
		}
		if held {
			t.Reset(0)
		} else {
			t.Reset(interval)
		}
	}
}

// heldJob reads the Job at href, asking the agent to answer once it has
// ended or a second has passed; held tells whether the agent did so.
func (c *Client) heldJob(ctx context.Context, href string) (job *Job, held bool, err error) {
	resp, err := c.doWith(ctx, http.MethodGet, href, MediaJSON, nil, http.Header{"Prefer": {"wait=1"}})
	if err != nil {
		return nil, false, err
	}
	var j Job
	if err := json.Unmarshal(resp.Body, &j); err != nil {
		return nil, false, fmt.Errorf("decoding %s: %w", href, err)
	}
	return &j, strings.HasPrefix(resp.Header.Get("Preference-Applied"), "wait="), nil
}
