package plugin

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

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestAgainstFirewatchProcess runs the plugin against a real firewatch
// process, built from cmd/firewatch and started with its embedded broker and
// no API tokens, so that /healthz and the devices API are the real ones (the
// in-process tests serve stand-ins for them).
func TestAgainstFirewatchProcess(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "no go command to build firewatch: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "firewatch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Built in the main module, with its go.mod.
	build := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/firewatch")
	build.Dir = "../../../.."
	// Default cgo setting, as make build: CI runs these tests with
	// CGO_ENABLED=0, and this build then reuses make build's cache.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CGO_ENABLED=") {
			build.Env = append(build.Env, kv)
		}
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build firewatch: %v\n%s", err, out)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin,
		"-ledger", "../../../../devices/testdata/ledger.yaml",
		"-mqtt.listen", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		// No reading is written in this test: InfluxDB need not be there.
		"-influx.url", fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)),
		"-alarms.db", filepath.Join(dir, "alarms.db"),
		"-alarms.secret", "plugin-process-test-secret",
		"-http.listen", httpAddr, "-log.level", "warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	url := "http://" + httpAddr
	deadline := time.Now().Add(wait)
	for {
		select {
		case err := <-exited:
			t.Fatalf("firewatch exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("firewatch not healthy within %s (%v)\n%s", wait, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}

	ds := newDS(t, url, "")
	res, err := ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
	if err != nil || res.Status != backend.HealthStatusOk || !strings.Contains(res.Message, "4 devices") {
		t.Errorf("health: %v %+v", err, res)
	}
	f := run(t, ds, map[string]any{"queryType": "devices", "grid": "450204"})
	if got := fmt.Sprint(column(t, f, "id")); got != "[el-1 sm-1 hy-1 ch-1]" {
		t.Errorf("devices %s", got)
	}
	f = run(t, ds, map[string]any{"queryType": "grid", "level": "town"})
	if got := column(t, f, "grid"); fmt.Sprint(got) != "[450204002]" {
		t.Errorf("grid %v", got)
	}
	if got := column(t, f, "devices"); got[0] != "4" {
		t.Errorf("grid devices %v", got)
	}
	f = run(t, ds, map[string]any{"queryType": "alarms", "state": "open"})
	if f.Rows() != 0 {
		t.Errorf("%d open alarms in a fresh firewatch", f.Rows())
	}
	f = run(t, ds, map[string]any{"queryType": "stats"})
	if f.Rows() != 0 {
		t.Errorf("stats of no alarms: %d rows", f.Rows())
	}
}
