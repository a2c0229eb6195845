package alarms

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sqlText matches the start of a SQL statement in a string literal.
var sqlText = regexp.MustCompile(`(?i)\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|UNIQUE)|ALTER\s+TABLE)\b`)

// TestLayout keeps the seams of the package (doc.go): no SQL text outside
// the store (store*.go), and no severity spelt as a literal where
// rules.Severity names it.
func TestLayout(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	severities := map[string]bool{"fire": true, "warning": true, "fault": true, "offline": true}
	fs := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fs, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		store := strings.HasPrefix(name, "store")
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if !store && sqlText.MatchString(s) {
				t.Errorf("%s: SQL outside the store (store*.go): %.60q", fs.Position(lit.Pos()), s)
			}
			if severities[s] {
				t.Errorf("%s: severity %q as a literal: use rules.Severity", fs.Position(lit.Pos()), s)
			}
			return true
		})
	}
}
