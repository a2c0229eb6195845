package apidoc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// CheckResponse validates a real answer to a request of method on the
// path template of doc (e.g. "/api/v1/alarms/{id}") against the
// operation's description: its status must be described, and its body
// must match the schema of its media type (kin-openapi's
// openapi3filter.ValidateResponse, every problem reported).
func CheckResponse(ctx context.Context, doc *openapi3.T, method, template string, req *http.Request, resp *http.Response, body []byte) error {
	item := doc.Paths.Value(template)
	if item == nil {
		return fmt.Errorf("docs/api.yaml has no path %s", template)
	}
	op := item.GetOperation(method)
	if op == nil {
		return fmt.Errorf("docs/api.yaml has no %s %s", method, template)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req,
			Route:   &routers.Route{Spec: doc, Path: template, PathItem: item, Method: method, Operation: op},
			Options: opts,
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		return fmt.Errorf("%s %s answered %d, not as docs/api.yaml describes %s %s: %w", method, req.URL.RequestURI(), resp.StatusCode, method, template, err)
	}
	return nil
}

// Nulls returns the places in a JSON document where a value is null, as
// paths like "digest.open" or "uitds[0].pending", except those whose last
// key is in allowed (fields that are null by design: "no value yet").
// An empty list or map must be [] or {}: a client iterating over it
// should not have to test for null first.
func Nulls(body []byte, allowed ...string) ([]string, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var out []string
	var walk func(path, key string, v any)
	walk = func(path, key string, v any) {
		switch x := v.(type) {
		case nil:
			if !slices.Contains(allowed, key) {
				out = append(out, strings.TrimPrefix(path, "."))
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(path+"."+k, k, x[k])
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), key, e)
			}
		}
	}
	walk("", "", v)
	return out, nil
}
