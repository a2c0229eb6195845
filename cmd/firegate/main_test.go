package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestCheckExample: the example configuration in docs/ is valid.
func TestCheckExample(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", "../../docs/firegate.example.yaml"}, &out, &errb, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "OK (2 buses)") {
		t.Errorf("output %q", out.String())
	}
}

func TestCheckReportsProblems(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/bad.yaml"
	writeFile(t, cfg, `gateway_id: "gw 1"
spool: {dir: `+dir+`}
buses:
  - port: /dev/ttyS1
    devices:
      - {id: el-1, model: NOPE, slave: 0}
      - {id: el-1, model: ARCM300, slave: 1, interval: 10ms}
`)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", cfg}, &out, &errb, nil); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, w := range []string{"gateway_id", `no register map for model "NOPE"`, "slave address 0", "duplicate device id", "interval 10ms"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, errb.String())
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVersionAndHelp: --version prints the stamped version and --help the
// man-style page, on stdout with exit status 0.
func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &errb, nil); code != 0 || !strings.HasPrefix(out.String(), "firegate ") || !strings.Contains(out.String(), "(revision ") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--help"}, &out, &errb, nil); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, w := range []string{"NAME\n", "SYNOPSIS\n", "FILES\n", "/var/lib/firegate/spool", "VERSION\n    firegate "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("--help lacks %q:\n%s", w, out.String())
		}
	}
}
