package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/internal/influxd"
	"github.com/firewatch-iot/firewatch/internal/pahoconn"
)

// benchStep is one load level of `firesim bench`.
type benchStep struct {
	shape     string // single | batch
	embedded  bool   // firewatch's embedded broker instead of Mosquitto
	outage    bool   // InfluxDB stopped for bench.outage in the middle of the load
	noNull    bool   // no null subscriber beside firewatch (the comparison of -compare)
	firewatch string // another firewatch binary than bin/firewatch (-compare-old)
	rate      float64
}

// benchRow is what one step measured.
type benchRow struct {
	step                  benchStep
	sent, accepted        int64
	stored                int64
	seconds               float64
	fwCPU, nullCPU, mqCPU float64 // CPU-seconds during the step
	rssMiB                float64
	fwSys, mqSys          int64   // read+write system calls during the step (issue 19)
	fwAllSys, mqAllSys    int64   // all system calls (perf), -1 unknown; -compare only
	mqRSSMiB              float64 // Mosquitto's peak
	p50, p99              time.Duration
	probes                int
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firesim bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin", "bin", "folder with firewatch, firesim and influxd")
	steps := fs.String("steps", "single:5000,10000,20000;batch:20000,50000,100000;embedded:5000,10000,20000;outage:20000",
		"shape:rates;… (readings/s); shapes single, batch, embedded, and outage (batches with InfluxDB stopped for -outage)")
	outage := fs.Duration("outage", 2*time.Minute, "how long the outage step stops InfluxDB, between -duration of load before and after")
	duration := fs.Duration("duration", 30*time.Second, "load duration per step")
	nDevices := fs.Int("devices", 20000, "devices in the generated ledger")
	out := fs.String("out", "", "write the table into this Markdown file between <!-- bench:e2e:begin --> and <!-- bench:e2e:end -->")
	probe := fs.Duration("probe-every", time.Second, "probe alarm interval, for alarm latency")
	profile := fs.String("profile", "", "save a CPU profile of firewatch for each step as PREFIX.<step>.pprof")
	compare := fs.String("compare", "", "instead of -steps: rates (messages/s, e.g. 5000,10000,20000) at which firewatch on Mosquitto, Telegraf on Mosquitto and the embedded broker are measured in turn (bin/telegraf)")
	rounds := fs.Int("rounds", 3, "interleaved rounds of -compare")
	idle := fs.Int("idle", 0, "instead of -steps: memory per idle connection with this many clients, Mosquitto and the embedded broker")
	uitds := fs.Int("uitd", 0, "instead of -steps: this many GB/T 26875.3 UITDs over TCP, keep-alives every 60 s and a burst of 20 fire alarms (uitdbench.go)")
	registry := fs.Int("registry", 0, "instead of -steps: start firewatch twice on a generated registry of this many devices; time to /healthz, CPU and memory (registrybench.go)")
	compareOld := fs.String("compare-old", "", "with -compare: also measure this (older) firewatch binary, on Mosquitto and embedded, in the same rounds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan, err := parseSteps(*steps)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "firewatch-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{dir: dir, bin: *binDir, out: stdout, duration: *duration, probe: *probe, profile: *profile, outage: *outage}
	defer b.stopAll()
	if err := b.start(ctx, *nDevices); err != nil {
		return err
	}
	if *registry > 0 {
		table, err := b.runRegistry(ctx, *registry)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "\n"+table)
		return writeMarked(*out, "registry", table)
	}
	if *uitds > 0 {
		table, err := b.runUITD(ctx, *uitds)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "\n"+table)
		return writeMarked(*out, "uitd", table)
	}
	if *idle > 0 {
		table, err := b.runIdle(ctx, *idle)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "\n"+table)
		return writeMarked(*out, "idle", table)
	}
	if *compare != "" {
		b.oldFirewatch = *compareOld
		return b.compareMain(ctx, *compare, *rounds, *out)
	}
	var rows []benchRow
	for i, st := range plan {
		d := *duration
		if st.outage {
			d = 2**duration + *outage
		}
		fmt.Fprintf(stdout, "\n== step %d/%d: %s %.0f readings/s for %v\n", i+1, len(plan), st.label(), st.rate, d)
		row, err := b.step(ctx, i, st)
		if err != nil {
			return fmt.Errorf("step %s %.0f/s: %w", st.label(), st.rate, err)
		}
		fmt.Fprintln(stdout, row.line())
		rows = append(rows, row)
	}
	table := b.table(rows)
	fmt.Fprintln(stdout, "\n"+table)
	return writeMarked(*out, "e2e", table)
}

func (s benchStep) label() string {
	if s.outage {
		return "gateway batches of 100, Mosquitto, InfluxDB stopped²"
	}
	if s.embedded {
		return "single, embedded broker"
	}
	if s.shape == "batch" {
		return "gateway batches of 100, Mosquitto"
	}
	return "single, Mosquitto"
}

func parseSteps(s string) ([]benchStep, error) {
	var out []benchStep
	for _, part := range strings.Split(s, ";") {
		name, rates, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("step %q is not shape:rate,rate", part)
		}
		st := benchStep{shape: name}
		switch name {
		case "single", "batch":
		case "embedded":
			st.shape, st.embedded = "single", true
		case "outage":
			st.shape, st.outage = "batch", true
		default:
			return nil, fmt.Errorf("unknown shape %q (single, batch, embedded, outage)", name)
		}
		for _, r := range strings.Split(rates, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("rate %q", r)
			}
			st.rate = v
			out = append(out, st)
		}
	}
	return out, nil
}

// bench owns the processes of a run.
type bench struct {
	dir, bin string
	out      io.Writer
	duration time.Duration
	probe    time.Duration
	profile  string
	outage   time.Duration

	oldFirewatch string // -compare-old

	influxd     *exec.Cmd
	influxdConf string

	influxURL, mqURL string
	ledger           string
	ledgerL          *devices.Ledger
	rcv              *latencyReceiver
	procs            []*exec.Cmd
	mosquitto        *exec.Cmd
}

func benchPort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *bench) spawn(name string, logName string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	logf, err := os.Create(filepath.Join(b.dir, logName))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		stop(b.procs[i])
	}
	if b.rcv != nil {
		b.rcv.srv.Close()
	}
}

func stop(c *exec.Cmd) {
	if c.ProcessState != nil {
		return
	}
	syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func waitHTTP(ctx context.Context, u string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %v", u, d)
}

func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not accept connections within %v", addr, d)
}

// start brings up InfluxDB, Mosquitto, the receiver, and writes the ledger.
func (b *bench) start(ctx context.Context, n int) error {
	hp, rp := benchPort(), benchPort()
	conf := influxd.Config(filepath.Join(b.dir, "influxdb"), hp, rp)
	cf := filepath.Join(b.dir, "influxdb.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return err
	}
	b.influxdConf, b.influxURL = cf, fmt.Sprintf("http://127.0.0.1:%d", hp)
	if err := b.startInfluxd(ctx); err != nil {
		return err
	}
	mp := benchPort()
	mconf := filepath.Join(b.dir, "mosquitto.conf")
	os.WriteFile(mconf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 1000\npersistence false\n", mp)), 0o600)
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		mosq = "/usr/sbin/mosquitto"
	}
	if b.mosquitto, err = b.spawn(mosq, "mosquitto.log", "-c", mconf); err != nil {
		return err
	}
	b.mqURL = fmt.Sprintf("tcp://127.0.0.1:%d", mp)
	if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", mp), 10*time.Second); err != nil {
		return err
	}
	if b.rcv, err = newLatencyReceiver(); err != nil {
		return err
	}
	b.ledger = filepath.Join(b.dir, "ledger.yaml")
	f, err := os.Create(b.ledger)
	if err != nil {
		return err
	}
	err = sim.GenerateLedger(f, sim.LedgerOptions{Devices: n, Endpoint: b.rcv.url, Seed: 1, Gateways: 20})
	f.Close()
	if err != nil {
		return err
	}
	b.ledgerL, err = devices.LoadLedger(b.ledger)
	return err
}

// startInfluxd starts InfluxDB (again, after an outage) and waits for it.
func (b *bench) startInfluxd(ctx context.Context) error {
	var err error
	if b.influxd, err = b.spawn(filepath.Join(b.bin, "influxd"), "influxd.log", "run", "-config", b.influxdConf); err != nil {
		return err
	}
	return waitHTTP(ctx, b.influxURL+"/ping", 60*time.Second)
}

// step runs one load level against a fresh firewatch and database.
func (b *bench) step(ctx context.Context, i int, st benchStep) (benchRow, error) {
	row := benchRow{step: st}
	db := fmt.Sprintf("bench%d", i)
	if err := influxQL(b.influxURL, "CREATE DATABASE "+db); err != nil {
		return row, err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", benchPort())
	brokerURL := b.mqURL
	args := []string{"-ledger", b.ledger, "-http.listen", httpAddr, "-influx.url", b.influxURL,
		"-influx.bucket", db + "/autogen", "-influx.content_encoding", "identity",
		"-alarms.db", filepath.Join(b.dir, db+".alarms.db"), "-alarms.secret", "bench-secret-0123456789", "-log.level", "warn",
		"-mqtt.client_id", "firewatch-" + db, "-http.pprof"}
	load := loadOptions{broker: brokerURL, clientID: "load-" + db, rate: st.rate, duration: b.duration,
		shape: st.shape, batch: 100, clients: 2, probeEvery: b.probe, progress: 10 * time.Second}
	if st.embedded {
		listen := fmt.Sprintf("127.0.0.1:%d", benchPort())
		args = append(args, "-mqtt.listen", listen)
		brokerURL = "tcp://" + listen
		// The embedded broker authenticates: the load connects as the
		// bridge user, as firesim does in make run (docs/security.md).
		hash, err := broker.HashSecret([]byte("bench-secret"))
		if err != nil {
			return row, err
		}
		args = append(args, "-mqtt.bridge_user", "firesim-load", "-mqtt.bridge_secret_hash", hash)
		load.broker, load.username, load.password, load.clients = brokerURL, "firesim-load", "bench-secret", 1
	} else {
		args = append(args, "-mqtt.broker", b.mqURL)
	}
	fwBin := filepath.Join(b.bin, "firewatch")
	if st.firewatch != "" {
		fwBin = st.firewatch
	}
	fw, err := b.spawn(fwBin, db+".firewatch.log", args...)
	if err != nil {
		return row, err
	}
	defer stop(fw)
	if err := waitHTTP(ctx, "http://"+httpAddr+"/healthz", 30*time.Second); err != nil {
		return row, fmt.Errorf("firewatch: %w (log %s)", err, filepath.Join(b.dir, db+".firewatch.log"))
	}
	var null *exec.Cmd
	if !st.embedded && !st.noNull {
		if null, err = b.spawn(os.Args[0], db+".nullsub.log", "nullsub", "-broker", b.mqURL, "-client-id", "null-"+db); err != nil {
			return row, err
		}
		defer stop(null)
		time.Sleep(500 * time.Millisecond) // let it subscribe: it only measures, nothing depends on it
	}
	b.rcv.reset()
	fw0, null0, mq0 := cpuSeconds(fw), cpuSeconds(null), cpuSeconds(b.mosquitto)
	fws0, mqs0 := ioSyscalls(fw), ioSyscalls(b.mosquitto)
	var counter *syscallCounter
	if st.noNull { // -compare: every system call, not only reads and writes
		mq := b.mosquitto
		if st.embedded {
			mq = nil
		}
		counter = b.countSyscalls(db, fw, mq)
	}
	if b.profile != "" {
		go saveProfile(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, int(b.duration.Seconds()*0.8)),
			fmt.Sprintf("%s.%s.%.0f.pprof", b.profile, strings.ReplaceAll(st.label(), " ", ""), st.rate))
	}
	var res loadResult
	if st.outage {
		// Load for duration, InfluxDB stopped for outage, load for duration.
		load.duration = 2*b.duration + b.outage
		done := make(chan error, 1)
		go func() {
			var err error
			res, err = runLoad(ctx, b.ledgerL, load, b.out)
			done <- err
		}()
		time.Sleep(b.duration) // the scenario's timeline, not synchronisation
		fmt.Fprintf(b.out, "%s stopping InfluxDB for %v\n", time.Now().Format("15:04:05"), b.outage)
		stop(b.influxd)
		time.Sleep(b.outage)
		if err := b.startInfluxd(ctx); err != nil {
			return row, fmt.Errorf("restart InfluxDB: %w", err)
		}
		fmt.Fprintf(b.out, "%s InfluxDB is back\n", time.Now().Format("15:04:05"))
		if err := <-done; err != nil {
			return row, err
		}
	} else if res, err = runLoad(ctx, b.ledgerL, load, b.out); err != nil {
		return row, err
	}
	row.sent, row.seconds, row.probes = res.Readings, res.Seconds, int(res.Probes)
	// Wait for firewatch to have handled everything sent.
	want := float64(res.Readings + res.Probes)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := scrapeMetrics("http://" + httpAddr + "/metrics")
		if err == nil {
			row.accepted = int64(m["firewatch_ingest_readings_total"])
			if m["firewatch_ingest_readings_total"]+m["firewatch_ingest_duplicates_total"] >= want {
				break
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(b.out, "firewatch handled %d of %.0f readings in time\n", row.accepted, want)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	row.fwCPU, row.nullCPU, row.mqCPU = cpuSeconds(fw)-fw0, cpuSeconds(null)-null0, cpuSeconds(b.mosquitto)-mq0
	row.fwSys, row.mqSys, row.mqRSSMiB = ioSyscalls(fw)-fws0, ioSyscalls(b.mosquitto)-mqs0, rssMiB(b.mosquitto)
	if counter != nil {
		n := counter.stop()
		row.fwAllSys, row.mqAllSys = n[0], n[1]
	}
	if st.embedded {
		row.mqCPU = 0
	}
	row.rssMiB = rssMiB(fw)
	// Everything in memory or in the spool is written before firewatch
	// stops: at shutdown it would keep the spool for its next start.
	deadline = time.Now().Add(5 * time.Minute)
	for {
		m, err := scrapeMetrics("http://" + httpAddr + "/metrics")
		if err == nil && m["firewatch_influx_spool_batches"] == 0 && m["firewatch_influx_pending_batches"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(b.out, "firewatch's spool did not drain within 5 minutes")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // let the last pushes arrive
	row.p50, row.p99 = b.rcv.percentiles()
	stop(fw) // flushes InfluxDB
	row.stored, err = countStored(b.influxURL, db)
	return row, err
}

func (r benchRow) line() string {
	return fmt.Sprintf("sent %d, accepted %d, stored %d in %.1f s; firewatch %.2f CPU-s/M, null subscriber %.2f, mosquitto %.2f; RSS %.0f MiB; alarm latency p50 %v p99 %v (%d probes)",
		r.sent, r.accepted, r.stored, r.seconds, perM(r.fwCPU, r.sent), perM(r.nullCPU, r.sent), perM(r.mqCPU, r.sent), r.rssMiB, r.p50, r.p99, r.probes)
}

func perM(cpu float64, n int64) float64 {
	if n == 0 {
		return 0
	}
	return cpu / (float64(n) / 1e6)
}

func (b *bench) table(rows []benchRow) string {
	var sb strings.Builder
	model := cpuModel()
	fmt.Fprintf(&sb, "Measured %s by `make bench` (`firesim bench`) on %d cores (%s), %s, %s; %d devices, %v per step.\n"+
		"firewatch, a do-nothing paho subscriber (the I/O baseline) and Mosquitto are separate processes on loopback; CPU-seconds\n"+
		"per million readings come from /proc; stored readings are counted in InfluxDB afterwards; alarm latency is from the probe's\n"+
		"publish (device time) to the dispatch webhook receiving the push.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), model, runtime.Version(), "InfluxDB 1.8.10", len(b.ledgerL.Devices), b.duration)
	sb.WriteString("| shape | target/s | accepted/s | stored/s | not stored¹ | firewatch CPU-s/M | null sub CPU-s/M | firewatch − null | Mosquitto CPU-s/M | RSS MiB | alarm p50 | alarm p99 |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		null, diff := "–", "–"
		if !r.step.embedded {
			null = fmt.Sprintf("%.2f", perM(r.nullCPU, r.sent))
			diff = fmt.Sprintf("%.2f", perM(r.fwCPU, r.sent)-perM(r.nullCPU, r.sent))
		}
		mq := "–"
		if !r.step.embedded {
			mq = fmt.Sprintf("%.2f", perM(r.mqCPU, r.sent))
		}
		fmt.Fprintf(&sb, "| %s | %.0f | %.0f | %.0f | %d | %.2f | %s | %s | %s | %.0f | %v | %v |\n",
			r.step.label(), r.step.rate, float64(r.accepted)/r.seconds, float64(r.stored)/r.seconds, r.sent-r.stored,
			perM(r.fwCPU, r.sent), null, diff, mq, r.rssMiB, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond))
	}
	sb.WriteString("\n¹ sent but not stored when the step ended: firewatch had not caught up within 2 minutes after the load\n" +
		"stopped; the messages wait in the broker's QoS 1 session (firewatch's persistent session) and are not lost.\n")
	for _, r := range rows {
		if !r.step.outage {
			continue
		}
		fmt.Fprintf(&sb, "² load for %v, InfluxDB stopped for %v (firewatch spools to disk), load for %v while it replays; rates and\n"+
			"CPU over the whole step, replay included; alarm latency is that of the probes during the whole step.\n", b.duration, b.outage, b.duration)
		break
	}
	return sb.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// cpuSeconds is a process's user+system CPU time so far (0 for nil).
func cpuSeconds(c *exec.Cmd) float64 {
	if c == nil || c.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

func rssMiB(c *exec.Cmd) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func scrapeMetrics(u string) (map[string]float64, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func influxQL(base, q string) error {
	resp, err := http.PostForm(base+"/query", url.Values{"q": {q}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("influxql %q: %s", q, b)
	}
	return nil
}

// countStored counts the readings the load generator writes, per kind.
func countStored(base, db string) (int64, error) {
	return countQuery(base, db, "SELECT count(residual_current_ma) FROM electrical; SELECT count(battery_pct) FROM smoke; "+
		"SELECT count(pressure_mpa) FROM hydrant; SELECT count(slot_temp_c) FROM charger")
}

// countQuery runs count queries q in InfluxDB 1.x database db and returns
// the sum of the counts.
func countQuery(base, db, q string) (int64, error) {
	resp, err := http.Get(base + "/query?" + url.Values{"db": {db}, "q": {q}}.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	var n int64
	for _, res := range r.Results {
		if res.Error != "" {
			return 0, errors.New(res.Error)
		}
		for _, s := range res.Series {
			for _, v := range s.Values {
				if f, ok := v[1].(float64); ok {
					n += int64(f)
				}
			}
		}
	}
	return n, nil
}

// latencyReceiver is a dispatch webhook that records, for every raised
// probe push, the time from the probe's publish (its device time) to now.
type latencyReceiver struct {
	srv *http.Server
	url string
	mu  sync.Mutex
	lat []time.Duration

	sent  map[string]time.Time // -uitd: fire alarms sent, by device id (uitdbench.go)
	fired []time.Duration
}

func newLatencyReceiver() (*latencyReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &latencyReceiver{url: "http://" + ln.Addr().String()}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := time.Now()
		var p struct {
			Transition string `json:"transition"`
			Rule       string `json:"rule"`
			DeviceTime string `json:"device_time"`
			Device     struct {
				ID string `json:"id"`
			} `json:"device"`
		}
		json.NewDecoder(req.Body).Decode(&p)
		r.fire(p.Rule, p.Transition, p.Device.ID, now)
		if t, err := time.Parse(time.RFC3339Nano, p.DeviceTime); err == nil && p.Rule == "charger.door_open" && p.Transition == "raised" {
			r.mu.Lock()
			r.lat = append(r.lat, now.Sub(t))
			r.mu.Unlock()
		}
	})}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *latencyReceiver) reset() {
	r.mu.Lock()
	r.lat = r.lat[:0]
	r.mu.Unlock()
}

func (r *latencyReceiver) percentiles() (p50, p99 time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lat) == 0 {
		return 0, 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// saveProfile fetches a pprof profile into a file; failures only cost the
// profile.
func saveProfile(u, path string) {
	resp, err := http.Get(u)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(path); err == nil {
		io.Copy(f, resp.Body)
		f.Close()
	}
}

// cmdNullSub is the I/O baseline of the bench: a paho subscriber on the
// same topics with QoS 1 and a persistent session that does nothing with
// what it gets.
func cmdNullSub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("firesim nullsub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	id := fs.String("client-id", "firesim-null", "MQTT client id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var n int64
	var mu sync.Mutex
	opts := mqtt.NewClientOptions().AddBroker(*broker).SetClientID(*id).SetCleanSession(false).SetOrderMatters(true).
		SetCustomOpenConnectionFn(pahoconn.Open). // the same connection layer as firewatch's
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe("fw/v1/up/#", 1, func(mqtt.Client, mqtt.Message) { mu.Lock(); n++; mu.Unlock() })
		})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	<-ctx.Done()
	c.Disconnect(100)
	mu.Lock()
	fmt.Fprintf(stdout, "null subscriber received %d messages\n", n)
	mu.Unlock()
	return nil
}
