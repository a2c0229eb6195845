package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// BenchmarkResidentMemory runs the firegate binary with 32 simulated
// devices (4 buses × 8, the three shipped models) against a real Mosquitto
// and reports its resident memory once every device has been polled ten
// times: MiB-rss now, MiB-peak the high-water mark (VmHWM).
func BenchmarkResidentMemory(b *testing.B) {
	mq := testenv.StartMosquitto(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "firegate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	maps, err := gateway.ShippedMaps()
	if err != nil {
		b.Fatal(err)
	}
	models := []string{"ARCM300", "PT-100", "CC-10"}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "gateway_id: gw-bench\nmqtt: {broker: %q}\nspool: {dir: %q}\nbuses:\n", mq.URL, filepath.Join(dir, "spool"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 4 {
		bus, err := rtu.NewBus(115200)
		if err != nil {
			testenv.Skip(b, "no pseudo-terminal: %v", err)
		}
		defer bus.Close()
		go bus.Serve(ctx)
		fmt.Fprintf(&cfg, "  - port: %s\n    baud: 115200\n    timeout: 200ms\n    devices:\n", bus.Path)
		for j := range 8 {
			model := models[(i*8+j)%3]
			bus.AddSlave(byte(j+1), maps[model]).SetPlausible()
			fmt.Fprintf(&cfg, "      - {id: dev-%d-%d, model: %s, slave: %d, interval: 1s}\n", i, j, model, j+1)
		}
	}
	cfgPath := filepath.Join(dir, "firegate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	var readings atomic.Int64
	c := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL).SetClientID("bench-tap"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	c.Subscribe("fw/v1/up/gw/gw-bench/batch", 1, func(_ paho.Client, m paho.Message) {
		readings.Add(int64(strings.Count(string(m.Payload()), `"dev":`)))
	}).Wait()

	cmd := exec.Command(bin, "-config", cfgPath, "-log.level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	// 32 devices × 10 polls; a CC-10 poll is 11 messages, the others 5 and 2.
	want := int64(10 * (11*11 + 11*5 + 10*2))
	deadline := time.Now().Add(60 * time.Second)
	for readings.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d readings within 60 s", readings.Load(), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	field := func(name string) float64 {
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, name+":") {
				kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				return kb / 1024
			}
		}
		return 0
	}
	b.ReportMetric(field("VmRSS"), "MiB-rss")
	b.ReportMetric(field("VmHWM"), "MiB-peak")
	b.ReportMetric(float64(readings.Load()), "readings")
}
