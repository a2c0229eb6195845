//go:build linux

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// BenchmarkDurableAck (issue 15) measures what acknowledging only once
// durable costs: the firewatch binary with its embedded broker and a real
// InfluxDB takes QoS 1 telemetry (4 readings a message) from 500 devices at
// a fixed rate for 4 s, once with durability.mode wal and once with off,
// in alternating order from one run to the next (go test -count N gives N
// interleaved rounds; take medians). Reported: the firewatch process's
// CPU-seconds per million readings and the devices' PUBACK latency
// (publish → PUBACK) p50 and p99, by mode. The timed loads ignore b.N. 500 devices take turns, each sending one message every 100 ms at 20,000 readings/s.
func BenchmarkDurableAck(b *testing.B) {
	db := testenv.StartInfluxDB(b)
	bin := buildFirewatchB(b)
	for _, rate := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("readings=%d", rate), func(b *testing.B) {
			modes := []string{"wal", "off"}
			round++
			if round%2 == 0 {
				slices.Reverse(modes)
			}
			for range b.N {
				for _, mode := range modes {
					r := durableLoad(b, bin, db, mode, rate, 4*time.Second)
					b.ReportMetric(r.cpuPerM, mode+"-cpu-s/M-readings")
					b.ReportMetric(float64(r.p50.Microseconds())/1000, mode+"-ack-p50-ms")
					b.ReportMetric(float64(r.p99.Microseconds())/1000, mode+"-ack-p99-ms")
				}
			}
		})
	}
}

// round alternates the order of the modes between runs.
var round int

func buildFirewatchB(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("FW_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(b.TempDir(), "firewatch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type loadResult struct {
	cpuPerM  float64
	p50, p99 time.Duration
}

// durableLoad runs one timed load against a fresh firewatch in mode.
func durableLoad(b *testing.B, bin string, db *testenv.InfluxDB, mode string, rate int, d time.Duration) loadResult {
	b.Helper()
	const devices = 500
	dir := b.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(killLedger(devices)), 0o600); err != nil {
		b.Fatal(err)
	}
	brokerAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
	fw := &fwProcess{t: b, bin: bin, api: "http://" + httpAddr, args: []string{
		"-ledger", ledger, "-mqtt.listen", brokerAddr, "-mqtt.auth", "none",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-alarms.db", filepath.Join(dir, "alarms.db"), "-alarms.secret", e2eSecret,
		"-http.listen", httpAddr, "-log.level", "warn", "-durability.mode", mode, "-http.pprof",
	}}
	fw.start()
	defer fw.stop()
	pubs := make([]*rawPublisher, devices)
	for i := range pubs {
		pubs[i] = dialRawPublisher(b, brokerAddr, fmt.Sprintf("el-k-%03d", i))
	}
	// Every 10 ms the next rate/400 devices in turn send one message of
	// 4 readings: each device one message every devices*400/rate seconds.
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	seqs := make([]int, devices)
	next, due := 0, 0.0
	send := func() {
		<-tick.C
		for due += float64(rate) / 400; due >= 1; due-- {
			i := next
			next = (next + 1) % devices
			seqs[i]++
			seq := seqs[i]
			pubs[i].publish(seq, fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d,"cable_temp_c":31.5,"phase_current_a":12,"voltage_v":221}}`,
				t0+int64(seq), seq, 20+(i+seq)%30))
		}
	}
	warm := time.Now()
	for time.Since(warm) < 500*time.Millisecond {
		send()
	}
	waitAcked(b, pubs)
	for _, p := range pubs {
		p.reset()
	}
	cpu0 := cpuOf(fw)
	if dir := os.Getenv("FW_BENCH_PROFILE"); dir != "" {
		go func() {
			resp, err := http.Get(fw.api + "/debug/pprof/profile?seconds=3")
			if err != nil {
				return
			}
			defer resp.Body.Close()
			f, _ := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", mode, rate)))
			io.Copy(f, resp.Body)
			f.Close()
		}()
	}
	start := time.Now()
	for time.Since(start) < d {
		send()
	}
	waitAcked(b, pubs)
	cpu := cpuOf(fw) - cpu0
	if os.Getenv("FW_BENCH_METRICS") != "" {
		if resp, err := http.Get(fw.api + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "firewatch_durable") {
					b.Log(l)
				}
			}
		}
	}
	var lat []time.Duration
	acked := 0
	for _, p := range pubs {
		lat = append(lat, p.latencies()...)
		acked += len(p.ackedSeqs())
		p.close()
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("nothing acknowledged")
	}
	return loadResult{cpuPerM: cpu / float64(4*acked) * 1e6, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
}

func waitAcked(b *testing.B, pubs []*rawPublisher) {
	testenv.WaitFor(b, 30*time.Second, "every message acknowledged", func() bool {
		for _, p := range pubs {
			if p.outstanding() > 0 {
				return false
			}
		}
		return true
	})
}

// cpuOf is the process's user+system CPU-seconds (/proc/PID/stat).
func cpuOf(p *fwProcess) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
