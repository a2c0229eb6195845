package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The comparison of `firesim bench -compare RATES` (issue 19): firewatch on
// Mosquitto, Telegraf on Mosquitto (mqtt_consumer QoS 1 → influxdb_v2) and
// firewatch with its embedded broker, in turn at each rate, for -rounds
// rounds, on the same publisher, broker and InfluxDB.

// compareSystem is one of the systems compared.
type compareSystem int

const (
	sysFirewatch    compareSystem = iota // firewatch, mqtt.broker = Mosquitto
	sysTelegraf                          // Telegraf, from Mosquitto
	sysEmbedded                          // firewatch with its embedded broker
	sysFirewatchOld                      // -compare-old's firewatch on Mosquitto
	sysEmbeddedOld                       // -compare-old's firewatch, embedded broker
	nSystems
)

func (s compareSystem) String() string {
	return [...]string{"firewatch + Mosquitto", "Telegraf + Mosquitto", "firewatch, embedded broker",
		"old firewatch + Mosquitto", "old firewatch, embedded broker"}[s]
}

func (s compareSystem) embedded() bool { return s == sysEmbedded || s == sysEmbeddedOld }

// systems are those compared in this run.
func (b *bench) systems() []compareSystem {
	if b.oldFirewatch != "" {
		return []compareSystem{sysFirewatchOld, sysFirewatch, sysTelegraf, sysEmbeddedOld, sysEmbedded}
	}
	return []compareSystem{sysFirewatch, sysTelegraf, sysEmbedded}
}

// compareRow is what one system measured at one rate in one round.
type compareRow struct {
	sys              compareSystem
	rate             float64
	sent, stored     int64
	ownCPU, mqCPU    float64 // CPU-seconds during the step: the system's own process, Mosquitto
	ownSys           int64   // read+write system calls of the system's own process
	mqSys            int64
	ownAll, mqAll    int64 // all system calls (perf), -1 unknown
	rssMiB, mqRSSMiB float64
	p99              time.Duration // firewatch only: probe alarm latency
}

func (r compareRow) ownPerM() float64 { return perM(r.ownCPU, r.sent) }
func (r compareRow) mqPerM() float64  { return perM(r.mqCPU, r.sent) }

// sysPerMsg is read and write system calls per message.
func sysPerMsg(n, msgs int64) float64 {
	if n < 0 {
		return -1
	}
	if msgs == 0 {
		return 0
	}
	return float64(n) / float64(msgs)
}

// ioSyscalls is a process's read and write system calls so far, from
// /proc/PID/io (syscr + syscw; all threads), 0 for nil.
func ioSyscalls(c *exec.Cmd) int64 {
	if c == nil || c.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", c.Process.Pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// runCompare runs the interleaved comparison and returns its table.
func (b *bench) runCompare(ctx context.Context, rates []float64, rounds int) (string, error) {
	tg := filepath.Join(b.bin, "telegraf")
	if _, err := os.Stat(tg); err != nil {
		return "", fmt.Errorf("telegraf is not in %s (make bench builds it: make %s)", b.bin, tg)
	}
	var rows []compareRow
	step := 100 // database names after those of the steps
	for round := 1; round <= rounds; round++ {
		for _, rate := range rates {
			for _, sys := range b.systems() {
				step++
				fmt.Fprintf(b.out, "\n== round %d/%d, %.0f messages/s: %v\n", round, rounds, rate, sys)
				var r compareRow
				var err error
				if sys == sysTelegraf {
					r, err = b.telegrafStep(ctx, step, rate)
				} else {
					var br benchRow
					st := benchStep{shape: "single", embedded: sys.embedded(), rate: rate, noNull: true}
					if sys == sysFirewatchOld || sys == sysEmbeddedOld {
						st.firewatch = b.oldFirewatch
					}
					br, err = b.step(ctx, step, st)
					r = compareRow{sent: br.sent, stored: br.stored, ownCPU: br.fwCPU, mqCPU: br.mqCPU, ownSys: br.fwSys, mqSys: br.mqSys,
						ownAll: br.fwAllSys, mqAll: br.mqAllSys, rssMiB: br.rssMiB, mqRSSMiB: br.mqRSSMiB, p99: br.p99}
				}
				if err != nil {
					return "", fmt.Errorf("round %d, %v at %.0f/s: %w", round, sys, rate, err)
				}
				r.sys, r.rate = sys, rate
				fmt.Fprintf(b.out, "%v: sent %d, stored %d; own %.2f CPU-s/M, %.2f read+write syscalls/msg (%.2f all), RSS %.0f MiB; Mosquitto %.2f CPU-s/M, %.2f syscalls/msg (%.2f all)\n",
					sys, r.sent, r.stored, r.ownPerM(), sysPerMsg(r.ownSys, r.sent), sysPerMsg(r.ownAll, r.sent), r.rssMiB, r.mqPerM(), sysPerMsg(r.mqSys, r.sent), sysPerMsg(r.mqAll, r.sent))
				rows = append(rows, r)
			}
		}
	}
	return b.compareTable(rows, rates, rounds), nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (b *bench) compareTable(rows []compareRow, rates []float64, rounds int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Measured %s by `make bench` (`firesim bench -compare`) on %d cores (%s), %s, InfluxDB 1.8.10, Mosquitto, Telegraf %s;\n"+
		"%d devices, single-reading QoS 1 messages from one publisher, %v per step, %d interleaved rounds (firewatch + Mosquitto,\n"+
		"Telegraf + Mosquitto, embedded broker in turn at each rate); medians of the rounds. CPU-seconds per million messages from\n"+
		"/proc/PID/stat; system calls per message: reads and writes from /proc/PID/io (syscr + syscw), and in brackets all of them\n"+
		"(perf stat -e raw_syscalls:sys_enter -p PID: epoll, futex, nanosleep… too), all threads; RSS is the peak (VmHWM).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpuModel(), runtime.Version(), telegrafVersion(b.bin),
		len(b.ledgerL.Devices), b.duration, rounds)
	sb.WriteString("| rate/s | system | stored/sent | own CPU-s/M | Mosquitto CPU-s/M | total CPU-s/M | own syscalls/msg: read+write (all) | Mosquitto syscalls/msg: read+write (all) | RSS MiB | alarm p99 |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	type med struct{ own, mq, total, sys, mqSys, all, mqAll, rss, p99, stored, sent float64 }
	meds := map[[2]int]med{}
	for ri, rate := range rates {
		for _, sys := range b.systems() {
			var own, mq, total, sc, msc, all, mqAll, rss, p99, stored, sent []float64
			for _, r := range rows {
				if r.sys != sys || r.rate != rate {
					continue
				}
				own = append(own, r.ownPerM())
				mqv := r.mqPerM()
				if sys.embedded() {
					mqv = 0
				}
				mq = append(mq, mqv)
				total = append(total, r.ownPerM()+mqv)
				sc = append(sc, sysPerMsg(r.ownSys, r.sent))
				msc = append(msc, sysPerMsg(r.mqSys, r.sent))
				all = append(all, sysPerMsg(r.ownAll, r.sent))
				mqAll = append(mqAll, sysPerMsg(r.mqAll, r.sent))
				rss = append(rss, r.rssMiB)
				p99 = append(p99, float64(r.p99))
				stored = append(stored, float64(r.stored))
				sent = append(sent, float64(r.sent))
			}
			m := med{median(own), median(mq), median(total), median(sc), median(msc), median(all), median(mqAll), median(rss), median(p99), median(stored), median(sent)}
			meds[[2]int{ri, int(sys)}] = m
			mqCol, mqSys, p := fmt.Sprintf("%.1f", m.mq), fmt.Sprintf("%.2f (%s)", m.mqSys, allCol(m.mqAll)), "–"
			if sys.embedded() {
				mqCol, mqSys = "–", "–"
			}
			if sys != sysTelegraf {
				p = time.Duration(m.p99).Round(100 * time.Microsecond).String()
			}
			fmt.Fprintf(&sb, "| %.0f | %v | %.0f/%.0f | %.1f | %s | %.1f | %.2f (%s) | %s | %.0f | %s |\n",
				rate, sys, m.stored, m.sent, m.own, mqCol, m.total, m.sys, allCol(m.all), mqSys, m.rss, p)
		}
	}
	sb.WriteString("\nRatios of the medians (goals of issue 19: firewatch's own CPU ≤ ½ of Telegraf's on the same Mosquitto; the embedded\n" +
		"broker's whole process ≤ ⅓ of Mosquitto + Telegraf):\n\n")
	old := b.oldFirewatch != ""
	sb.WriteString("| rate/s | firewatch ÷ Telegraf (own CPU, same Mosquitto) | embedded ÷ (Mosquitto + Telegraf) | firewatch ÷ Telegraf (syscalls/msg) |")
	if old {
		sb.WriteString(" old firewatch ÷ Telegraf | old embedded ÷ (Mosquitto + Telegraf) |")
	}
	sb.WriteString("\n|---|---|---|---|")
	if old {
		sb.WriteString("---|---|")
	}
	sb.WriteString("\n")
	for ri, rate := range rates {
		fw, tg, em := meds[[2]int{ri, int(sysFirewatch)}], meds[[2]int{ri, int(sysTelegraf)}], meds[[2]int{ri, int(sysEmbedded)}]
		fmt.Fprintf(&sb, "| %.0f | %.2f | %.2f | %.2f |", rate, ratio(fw.own, tg.own), ratio(em.total, tg.total), ratio(fw.sys, tg.sys))
		if old {
			fo, eo := meds[[2]int{ri, int(sysFirewatchOld)}], meds[[2]int{ri, int(sysEmbeddedOld)}]
			fmt.Fprintf(&sb, " %.2f | %.2f |", ratio(fo.own, tg.own), ratio(eo.total, tg.total))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// allCol is a count of all system calls per message, "–" when perf could
// not count them.
func allCol(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// telegrafVersion is the module version the binary was built from (a
// `go install` build reports "unknown" itself).
func telegrafVersion(bin string) string {
	info, err := buildinfo.ReadFile(filepath.Join(bin, "telegraf"))
	if err != nil {
		return "?"
	}
	return info.Main.Version
}

// telegrafConf is the Telegraf configuration of the comparison: the same
// subscription as firewatch (QoS 1, persistent session), the payload's
// metric object as fields, the device from the topic as a tag, written to
// the same InfluxDB through its 2.x write API (1.8 serves it).
const telegrafConf = `[agent]
  interval = "10s"
  flush_interval = "1s"
  flush_jitter = "0s"
  omit_hostname = true

[[outputs.influxdb_v2]]
  urls = ["%s"]
  token = "bench"
  organization = "bench"
  bucket = "%s/autogen"
  content_encoding = "identity"

[[inputs.mqtt_consumer]]
  servers = ["%s"]
  topics = ["fw/v1/up/#"]
  qos = 1
  persistent_session = true
  client_id = "%s"
  topic_tag = ""
  data_format = "json_v2"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "fw/v1/up/+/+"
    tags = "_/_/_/device/_"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "reading"
    timestamp_path = "ts"
    timestamp_format = "unix_ms"
    [[inputs.mqtt_consumer.json_v2.field]]
      path = "seq"
      type = "int"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "m"
`

// telegrafStep runs the load once through Mosquitto into a fresh Telegraf,
// measured until every reading is stored.
func (b *bench) telegrafStep(ctx context.Context, i int, rate float64) (compareRow, error) {
	var row compareRow
	db := fmt.Sprintf("bench%d", i)
	if err := influxQL(b.influxURL, "CREATE DATABASE "+db); err != nil {
		return row, err
	}
	conf := filepath.Join(b.dir, db+".telegraf.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, telegrafConf, b.influxURL, db, b.mqURL, "telegraf-"+db), 0o600); err != nil {
		return row, err
	}
	logName := db + ".telegraf.log"
	tg, err := b.spawn(filepath.Join(b.bin, "telegraf"), logName, "--config", conf)
	if err != nil {
		return row, err
	}
	defer stop(tg)
	// Telegraf logs "Connected" once its client is up; it subscribes next.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if lb, _ := os.ReadFile(filepath.Join(b.dir, logName)); strings.Contains(string(lb), "Connected") {
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("telegraf did not connect (log %s)", filepath.Join(b.dir, logName))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // the subscription follows the connect; nothing signals it
	tg0, mq0, tgs0, mqs0 := cpuSeconds(tg), cpuSeconds(b.mosquitto), ioSyscalls(tg), ioSyscalls(b.mosquitto)
	counter := b.countSyscalls(db, tg, b.mosquitto)
	load := loadOptions{broker: b.mqURL, clientID: "load-" + db, rate: rate, duration: b.duration,
		shape: "single", batch: 100, clients: 2, progress: 10 * time.Second}
	res, err := runLoad(ctx, b.ledgerL, load, b.out)
	if err != nil {
		return row, err
	}
	row.sent = res.Readings
	deadline = time.Now().Add(2 * time.Minute)
	for {
		n, err := countTelegraf(b.influxURL, db)
		row.stored = n
		if err == nil && n >= row.sent {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(b.out, "telegraf stored %d of %d readings in time\n", n, row.sent)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	row.ownCPU, row.mqCPU = cpuSeconds(tg)-tg0, cpuSeconds(b.mosquitto)-mq0
	row.ownSys, row.mqSys = ioSyscalls(tg)-tgs0, ioSyscalls(b.mosquitto)-mqs0
	n := counter.stop()
	row.ownAll, row.mqAll = n[0], n[1]
	row.rssMiB, row.mqRSSMiB = rssMiB(tg), rssMiB(b.mosquitto)
	return row, nil
}

// countTelegraf counts the readings Telegraf stored.
func countTelegraf(base, db string) (int64, error) {
	return countQuery(base, db, "SELECT count(seq) FROM reading")
}

// compareMain runs -compare and writes its table between the
// <!-- bench:compare:begin --> and <!-- bench:compare:end --> markers of out.
func (b *bench) compareMain(ctx context.Context, spec string, rounds int, out string) error {
	var rates []float64
	for _, f := range strings.Split(spec, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("-compare: rate %q", f)
		}
		rates = append(rates, v)
	}
	if rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	table, err := b.runCompare(ctx, rates, rounds)
	if err != nil {
		return err
	}
	fmt.Fprintln(b.out, "\n"+table)
	return writeMarked(out, "compare", table)
}

// writeMarked replaces the text between <!-- bench:NAME:begin --> and
// <!-- bench:NAME:end --> in path (appends both when missing); path ""
// writes nothing.
func writeMarked(path, name, table string) error {
	if path == "" {
		return nil
	}
	begin, end := "<!-- bench:"+name+":begin -->", "<!-- bench:"+name+":end -->"
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s += "\n" + begin + "\n" + table + end + "\n"
	} else {
		s = s[:i+len(begin)] + "\n" + table + s[j:]
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
