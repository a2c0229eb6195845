package apidoc

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"

	"github.com/getkin/kin-openapi/openapi3"
)

// SpecPath is the path of docs/api.yaml, found from this file's place in
// the repository, so that tests of any package can load it.
func SpecPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "api.yaml")
}

// Load reads the OpenAPI description at path and validates it as the
// OpenAPI version it declares (kin-openapi: the 3.0 rules for a 3.0.x
// file). Every problem is an error: an unresolvable $ref, a schema of
// another version's syntax, an example that does not match its schema.
func Load(ctx context.Context, path string) (*openapi3.T, error) {
	l := openapi3.NewLoader()
	doc, err := l.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("%s is not valid OpenAPI %s: %w", path, doc.OpenAPI, err)
	}
	return doc, nil
}
