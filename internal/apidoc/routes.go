package apidoc

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Patterns returns the patterns registered on mux ("GET /api/v1/alarms/{id}",
// "/nbiot/onenet"), sorted. net/http has no exported way to list them, so
// they are read from the ServeMux's routing index by reflection; when a Go
// release changes that layout, Patterns says so rather than returning
// nothing.
func Patterns(mux *http.ServeMux) ([]string, error) {
	idx := reflect.ValueOf(mux).Elem().FieldByName("index")
	multis, segs := idx.FieldByName("multis"), idx.FieldByName("segments")
	if !idx.IsValid() || multis.Kind() != reflect.Slice || segs.Kind() != reflect.Map {
		return nil, errLayout
	}
	seen := map[string]bool{}
	add := func(p reflect.Value) error {
		if p.Kind() != reflect.Pointer || p.Elem().Kind() != reflect.Struct {
			return errLayout
		}
		s := p.Elem().FieldByName("str")
		if s.Kind() != reflect.String {
			return errLayout
		}
		seen[s.String()] = true
		return nil
	}
	// Patterns ending in a multi wildcard ("/ui/") are in multis; every
	// other one is indexed under each of its segments, so under position 0.
	for i := range multis.Len() {
		if err := add(multis.Index(i)); err != nil {
			return nil, err
		}
	}
	for it := segs.MapRange(); it.Next(); {
		pos := it.Key().FieldByName("pos")
		if pos.Kind() != reflect.Int || it.Value().Kind() != reflect.Slice {
			return nil, errLayout
		}
		if pos.Int() != 0 {
			continue
		}
		for i := range it.Value().Len() {
			if err := add(it.Value().Index(i)); err != nil {
				return nil, err
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

var errLayout = errors.New("apidoc: net/http.ServeMux's routing index is not laid out as internal/apidoc/routes.go expects (a new Go release?): update Patterns")

// Route is one pattern firewatch serves, in the ServeMux that serves it.
type Route struct {
	Pattern string // as registered: "GET /api/v1/alarms/{id}", "/nbiot/onenet"
	Method  string // "" when the pattern has none (every method)
	Path    string // the pattern's path: "/api/v1/alarms/{id}"
}

func (r Route) String() string {
	if r.Method == "" {
		return "any method " + r.Path
	}
	return r.Method + " " + r.Path
}

func parseRoute(pattern string) Route {
	r := Route{Pattern: pattern, Path: pattern}
	if m, p, ok := strings.Cut(pattern, " "); ok {
		r.Method, r.Path = m, strings.TrimLeft(p, " ")
	}
	return r
}

// sample is a request path that pattern's path matches: each wildcard
// replaced by a value ("{id}" → "x1", "{rest...}" and a trailing "/" → "x1").
func sample(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			break
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			b.WriteString(path)
			break
		}
		b.WriteString(path[:i])
		if path[i:i+j+1] != "{$}" {
			b.WriteString("x1")
		}
		path = path[i+j+1:]
	}
	s := b.String()
	if strings.HasSuffix(s, "/") && s != "/" {
		s += "x1"
	}
	return s
}

// Routes lists the routes served through mux: its own patterns, and those
// of each ServeMux mounted on it (a pattern whose handler is itself a
// *http.ServeMux, as firewatch mounts the alarm API on "/api/v1/"), in
// place of the mount.
func Routes(mux *http.ServeMux) ([]Route, error) {
	pats, err := Patterns(mux)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, p := range pats {
		r := parseRoute(p)
		m := r.Method
		if m == "" {
			m = http.MethodGet
		}
		h, got := mux.Handler(httptest.NewRequest(m, sample(r.Path), nil))
		if got != p {
			return nil, fmt.Errorf("apidoc: a request to %s %s is routed to %q, not to its own pattern %q", m, sample(r.Path), got, p)
		}
		if inner, ok := h.(*http.ServeMux); ok {
			rs, err := Routes(inner)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// resolve returns the route mux serves a request of method and path with,
// looking into mounted ServeMuxes; "" when none (404 or 405).
func resolve(mux *http.ServeMux, method, path string) string {
	h, p := mux.Handler(httptest.NewRequest(method, path, nil))
	if inner, ok := h.(*http.ServeMux); ok && p != "" {
		return resolve(inner, method, path)
	}
	return p
}

// Compare checks doc against the routes mux serves, both ways: every
// operation of doc (path and method, with each path parameter given a
// value) must reach a route, and every route must be reached by at least
// one operation, except those whose pattern is in exclude (HTML pages,
// the profiler: the caller says why). Each problem is one line naming the
// route or the operation and what to do. An exclude entry that matches no
// route is a problem too, so that the list does not outlive its routes.
func Compare(doc *openapi3.T, mux *http.ServeMux, exclude []string) ([]string, error) {
	routes, err := Routes(mux)
	if err != nil {
		return nil, err
	}
	var problems []string
	described := map[string][]string{} // pattern → operations reaching it
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		methods := make([]string, 0, 4)
		for m := range item.Operations() {
			methods = append(methods, m)
		}
		slices.Sort(methods)
		for _, m := range methods {
			op := m + " " + path
			p := resolve(mux, m, sample(path))
			if p == "" {
				problems = append(problems, fmt.Sprintf("docs/api.yaml describes %s, but firewatch serves no such route (404 or 405): remove it from api.yaml, or register the route", op))
				continue
			}
			described[p] = append(described[p], op)
		}
	}
	excluded := map[string]bool{}
	for _, r := range routes {
		if slices.Contains(exclude, r.Pattern) {
			excluded[r.Pattern] = true
			continue
		}
		if len(described[r.Pattern]) > 0 {
			continue
		}
		problems = append(problems, fmt.Sprintf("firewatch serves %s (pattern %q), but docs/api.yaml does not describe it: add paths: %s: %s: to docs/api.yaml", r, r.Pattern, r.Path, strings.ToLower(orGet(r.Method))))
	}
	for _, e := range exclude {
		if !excluded[e] {
			problems = append(problems, fmt.Sprintf("the exclusion %q names no route firewatch serves: remove it from the list", e))
		}
	}
	return problems, nil
}

func orGet(m string) string {
	if m == "" {
		return "post (or the methods it answers)"
	}
	return m
}
