package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Firewatch is a firewatch process built from the repository's
// cmd/firewatch, for tests of what talks to it over HTTP (the dashboards,
// the Grafana plugin).
type Firewatch struct {
	// URL is the base URL of its HTTP server (API, /metrics, /healthz).
	URL string
	p   *process
}

// StartFirewatch builds cmd/firewatch of the repository at root (a path
// relative to the test's directory) and starts it with its embedded broker
// on a free port, the test ledger devices/testdata/ledger.yaml, an alarm
// store in a temporary directory, no API tokens, an InfluxDB URL where
// nothing listens, its HTTP server on a free loopback port and log level
// warn; extra flags come last and win (-influx.url of a real InfluxDB). It
// returns once /healthz answers 200, and stops the process when the test
// ends.
func StartFirewatch(t testing.TB, root string, extra ...string) *Firewatch {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		Skip(t, "no go command to build firewatch: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "firewatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/firewatch")
	build.Dir = root // in the main module, with its go.mod
	// Default cgo setting, as make build: CI runs some tests with
	// CGO_ENABLED=0, and this build then reuses make build's cache.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CGO_ENABLED=") {
			build.Env = append(build.Env, kv)
		}
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build firewatch: %v\n%s", err, out)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	args := []string{
		"-ledger", filepath.Join(root, "devices", "testdata", "ledger.yaml"),
		"-mqtt.listen", fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		"-influx.url", fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		"-alarms.db", filepath.Join(dir, "alarms.db"),
		"-alarms.secret", "testenv-firewatch-secret",
		"-http.listen", httpAddr, "-log.level", "warn",
	}
	fw := &Firewatch{URL: "http://" + httpAddr, p: newProcess("firewatch", bin, append(args, extra...)...)}
	if err := fw.p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fw.p.stop(15 * time.Second)
		if t.Failed() {
			t.Logf("firewatch output:\n%s", fw.p.output())
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	WaitFor(t, 60*time.Second, "firewatch healthy (/healthz 200)", func() bool {
		select {
		case <-fw.p.exited():
			t.Fatalf("firewatch exited: %v\n%s", fw.p.exitErr(), fw.p.output())
		default:
		}
		resp, err := client.Get(fw.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return fw
}
