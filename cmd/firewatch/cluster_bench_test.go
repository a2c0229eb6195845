//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/cluster"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// BenchmarkCluster (issue 15, `make bench`) sets one firewatch instance in
// cluster mode (3 NATS nodes, JetStream R3, PostgreSQL alarm store,
// durability.mode written), consuming from the stream, beside the same
// binary in single-process mode with its embedded broker (SQLite,
// durability.mode written: the same acknowledgement condition), under the
// same QoS 1 load from 500 devices (4 readings a message), in alternating
// order from one run to the next (go test -count N: N interleaved rounds;
// take medians). Reported: each one's firewatch CPU-seconds per million
// readings and their ratio (cluster/single, measured in the same round),
// and the takeover time: two instances under load, kill -9 of the owner of
// a partition → the survivor's first message of it handled
// (firewatch_cluster_partition_acquired_unixms). The single-process figure
// includes the embedded broker's work; the cluster figure is firewatch's
// alone, and the three NATS servers' CPU over the same load (the broker,
// the stream's three replicas, the consumers) is reported beside it
// (nats3-cpu-s/M-readings, cluster+nats3/single). The timed loads ignore b.N.
func BenchmarkCluster(b *testing.B) {
	const parts = 16
	nc := testenv.StartNATSCluster(b, cluster.ServerMappings(parts))
	db := testenv.StartInfluxDB(b)
	pg := testenv.StartPostgres(b)
	bin := buildFirewatchB(b)
	const rate = 5000
	b.Run(fmt.Sprintf("readings=%d", rate), func(b *testing.B) {
		modes := []string{"single", "cluster"}
		round++
		if round%2 == 0 {
			slices.Reverse(modes)
		}
		for range b.N {
			var single, clustered, natsCPU, natsIdle float64
			for _, mode := range modes {
				if mode == "single" {
					single = durableLoad(b, bin, db, "written", rate, 4*time.Second).cpuPerM
				} else {
					clustered, natsCPU, natsIdle = clusterLoad(b, bin, nc, db, pg.NewDatabase(b), parts, rate, 4*time.Second)
				}
			}
			b.ReportMetric(single, "single-cpu-s/M-readings")
			b.ReportMetric(clustered, "cluster-cpu-s/M-readings")
			b.ReportMetric(clustered/single, "cluster/single")
			b.ReportMetric(natsCPU, "nats3-cpu-s/M-readings")
			b.ReportMetric((clustered+natsCPU)/single, "cluster+nats3/single")
			b.ReportMetric(natsIdle, "nats3-idle-cores")
			b.ReportMetric(clusterTakeover(b, bin, nc, db, pg.NewDatabase(b), parts).Seconds(), "takeover-s")
		}
	})
}

// clusterInstance is a firewatch process in cluster mode on nc.
func clusterInstance(b *testing.B, bin string, nc *testenv.NATSCluster, db *testenv.InfluxDB, dsn, ledger, name string, parts int) *fwProcess {
	dir := b.TempDir()
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
	return &fwProcess{t: b, bin: bin, api: "http://" + httpAddr, args: []string{
		"-ledger", ledger, "-durability.mode", "written",
		"-cluster.enabled", "-cluster.urls", nc.URLs(), "-cluster.instance", name,
		"-cluster.partitions", strconv.Itoa(parts), "-cluster.max_mb", "512",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-influx.spool_dir", filepath.Join(dir, "spool"), "-state.file", filepath.Join(dir, "state"),
		"-alarms.db", dsn, "-alarms.secret", e2eSecret,
		"-http.listen", httpAddr, "-log.level", "warn",
	}}
}

// benchFleet is durableLoad's load: 500 devices with hand-built MQTT
// connections, spread over addrs; every 10 ms the next rate/400 devices in
// turn send one message of 4 readings.
type benchFleet struct {
	pubs      []*rawPublisher
	seqs      []int
	next      int
	due       float64
	rate      int
	t0        int64
	tick      *time.Ticker
	published int
}

func newBenchFleet(b *testing.B, addrs []string, rate int) *benchFleet {
	f := &benchFleet{pubs: make([]*rawPublisher, 500), seqs: make([]int, 500), rate: rate,
		t0: time.Now().Add(-time.Minute).UnixMilli(), tick: time.NewTicker(10 * time.Millisecond)}
	for i := range f.pubs {
		f.pubs[i] = dialRawPublisher(b, addrs[i%len(addrs)], fmt.Sprintf("el-k-%03d", i))
	}
	return f
}

func (f *benchFleet) send() {
	<-f.tick.C
	for f.due += float64(f.rate) / 400; f.due >= 1; f.due-- {
		i := f.next
		f.next = (f.next + 1) % len(f.pubs)
		f.seqs[i]++
		seq := f.seqs[i]
		f.pubs[i].publish(seq, fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d,"cable_temp_c":31.5,"phase_current_a":12,"voltage_v":221}}`,
			f.t0+int64(seq), seq, 20+(i+seq)%30))
		f.published++
	}
}

func (f *benchFleet) close() {
	f.tick.Stop()
	for _, p := range f.pubs {
		p.close()
	}
}

// clusterLoad runs one timed load through the NATS nodes' MQTT listeners
// against one fresh firewatch instance in cluster mode (it owns every
// partition) and returns its CPU-seconds per million readings handled, and
// that of the three NATS servers together over the same time, and the NATS
// servers' CPU-seconds per second before the load (their idle cost).
func clusterLoad(b *testing.B, bin string, nc *testenv.NATSCluster, db *testenv.InfluxDB, dsn string, parts, rate int, d time.Duration) (fwCPU, natsCPU, natsIdle float64) {
	b.Helper()
	ledger := filepath.Join(b.TempDir(), "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(killLedger(500)), 0o600); err != nil {
		b.Fatal(err)
	}
	fw := clusterInstance(b, bin, nc, db, dsn, ledger, "bench-solo", parts)
	fw.start()
	defer fw.stop()
	var addrs []string
	for _, n := range nc.Nodes {
		addrs = append(addrs, strings.TrimPrefix(n.MQTT, "tcp://"))
	}
	f := newBenchFleet(b, addrs, rate)
	defer f.close()
	// The PUBACK is the NATS server's; firewatch has handled a message once
	// firewatch_cluster_messages_total counts it.
	handled := func(want int) float64 {
		var got float64
		testenv.WaitFor(b, 60*time.Second, fmt.Sprintf("firewatch handling %d messages", want), func() bool {
			got = metricSum(b, fw.api+"/metrics", "firewatch_cluster_messages_total")
			return got >= float64(want)
		})
		return got
	}
	natsOf := func() float64 {
		sum := 0.0
		for _, n := range nc.Nodes {
			sum += cpuOfPid(n.Pid())
		}
		return sum
	}
	// The NATS servers' CPU with the connections open and no load (Raft
	// heartbeats of the streams and consumers, MQTT keep-alives).
	idle0, idleAt := natsOf(), time.Now()
	time.Sleep(2 * time.Second) // a measuring interval, not synchronisation
	natsIdle = (natsOf() - idle0) / time.Since(idleAt).Seconds()
	warm := time.Now()
	for time.Since(warm) < 500*time.Millisecond {
		f.send()
	}
	waitAcked(b, f.pubs)
	h0 := handled(f.published)
	cpu0, nats0 := cpuOf(fw), natsOf()
	start := time.Now()
	for time.Since(start) < d {
		f.send()
	}
	waitAcked(b, f.pubs)
	h := handled(f.published) - h0
	return (cpuOf(fw) - cpu0) / (4 * h) * 1e6, (natsOf() - nats0) / (4 * h) * 1e6, natsIdle
}

// cpuOfPid is a process's user+system CPU-seconds (/proc/PID/stat).
func cpuOfPid(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// clusterTakeover runs two instances under a load of 1,000 readings/s,
// kills (SIGKILL) the one owning a partition once both own some, and
// returns the time from the kill to the survivor's first message of that
// partition handled.
func clusterTakeover(b *testing.B, bin string, nc *testenv.NATSCluster, db *testenv.InfluxDB, dsn string, parts int) time.Duration {
	b.Helper()
	ledger := filepath.Join(b.TempDir(), "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(killLedger(500)), 0o600); err != nil {
		b.Fatal(err)
	}
	fa := clusterInstance(b, bin, nc, db, dsn, ledger, "bench-a", parts)
	fb := clusterInstance(b, bin, nc, db, dsn, ledger, "bench-b", parts)
	fa.start()
	defer fa.kill()
	fb.start()
	defer fb.stop()
	var addrs []string
	for _, n := range nc.Nodes {
		addrs = append(addrs, strings.TrimPrefix(n.MQTT, "tcp://"))
	}
	f := newBenchFleet(b, addrs, 1000)
	stop := make(chan struct{})
	var load sync.WaitGroup
	load.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				f.send()
			}
		}
	})
	defer func() { close(stop); load.Wait(); f.close() }()
	owned := func(fw *fwProcess) []int {
		var ps []int
		for p := range parts {
			if metricSum(b, fw.api+"/metrics", fmt.Sprintf(`firewatch_cluster_partition_owned{partition="%d"}`, p)) == 1 {
				ps = append(ps, p)
			}
		}
		return ps
	}
	var victim int
	testenv.WaitFor(b, 60*time.Second, "both instances owning partitions, all owned", func() bool {
		a, bo := owned(fa), owned(fb)
		if len(a) > 0 && len(bo) > 0 && len(a)+len(bo) == parts {
			victim = a[0]
			return true
		}
		return false
	})
	fa.kill()
	killed := time.Now()
	var acquired float64
	testenv.WaitFor(b, 30*time.Second, "the survivor handling the dead owner's partition", func() bool {
		m := metricSum(b, fb.api+"/metrics", fmt.Sprintf(`firewatch_cluster_partition_owned{partition="%d"}`, victim))
		acquired = metricSum(b, fb.api+"/metrics", fmt.Sprintf(`firewatch_cluster_partition_acquired_unixms{partition="%d"}`, victim))
		return m == 1 && acquired >= float64(killed.UnixMilli())
	})
	return time.UnixMilli(int64(acquired)).Sub(killed)
}

// metricSum is the sum of the samples of /metrics at url whose name (with
// labels) starts with prefix.
func metricSum(b testing.TB, url, prefix string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}
