package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/rules"
)

// loggedEvent is an alarm event as an instance's alarm store received it.
type loggedEvent struct {
	inst, rule, device string
	tr                 rules.Transition
	since, at          int64
}

// eventLog is the shared alarm store of the instances (events only).
type eventLog struct {
	mu  sync.Mutex
	evs []loggedEvent
}

func (l *eventLog) of(rule, device string) []loggedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedEvent
	for _, e := range l.evs {
		if e.rule == rule && e.device == device {
			out = append(out, e)
		}
	}
	return out
}

// testAlarms is pipeline.Alarms over the event log.
type testAlarms struct {
	inst   string
	log    *eventLog
	ledger *devices.Ledger
}

func (a *testAlarms) Submit(ev rules.Event) {
	a.log.mu.Lock()
	a.log.evs = append(a.log.evs, loggedEvent{inst: a.inst, rule: ev.Rule.ID, device: a.ledger.Devices[ev.Device].ID,
		tr: ev.Transition, since: ev.Since, at: ev.Time})
	a.log.mu.Unlock()
}
func (a *testAlarms) Sync() error                                                 { return nil }
func (a *testAlarms) CommandAck(context.Context, string, []byte) error            { return nil }
func (a *testAlarms) StationStatus(context.Context, string, []byte, string) error { return nil }
func (a *testAlarms) OpenAlarms(context.Context, rules.Severity, func(pipeline.OpenAlarm)) error {
	return nil
}

// recLines keeps the line protocol an instance wrote.
type recLines struct {
	mu sync.Mutex
	b  []byte
}

func (r *recLines) Write(b []byte) {
	r.mu.Lock()
	r.b = append(r.b, b...)
	r.mu.Unlock()
}

// has reports whether a line of device dev at time ts (ms) was written.
func (r *recLines) has(dev string, ts int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, line := range strings.Split(string(r.b), "\n") {
		if strings.Contains(line, ",device="+dev+",") && strings.HasSuffix(line, " "+strconv.FormatInt(ts, 10)) {
			return true
		}
	}
	return false
}

// holdAcks is the pipeline of an owner that, from some moment, handles
// messages but never acknowledges them (their readings not yet durable
// when it is killed): they come back to the next owner.
type holdAcks struct {
	*pipeline.Pipeline
	hold atomic.Bool
}

func (h *holdAcks) Take(m pipeline.Message) error {
	if h.hold.Load() {
		m.Ack = nil
	}
	return h.Pipeline.Take(m)
}

// stateLedger is a ledger of n electrical monitors el-00 … el-{n-1}.
func stateLedger(t *testing.T, n int) *devices.Ledger {
	t.Helper()
	var b strings.Builder
	b.WriteString("places:\n  \"450204\": 柳南区\n  \"450204002\": 潭西街道\n  \"450204002003\": 鹅山村\n" +
		"stations:\n  - {id: st-1, name: 潭西街道微型消防站, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {id: el-%02d, kind: electrical, model: ARCM300, grid: \"450204002003\", address: 鹅山路%d号}\n", i, i)
	}
	l, err := devices.ParseLedger("state-test", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// instance is one firewatch instance of the test: a real pipeline (rule
// engine, liveness) fed by a cluster Source.
type instance struct {
	src   *Source
	pipe  *holdAcks
	lines *recLines
	stop  context.CancelFunc
	done  chan struct{}
}

func startInstance(t *testing.T, ctx context.Context, cfg Config, l *devices.Ledger, rulesFile string, log *eventLog) *instance {
	t.Helper()
	var src *Source
	lines := &recLines{}
	p, err := pipeline.New(pipeline.Options{Ledger: l, RulesFile: rulesFile, Lines: lines,
		Alarms: &testAlarms{inst: cfg.Instance, log: log, ledger: l}, Ingest: pipeline.DefaultIngest(),
		Liveness: pipeline.DefaultLiveness(), Logger: quiet(),
		Owns: func(d devices.Index) bool { return src.Owns(d) }})
	if err != nil {
		t.Fatal(err)
	}
	pipe := &holdAcks{Pipeline: p}
	src = NewSource(cfg, pipe, l, nil, quiet())
	c, stop := context.WithCancel(ctx)
	in := &instance{src: src, pipe: pipe, lines: lines, stop: stop, done: make(chan struct{})}
	errc := make(chan error, 1)
	go p.Run(c)
	go func() { errc <- src.Run(c); close(in.done) }()
	select {
	case <-src.Ready():
	case err := <-errc:
		t.Fatalf("source %s: %v", cfg.Instance, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("source %s not ready within 60 s", cfg.Instance)
	}
	return in
}

// TestClusterStateMoves: the owner of a partition dies (no release, no
// last checkpoint) while a `for: 6s` condition of one of its devices is
// pending, after it raised another device's alarm, and after a third
// device spoke for the last time. The survivor restores the partition's
// checkpoint and replays what the dead owner handled since: the pending
// alarm is raised once, at its original time (6 s after its condition
// began, not 6 s after the takeover); the other device's alarm clears
// when its condition ends; the silent device's last sighting is the dead
// owner's, not the takeover.
func TestClusterStateMoves(t *testing.T) { testStateMoves(t, ownerKilled) }

// TestClusterStateMovesOnRelease is TestClusterStateMoves with an orderly
// stop of the owner: it releases the partition after a last checkpoint,
// and the survivor resumes from there (nothing or little to replay).
func TestClusterStateMovesOnRelease(t *testing.T) { testStateMoves(t, ownerReleased) }

// TestClusterStateMovesUnacked is TestClusterStateMoves with an owner that
// handled the pending device's messages, checkpointed them, and never
// acknowledged them (killed before their readings were durable): the
// survivor gets them again, the checkpoint already holding their effect.
// It writes their readings (the engine would drop them as duplicates of
// themselves) and raises the alarm once, at its time.
func TestClusterStateMovesUnacked(t *testing.T) { testStateMoves(t, ownerUnacked) }

// residualRule writes the cluster tests' rule file: a residual current
// above 300 mA for 6 s raises an alarm, below 250 mA clears it at once.
func residualRule(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f, []byte(`rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 6s, clear_for: 0s, severity: alarm}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// How the owner goes in testStateMoves.
const (
	ownerKilled   = iota // kill -9 between two checkpoints
	ownerReleased        // an orderly stop: a last checkpoint, then the release
	ownerUnacked         // kill -9 after a checkpoint of messages it did not acknowledge
)

func testStateMoves(t *testing.T, mode int) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, ServerMappings(parts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := stateLedger(t, 32)
	rulesFile := residualRule(t)
	log := &eventLog{}
	cfg := func(name string) Config {
		c := testConfig(nc.URLs(), parts, name)
		c.AckWait, c.StateInterval = 3*time.Second, 3*time.Second
		return c
	}
	a := startInstance(t, ctx, cfg("a"), l, rulesFile, log)
	b := startInstance(t, ctx, cfg("b"), l, rulesFile, log)
	pub := mqttPublisher(t, nc.Nodes[0].MQTT, "state-pub")
	seqs := map[string]int{}
	send := func(dev string, ts int64, ma float64) {
		seqs[dev]++
		p := fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%g}}`, ts, seqs[dev], ma)
		if tok := pub.Publish("fw/v1/up/"+dev+"/telemetry", 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// A partition is owned once a message came (the pin): every device
	// speaks until the balance gave each instance its share.
	testenv.WaitFor(t, 60*time.Second, "the partitions shared", func() bool {
		for i := range l.Devices {
			pub.Publish("fw/v1/up/"+l.Devices[i].ID+"/status", 1, false, `{}`)
		}
		return len(a.src.Owned()) == parts/2 && len(b.src.Owned()) == parts/2
	})
	// Three devices of one partition of a's.
	var x, y, z string
	var part int
	for _, n := range a.src.Owned() {
		var ids []string
		for i := range l.Devices {
			if PartitionOf(l.Devices[i].ID, parts) == n {
				ids = append(ids, l.Devices[i].ID)
			}
		}
		if len(ids) >= 3 {
			x, y, z, part = ids[0], ids[1], ids[2], n
			break
		}
	}
	if x == "" {
		t.Fatalf("no partition of a's (%v) with three devices", a.src.Owned())
	}
	t.Logf("partition %d: pending %s, firing %s, silent %s", part, x, y, z)

	now := func() int64 { return time.Now().UnixMilli() }

	// y fires on a.
	send(y, now()-10_000, 350)
	send(y, now(), 350)
	testenv.WaitFor(t, 20*time.Second, y+" raised on a", func() bool { return len(log.of("rc", y)) == 1 })

	// A checkpoint of the partition that holds it: then x's condition
	// begins and z speaks for the last time, and a dies before its next
	// checkpoint (3 s later): what a did with them reaches b only by the
	// replay.
	conn, err := nats.Connect(nc.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)
	obs, err := js.ObjectStore(ctx, "fw_state_"+DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// y speaks once more, so that a checkpoint follows at a's next tick;
	// it is seen once it holds the partition's last message.
	if tok := pub.Publish("fw/v1/up/"+y+"/status", 1, false, `{}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	stream, err := js.Stream(ctx, DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	testenv.WaitFor(t, 10*time.Second, "y's status in the stream", func() bool {
		m, err := stream.GetLastMsgForSubject(ctx, partitionFilter(part))
		if err == nil && strings.HasSuffix(m.Subject, ".status") && strings.Contains(m.Subject, y) {
			last = m.Sequence
		}
		return last > 0
	})
	testenv.WaitFor(t, 10*time.Second, "a checkpoint of the partition after y's alarm", func() bool {
		info, err := obs.GetInfo(ctx, stateKey(part))
		if err != nil {
			return false
		}
		seq, _ := strconv.ParseUint(info.Metadata[seqMeta], 10, 64)
		return seq >= last
	})
	start := now()
	if tok := pub.Publish("fw/v1/up/"+z+"/status", 1, false, `{}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	a.pipe.hold.Store(mode == ownerUnacked)
	firstX := now()
	xs := []int64{firstX}
	send(x, firstX, 350)
	var killed time.Time
	for {
		time.Sleep(500 * time.Millisecond) // the device's own pace, not synchronisation
		if killed.IsZero() && now()-start >= 1500 {
			if mode == ownerUnacked {
				// A checkpoint holding x's messages (taken, not
				// acknowledged) before the kill.
				m, err := stream.GetLastMsgForSubject(ctx, partitionFilter(part))
				if err != nil {
					t.Fatal(err)
				}
				testenv.WaitFor(t, 10*time.Second, "a checkpoint holding x's messages", func() bool {
					info, err := obs.GetInfo(ctx, stateKey(part))
					if err != nil {
						return false
					}
					seq, _ := strconv.ParseUint(info.Metadata[seqMeta], 10, 64)
					return seq >= m.Sequence
				})
			}
			// kill -9 of a: no release, no last checkpoint (or a stop).
			a.src.crash.Store(mode != ownerReleased)
			a.stop()
			<-a.done
			killed = time.Now()
		}
		ts := now()
		if killed.IsZero() {
			xs = append(xs, ts)
		}
		send(x, ts, 350)
		if len(log.of("rc", x)) > 0 || now()-start > 30_000 {
			break
		}
	}
	send(y, now(), 100) // y's condition ends: b clears the alarm a raised
	// Not fatal: without the state the clear never comes, and the
	// checks below say what else went wrong.
	for deadline := time.Now().Add(10 * time.Second); len(log.of("rc", y)) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling, as testenv.WaitFor
	}
	send(x, now(), 360)
	time.Sleep(time.Second) // a message that must not raise x again; nothing to wait for

	acquired := testutil.ToFloat64(b.src.acquired.WithLabelValues(fmt.Sprint(part)))
	t.Logf("takeover: b acquired partition %d %v after a was gone (killed or stopped); replayed %v messages",
		part, time.UnixMilli(int64(acquired)).Sub(killed).Round(time.Millisecond), testutil.ToFloat64(b.src.replayed))

	mean := func(h prometheus.Histogram) string {
		var m dto.Metric
		h.Write(&m)
		if m.Histogram.GetSampleCount() == 0 {
			return "none"
		}
		return fmt.Sprintf("%.1f ms mean of %d", 1000*m.Histogram.GetSampleSum()/float64(m.Histogram.GetSampleCount()),
			m.Histogram.GetSampleCount())
	}
	t.Logf("checkpoints written by a: %s, the last %v bytes; b's restore of partition %d: %s", mean(a.src.stateSeconds),
		testutil.ToFloat64(a.src.stateBytes), part, mean(b.src.restoreSeconds))

	if mode == ownerUnacked {
		for _, ts := range xs {
			if !b.lines.has(x, ts) {
				t.Errorf("%s's reading at %s, handled by a but never acknowledged, is not written by b", x,
					time.UnixMilli(ts).Format("15:04:05.000"))
			}
		}
	}
	evx := log.of("rc", x)
	if len(evx) != 1 || evx[0].tr != rules.Raise || evx[0].inst != "b" {
		t.Errorf("%s: events %+v, want one raise, by b", x, evx)
	} else if evx[0].since != firstX {
		t.Errorf("%s raised with its condition since %s, want since its first reading %s (a's, before the kill at %s)",
			x, time.UnixMilli(evx[0].since).Format("15:04:05.000"), time.UnixMilli(firstX).Format("15:04:05.000"),
			killed.Format("15:04:05.000"))
	}
	if len(evx) > 0 {
		// Its for (6 s) up to a reading later; on a loaded machine the
		// takeover itself may end after that, and the raise then comes
		// with b's first reading of x (a reading after the acquisition).
		// Without the state b would raise 6 s after the acquisition.
		late := max(int64(7500), int64(acquired)-firstX+1500)
		if d := evx[0].at - firstX; d < 6000 || d > late {
			t.Errorf("%s raised %d ms after its condition began, want its for (6 s) up to %d ms (a reading after the later of the for and b's acquisition)", x, d, late)
		}
	}
	ys := log.of("rc", y)
	if len(ys) != 2 || ys[0].tr != rules.Raise || ys[0].inst != "a" || ys[1].tr != rules.Clear || ys[1].inst != "b" {
		t.Errorf("%s: events %+v, want a's raise and b's clear", y, ys)
	}
	dz, _ := l.LookupID(z)
	if seen := b.pipe.Liveness().Status(dz.Index).LastSeen; seen < start-1000 || seen > killed.UnixMilli() {
		t.Errorf("%s last seen at %s on b, want its last word to a at about %s (before the kill at %s)", z,
			time.UnixMilli(seen).Format("15:04:05.000"), time.UnixMilli(start).Format("15:04:05.000"), killed.Format("15:04:05.000"))
	}
	if mode == ownerKilled && testutil.ToFloat64(b.src.replayed) == 0 {
		t.Errorf("nothing replayed")
	}
}
