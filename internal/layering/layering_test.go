package layering

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is the import path prefix of every firewatch package; the
// Grafana plugin's module (dashboards/plugin) is under it too.
const module = "github.com/firewatch-iot/firewatch/"

// rule says that the packages at pkg (a path relative to the repository
// root; "ingest" means ingest and everything under it) may not import,
// directly or through other firewatch packages, those at any of forbid
// ("" is every firewatch package), except those at allow. Non-test code
// only. docs/architecture.md draws the same arrows.
type rule struct {
	pkg    string
	forbid []string
	allow  []string
	why    string
}

// rules is the layering. When a package moves, change its line here.
var rules = []rule{
	{pkg: "devices", forbid: []string{""}, allow: []string{"internal"},
		why: "the device model is the bottom layer: it imports no firewatch package but internal helpers"},
	{pkg: "rules", forbid: []string{"ingest", "alarms", "pipeline"},
		why: "the rule engine knows devices, not where readings come from or where alarms go"},
	{pkg: "ingest", forbid: []string{"alarms", "pipeline", "broker"},
		why: "sources and decoders hand messages up; they know nothing of alarms or of the embedded broker"},
	{pkg: "broker", forbid: []string{"alarms", "pipeline"},
		why: "the embedded broker authenticates devices and hands uplink to a function; it knows nothing of alarms"},
	{pkg: "pipeline", forbid: []string{"alarms"},
		why: "the pipeline reaches the alarm manager only through its Alarms interface (adapter in cmd/firewatch)"},
	{pkg: "durable", forbid: []string{""}, allow: []string{"spool", "internal"},
		why: "durable acknowledgement knows the spool and an interface of the InfluxDB writer, nothing of the pipeline or alarms"},
	{pkg: "cluster", forbid: []string{"alarms", "broker"},
		why: "cluster mode feeds the pipeline from NATS JetStream like any source; alarms reach it only through the pipeline"},
	{pkg: "gateway", forbid: []string{"alarms", "pipeline"},
		why: "edge code (firegate's) carries nothing of the server"},
	{pkg: "firmware-sim", forbid: []string{"alarms", "pipeline"},
		why: "edge code (the simulated devices) carries nothing of the server"},
	{pkg: "cmd/firegate", forbid: []string{"alarms", "pipeline"},
		why: "firegate, and whatever it imports, carries nothing of the server"},
	{pkg: "internal/apidoc", forbid: []string{""},
		why: "the checks of docs/api.yaml are test support that any package's tests may import: they import no firewatch package"},
	{pkg: "registry/sheet", forbid: []string{"alarms", "pipeline"},
		why: "spreadsheets are a format of the registry: they reach the store through a commit function and the API's auth through a wrapper"},
	{pkg: "registry", forbid: []string{"alarms", "pipeline"},
		why: "the registry keeps and serves the ledger's entries; the token check comes from cmd/firewatch, live adoption through devices.Live"},
	{pkg: "dashboards/plugin", forbid: []string{""}, allow: []string{"dashboards/plugin"},
		why: "the Grafana plugin is a module of its own that talks to firewatch over HTTP only"},
}

// under reports whether pkg is at prefix: prefix itself or below it.
func under(pkg, prefix string) bool {
	return prefix == "" || pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// imports returns, for each package directory of the repository (relative
// to root), the firewatch packages its non-test Go files import.
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				name == "testdata" || name == "node_modules" || name == "vendor" || name == "bin" || name == "var" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		dir = filepath.ToSlash(dir)
		if _, ok := graph[dir]; !ok {
			graph[dir] = nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rel, ok := strings.CutPrefix(p, module); ok && !slices.Contains(graph[dir], rel) {
				graph[dir] = append(graph[dir], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// violations checks graph against rs and returns one message per
// forbidden import, with the chain of imports that leads to it.
func violations(graph map[string][]string, rs []rule) (msgs []string, unmatched []string) {
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, r := range rs {
		matched := false
		for _, p := range pkgs {
			if !under(p, r.pkg) {
				continue
			}
			matched = true
			// Breadth first, so that the chain shown is a shortest one.
			via := map[string]string{p: ""}
			queue := []string{p}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				deps := slices.Clone(graph[cur])
				slices.Sort(deps)
				for _, dep := range deps {
					if _, seen := via[dep]; seen {
						continue
					}
					via[dep] = cur
					forbidden := slices.ContainsFunc(r.forbid, func(f string) bool { return under(dep, f) }) &&
						!slices.ContainsFunc(r.allow, func(a string) bool { return under(dep, a) }) && !under(dep, r.pkg)
					if !forbidden {
						queue = append(queue, dep)
						continue
					}
					chain := []string{dep}
					for c := cur; c != ""; c = via[c] {
						chain = append(chain, c)
					}
					slices.Reverse(chain)
					msgs = append(msgs, "forbidden import: "+p+" imports "+dep+
						" (via "+strings.Join(chain, " -> ")+"): "+r.why)
				}
			}
		}
		if !matched {
			unmatched = append(unmatched, r.pkg)
		}
	}
	return msgs, unmatched
}

// TestLayering fails with the forbidden import named when a package
// imports, directly or through others, one its layer may not.
func TestLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	graph := imports(t, root)
	msgs, unmatched := violations(graph, rules)
	t.Logf("%d packages checked against %d rules", len(graph), len(rules))
	for _, m := range msgs {
		t.Error(m)
	}
	for _, p := range unmatched {
		t.Errorf("layering rule for %q matches no package: it moved? update rules in internal/layering/layering_test.go and docs/architecture.md", p)
	}
}

// TestViolations checks the checker on a small graph of its own.
func TestViolations(t *testing.T) {
	graph := map[string][]string{
		"devices":           {"internal/yamlfile"},
		"internal/yamlfile": nil,
		"rules":             {"devices"},
		"ingest/nbiot":      {"devices", "rules"},
		"pipeline":          {"ingest/nbiot", "x"},
		"x":                 {"alarms"},
		"alarms":            {"rules"},
	}
	rs := []rule{
		{pkg: "devices", forbid: []string{""}, allow: []string{"internal"}, why: "bottom"},
		{pkg: "ingest", forbid: []string{"alarms"}, why: "up"},
		{pkg: "pipeline", forbid: []string{"alarms"}, why: "interface"},
		{pkg: "gone", forbid: []string{"alarms"}, why: "moved"},
	}
	msgs, unmatched := violations(graph, rs)
	want := "forbidden import: pipeline imports alarms (via pipeline -> x -> alarms): interface"
	if len(msgs) != 1 || msgs[0] != want {
		t.Errorf("violations %q, want [%q]", msgs, want)
	}
	if len(unmatched) != 1 || unmatched[0] != "gone" {
		t.Errorf("unmatched %q, want [gone]", unmatched)
	}
}
