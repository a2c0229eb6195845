package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestCheckRejectsZeroDurations: status_interval 0 (a ticker panic),
// publish_timeout 0 (a batch re-sent for ever) and other values that
// cannot work are configuration errors (finding 7 of issue 24).
func TestCheckRejectsZeroDurations(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/zero.yaml"
	writeFile(t, cfg, `gateway_id: gw-1
spool: {dir: `+dir+`}
status_interval: 0s
mqtt: {publish_timeout: 0s, reconnect_max: 0s}
buses:
  - port: /dev/ttyS1
    timeout: -1s
    retries: -1
    devices:
      - {id: el-1, model: ARCM300, slave: 1, offline_after: -2}
`)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", cfg}, &out, &errb, nil); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out.String())
	}
	for _, w := range []string{"status_interval", "publish_timeout", "reconnect_max", "timeout -1s", "retries -1", "offline_after -2"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, errb.String())
		}
	}
}

// TestSIGHUPReloads runs the firegate binary: SIGHUP with an invalid
// configuration keeps the running one, SIGHUP with a valid one starts
// polling the device it adds; the process never dies of the signal
// (finding 7 of issue 24: SIGHUP killed it).
func TestSIGHUPReloads(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "firegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	bus, err := rtu.NewBus(115200)
	if err != nil {
		testenv.Skip(t, "no pseudo-terminal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); bus.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served; bus.Close() })
	bus.AddSlave(1, maps["ARCM300"]).SetPlausible()
	bus.AddSlave(2, maps["PT-100"]).SetPlausible()

	var mu sync.Mutex
	seen := map[string]int{}
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL).SetClientID("watcher"))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	tok := cl.Subscribe("fw/v1/up/gw/gw-hup/batch", 1, func(_ paho.Client, m paho.Message) {
		var b struct{ Readings []struct{ Dev string } }
		json.Unmarshal(m.Payload(), &b)
		mu.Lock()
		for _, r := range b.Readings {
			seen[r.Dev]++
		}
		mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	count := func(dev string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[dev]
	}
	cfgPath := filepath.Join(dir, "firegate.yaml")
	config := func(devices string) {
		writeFile(t, cfgPath, fmt.Sprintf("gateway_id: gw-hup\nmqtt: {broker: %q}\nspool: {dir: %q}\nbuses:\n  - port: %s\n    baud: 115200\n    timeout: 200ms\n    devices:\n%s",
			mq.URL, filepath.Join(dir, "spool"), bus.Path, devices))
	}
	config("      - {id: el-1, model: ARCM300, slave: 1, interval: 200ms}\n")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	alive := func(what string) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf("firegate exited %s: %v\n%s", what, err, stderr.String())
		default:
		}
	}
	testenv.WaitFor(t, 15*time.Second, "readings of el-1", func() bool { return count("el-1") > 0 })

	// An invalid configuration is refused; the gateway keeps polling.
	config("      - {id: el-1, model: NOPE, slave: 1}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	n := count("el-1")
	testenv.WaitFor(t, 15*time.Second, "el-1 still polled after a bad reload", func() bool { alive("after SIGHUP"); return count("el-1") > n+3 })

	// A valid one is taken.
	config("      - {id: el-1, model: ARCM300, slave: 1, interval: 200ms}\n      - {id: hy-1, model: PT-100, slave: 2, interval: 200ms}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 15*time.Second, "readings of hy-1 after the reload", func() bool { alive("after SIGHUP"); return count("hy-1") > 0 })
	alive("after the reload")
}

// syncWriter lets the test read what the child writes meanwhile.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
