package apidoc

import (
	"context"
	"testing"
)

// TestSpecValid fails while docs/api.yaml is not valid OpenAPI of the
// version it declares (issue 18: it declared 3.0.3 and used 3.1's
// `type: [array, 'null']`).
func TestSpecValid(t *testing.T) {
	doc, err := Load(context.Background(), SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("docs/api.yaml: OpenAPI %s, %d paths", doc.OpenAPI, doc.Paths.Len())
}
