package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `firewatch registry import` fills the store, `export` gives it back as a
// ledger that imports to the same registry, and a dry run changes nothing.
func TestRegistryCLI(t *testing.T) {
	dir := t.TempDir()
	db := []string{"-alarms.db", filepath.Join(dir, "alarms.db")}
	ledger := writeLedger(t, "http://127.0.0.1:1")
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli(append(args, db...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, _, stderr := run("registry", "export"); code != 1 || !strings.Contains(stderr, "no registry") {
		t.Fatalf("export of an empty store: %d %s", code, stderr)
	}
	if code, out, stderr := run("registry", "import", ledger); code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("import: %d %s %s", code, out, stderr)
	}
	code, exported, stderr := run("registry", "export")
	if code != 0 || !strings.Contains(exported, "el-1") || !strings.Contains(exported, "st-tanxi") {
		t.Fatalf("export: %d %s %s", code, exported, stderr)
	}
	// Exported and imported again: nothing changes.
	back := filepath.Join(dir, "exported.yaml")
	os.WriteFile(back, []byte(exported), 0o600)
	if code, out, stderr := run("registry", "import", "-dry-run", back); code != 0 || out != "OK (dry run): 0 entries would change\n" {
		t.Fatalf("re-import of the export: %d %q %s", code, out, stderr)
	}
	// Without hy-1: a dry run says one change and makes none; the import removes it.
	i := strings.Index(exported, "- id: hy-1")
	j := strings.Index(exported[i+1:], "- id:")
	if i < 0 || j < 0 {
		t.Fatalf("export layout: %s", exported)
	}
	os.WriteFile(back, []byte(exported[:i]+exported[i+1+j:]), 0o600)
	if code, out, _ := run("registry", "import", "-dry-run", back); code != 0 || out != "OK (dry run): 1 entries would change\n" {
		t.Fatalf("dry run: %d %q", code, out)
	}
	if _, again, _ := run("registry", "export"); again != exported {
		t.Fatal("a dry run changed the registry")
	}
	if code, out, _ := run("registry", "import", back); code != 0 || out != "OK: 1 entries changed\n" {
		t.Fatalf("import: %d %q", code, out)
	}
	if _, now, _ := run("registry", "export"); strings.Contains(now, "hy-1") {
		t.Fatal("hy-1 still exported after the import without it")
	}
	// Without a ledger file, firewatch check validates the store's registry.
	if code, out, stderr := run("check", "-ledger", filepath.Join(dir, "none.yaml"), "-alarms.secret", "0123456789abcdef0123"); code != 0 || !strings.HasPrefix(out, "OK: 3 devices") {
		t.Fatalf("check of the store's registry: %d %q %s", code, out, stderr)
	}
	// A ledger with a mistake is refused with its line.
	os.WriteFile(back, []byte(strings.Replace(exported, "kind: smoke", "kind: toaster", 1)), 0o600)
	if code, _, stderr := run("registry", "import", back); code != 1 || !strings.Contains(stderr, "exported.yaml:") {
		t.Fatalf("bad import: %d %s", code, stderr)
	}
}
