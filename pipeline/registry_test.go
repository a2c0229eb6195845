package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// lockedAlarms is an Alarms for tests whose events come from several
// goroutines (the pipeline, liveness ticks).
type lockedAlarms struct {
	mu  sync.Mutex
	evs []rules.Event
}

func (a *lockedAlarms) Submit(ev rules.Event) { a.mu.Lock(); a.evs = append(a.evs, ev); a.mu.Unlock() }
func (a *lockedAlarms) Sync() error           { return nil }
func (a *lockedAlarms) CommandAck(context.Context, string, []byte) error {
	return nil
}
func (a *lockedAlarms) StationStatus(context.Context, string, []byte, string) error { return nil }
func (a *lockedAlarms) OpenAlarms(context.Context, rules.Severity, func(OpenAlarm)) error {
	return nil
}

// take returns the events so far as "device rule transition", and forgets them.
func (a *lockedAlarms) take(l *devices.Ledger) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.evs {
		out = append(out, l.Device(ev.Device).ID+" "+ev.Rule.ID+" "+ev.Transition.String())
	}
	a.evs = nil
	return out
}

type lockedLines struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedLines) Write(b []byte) { l.mu.Lock(); l.b = append(l.b, b...); l.mu.Unlock() }

func (l *lockedLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(l.b)), "\n")
}

// registryRig is a pipeline made by New over a small registry that
// changes live.
type registryRig struct {
	t      *testing.T
	p      *Pipeline
	reg    *prometheus.Registry
	live   *devices.Live
	alarms *lockedAlarms
	lines  *lockedLines
}

const rigLedger = `stations:
  - {id: st-1, name: 一站, grids: ["450204002"], endpoint: "http://127.0.0.1:1/st-1"}
devices:
  - {id: el-1, kind: electrical, grid: "450204002003", address: 鹅山路12号}
  - {id: el-2, kind: electrical, grid: "450204002003", address: 鹅山路14号}
  - {id: sm-1, kind: smoke, grid: "450204002003", address: 鹅山路16号}
`

func newRegistryRig(t *testing.T) *registryRig {
	t.Helper()
	l, err := devices.ParseLedger("rig.yaml", []byte(rigLedger))
	if err != nil {
		t.Fatal(err)
	}
	r := &registryRig{t: t, reg: prometheus.NewRegistry(), alarms: &lockedAlarms{}, lines: &lockedLines{}}
	lc := DefaultLiveness()
	lc.Electrical, lc.Smoke = time.Minute, time.Minute
	r.p, err = New(Options{Ledger: l, Lines: r.lines, Alarms: r.alarms, Liveness: lc, Logger: discardLogger(), Registerer: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	r.live = devices.NewLive(l)
	r.p.Follow(r.live)
	return r
}

// apply applies c through the live registry, as the registry's API does.
func (r *registryRig) apply(c *devices.Change) (*devices.Ledger, *devices.Diff) {
	r.t.Helper()
	l, d, err := r.live.Apply(c)
	if err != nil {
		r.t.Fatalf("apply: %v", err)
	}
	return l, d
}

func (r *registryRig) send(id string, ts int64, body string) {
	r.p.Take(Message{Topic: "fw/v1/up/" + id + "/telemetry", Payload: fmt.Appendf(nil, `{"ts":%d,%s}`, ts, body)})
}

func (r *registryRig) rejected(reason string) float64 {
	r.t.Helper()
	n, err := testutil.GatherAndCount(r.reg, "firewatch_ingest_rejected_total")
	if err != nil || n == 0 {
		r.t.Fatalf("rejected counter: %d, %v", n, err)
	}
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "firewatch_ingest_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func elEntry(id, addr string) devices.DeviceEntry {
	return devices.DeviceEntry{ID: id, Kind: "electrical", Grid: "450204002003", Address: addr}
}

const rt0 = int64(1_796_000_000_000)

// TestLedgerChangeAddsDevice: a device added to the registry is unknown
// before the change and decoded, evaluated, stored and tracked for
// liveness right after it.
func TestLedgerChangeAddsDevice(t *testing.T) {
	r := newRegistryRig(t)
	r.send("el-9", rt0, `"m":{"residual_current_ma":350}`)
	if n := r.rejected("unknown_device"); n != 1 {
		t.Fatalf("unknown device rejected %v times, want 1", n)
	}
	l, d := r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{elEntry("el-9", "鹅山路20号")}})
	if len(d.Added) != 1 {
		t.Fatalf("diff %+v: want one added", d)
	}
	if r.p.LedgerChanges() != 1 {
		t.Fatalf("Live.Apply returned before the pipeline adopted the change")
	}
	r.send("el-9", rt0+1000, `"m":{"residual_current_ma":350}`)
	r.send("el-9", rt0+12000, `"m":{"residual_current_ma":351}`)
	if n := r.rejected("unknown_device"); n != 1 {
		t.Fatalf("added device still rejected: %v", n)
	}
	if got := r.alarms.take(l); !contains(got, "el-9 electrical.residual_current.alarm raise") {
		t.Errorf("events %q: want the new device's alarm", got)
	}
	if lines := r.lines.lines(); !strings.Contains(lines[len(lines)-1], "device=el-9") {
		t.Errorf("last line %q: want el-9's reading", lines[len(lines)-1])
	}
	dev, _ := l.LookupID("el-9")
	if st := r.p.Liveness().Status(dev.Index); st.Grace != 2*time.Minute || st.LastSeen == 0 {
		t.Errorf("liveness of the new device: %+v", st)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestLedgerChangeKeepsPendingFor: an edited device (its address) keeps
// its rule state — a condition pending its `for` fires on time — and one
// whose kind's channels change restarts it.
func TestLedgerChangeKeepsPendingFor(t *testing.T) {
	r := newRegistryRig(t)
	// residual_current.alarm: above 300 for 10 s.
	r.send("el-1", rt0, `"m":{"residual_current_ma":350}`)
	r.send("el-2", rt0, `"m":{"residual_current_ma":350}`)
	l, d := r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{
		elEntry("el-1", "鹅山路12号之一"),                                                            // an address: rule state stays
		{ID: "el-2", Kind: "electrical", Grid: "450204002003", Address: "鹅山路14号", Channels: 2}, // channels: reset
	}})
	if len(d.Edited) != 2 || len(d.Reset) != 1 {
		t.Fatalf("diff %+v: want two edited, one reset", d)
	}
	r.send("el-1", rt0+10_000, `"m":{"residual_current_ma":350}`)
	r.send("el-2", rt0+10_000, `"m":{"residual_current_ma":350}`)
	got := r.alarms.take(l)
	if !contains(got, "el-1 electrical.residual_current.alarm raise") {
		t.Errorf("events %q: the edited device lost its pending for", got)
	}
	if contains(got, "el-2 electrical.residual_current.alarm raise") {
		t.Errorf("events %q: the reset device kept its pending for", got)
	}
	// Its rule state restarted at rt0+10 s: it fires 10 s later.
	r.send("el-2", rt0+20_000, `"m":{"residual_current_ma":350}`)
	if got := r.alarms.take(l); !contains(got, "el-2 electrical.residual_current.alarm raise") {
		t.Errorf("events %q: the reset device does not fire after its for", got)
	}
	// Its admission state stayed: the message before the change is a
	// duplicate, not evaluated again.
	r.send("el-2", rt0+20_000, `"m":{"residual_current_ma":350}`)
	if got := r.alarms.take(l); len(got) != 0 {
		t.Errorf("events %q after a repeated message", got)
	}
}

// TestLedgerChangeRemovesDevice: a removed device's messages are rejected
// as unknown and it never goes offline, while the others still do.
func TestLedgerChangeRemovesDevice(t *testing.T) {
	r := newRegistryRig(t)
	r.send("el-1", rt0, `"m":{"residual_current_ma":10}`)
	l, d := r.apply(&devices.Change{DeleteDevices: []string{"el-1"}})
	if len(d.Removed) != 1 {
		t.Fatalf("diff %+v: want one removed", d)
	}
	before := r.rejected("unknown_device")
	r.send("el-1", rt0+1000, `"m":{"residual_current_ma":10}`)
	if n := r.rejected("unknown_device"); n != before+1 {
		t.Errorf("removed device's message: rejected %v, want %v", n, before+1)
	}
	// Far past every grace: el-2 and sm-1 go offline, el-1 does not.
	r.p.live.Tick(time.Now().Add(time.Hour).UnixMilli())
	var offline []string
	for _, e := range r.alarms.take(l) {
		if strings.HasSuffix(e, ".offline raise") {
			offline = append(offline, strings.Fields(e)[0])
		}
	}
	if strings.Join(offline, ",") != "el-2,sm-1" && strings.Join(offline, ",") != "sm-1,el-2" {
		t.Errorf("offline alarms for %v, want el-2 and sm-1 only", offline)
	}
	if n := r.p.live.Offline(); n != 2 {
		t.Errorf("offline count %d, want 2", n)
	}
}

// TestLedgerChangeUnderLoad: messages stream from several goroutines
// while devices are added, edited and removed; every message of a device
// in the registry when it was handled is stored once, and every other one
// is rejected as unknown — none lost, none twice. Run with -race.
func TestLedgerChangeUnderLoad(t *testing.T) {
	r := newRegistryRig(t)
	const senders, per = 4, 400
	var (
		wg      sync.WaitGroup
		present sync.Map // id → true while in the registry
	)
	for _, id := range []string{"el-1", "el-2"} {
		present.Store(id, true)
	}
	ids := []string{"el-1", "el-2", "el-5", "el-6", "el-7"}
	for s := range senders {
		wg.Go(func() {
			for i := range per {
				id := ids[(s+i)%len(ids)]
				// Distinct ts per sender and message: nothing is a duplicate.
				r.send(id, rt0+int64(i*senders+s)*10, `"seq":`+strconv.Itoa(i*senders+s+1)+`,"m":{"residual_current_ma":10}`)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 30; i++ {
		id := ids[2+rng.IntN(3)]
		if _, ok := present.Load(id); ok && rng.IntN(2) == 0 {
			r.apply(&devices.Change{DeleteDevices: []string{id}})
			present.Delete(id)
		} else {
			r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{elEntry(id, "地址"+strconv.Itoa(i))}})
			present.Store(id, true)
		}
	}
	wg.Wait()
	stored := len(r.lines.lines())
	rejected := int(r.rejected("unknown_device"))
	if stored+rejected != senders*per {
		t.Errorf("%d stored + %d rejected as unknown = %d, want %d messages", stored, rejected, stored+rejected, senders*per)
	}
	// el-1 and el-2 were never touched: all their messages are stored.
	n := 0
	for _, line := range r.lines.lines() {
		if strings.Contains(line, "device=el-1,") || strings.Contains(line, "device=el-2,") {
			n++
		}
	}
	if want := senders * per * 2 / len(ids); n != want {
		t.Errorf("%d lines of the untouched devices, want %d", n, want)
	}
}

// TestLedgerChangeModel is a seeded model of random registry changes
// interleaved with messages (FW_REGISTRY_SEED): after each step, a message
// of a device is stored if and only if the model has it in the registry,
// its kind is the model's, and a pending `for` survives edits that do not
// reset it.
func TestLedgerChangeModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FW_REGISTRY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	r := newRegistryRig(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	type devModel struct {
		kind     string
		channels int
		overFrom int64 // device time the current run above 300 mA began, 0 none
		firing   bool
	}
	model := map[string]*devModel{"el-1": {kind: "electrical"}, "el-2": {kind: "electrical"}, "sm-1": {kind: "smoke"}}
	ids := []string{"el-1", "el-2", "el-3", "el-4", "sm-1"}
	ts := rt0
	lines := 0
	for step := range 400 {
		id := ids[rng.IntN(len(ids))]
		m := model[id]
		op := rng.IntN(10)
		if os.Getenv("FW_REGISTRY_TRACE") != "" {
			t.Logf("step %d op %d %s %+v", step, op, id, m)
		}
		switch {
		case op == 0 && m != nil: // remove
			r.apply(&devices.Change{DeleteDevices: []string{id}})
			delete(model, id)
		case op == 1: // add, or edit the address only
			e := elEntry(id, "地址"+strconv.Itoa(step))
			if m != nil && m.kind == "electrical" {
				e.Channels = m.channels
			}
			r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{e}})
			if m == nil || m.kind != "electrical" {
				model[id] = &devModel{kind: "electrical"}
			}
		case op == 2 && m != nil && m.kind == "electrical": // channels: rule state restarts
			ch := m.channels + 1 + rng.IntN(3)
			if ch > 4 {
				ch = 0
			}
			e := elEntry(id, "地址"+strconv.Itoa(step))
			e.Channels = ch
			r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{e}})
			m.channels, m.overFrom, m.firing = ch, 0, false
		default: // a message
			ts += int64(1000 + rng.IntN(6000))
			ma := 250 + rng.IntN(100)
			if m != nil && m.kind == "smoke" {
				r.send(id, ts, `"m":{"rssi_dbm":-80}`)
			} else {
				r.send(id, ts, `"m":{"residual_current_ma":`+strconv.Itoa(ma)+`}`)
			}
			if m != nil {
				lines++
			}
			got := r.alarms.take(r.live.Load())
			if m == nil || m.kind != "electrical" {
				for _, e := range got {
					if strings.HasPrefix(e, id+" ") {
						t.Fatalf("seed %d (FW_REGISTRY_SEED=%d), step %d: event %q for %s, not an electrical device of the registry", seed, seed, step, e, id)
					}
				}
				break
			}
			raised := contains(got, id+" electrical.residual_current.alarm raise")
			want := false
			if ma >= 300 {
				if m.overFrom == 0 {
					m.overFrom = ts
				}
				want = !m.firing && ts-m.overFrom >= 10_000
			} else {
				m.overFrom = 0
				if ma < 250 {
					m.firing = false
				}
			}
			if want != raised {
				t.Fatalf("seed %d (FW_REGISTRY_SEED=%d), step %d: %s at %d mA raised=%v, model says %v (events %q)", seed, seed, step, id, ma, raised, want, got)
			}
			if raised {
				m.firing = true
			}
		}
		if n := len(r.lines.lines()); n != lines {
			t.Fatalf("seed %d (FW_REGISTRY_SEED=%d), step %d: %d lines stored, model says %d", seed, seed, step, n, lines)
		}
	}
}

// TestLedgerChangeWithRuleReloads: rule reloads, registry changes (adds,
// channel changes, removals) and messages interleave; every message of a
// device in the registry is stored once and none of an added device's is
// lost to an engine compiled for an older snapshot. Run with -race.
func TestLedgerChangeWithRuleReloads(t *testing.T) {
	r := newRegistryRig(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				r.p.reload.reload("test")
			}
		}
	})
	sent := 0
	for i := range 60 {
		id := "el-n" + strconv.Itoa(i)
		e := elEntry(id, "地址")
		r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{e}})
		if i%3 == 0 {
			e.Channels = 2
			r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{e}})
		}
		for j := range 5 {
			r.send(id, rt0+int64(j)*1000, `"m":{"residual_current_ma":10}`)
			r.send("el-1", rt0+int64(i*5+j)*1000, `"m":{"residual_current_ma":10}`)
			sent += 2
		}
		if i%4 == 0 {
			r.apply(&devices.Change{DeleteDevices: []string{id}})
		}
	}
	close(stop)
	wg.Wait()
	if n := len(r.lines.lines()); n != sent {
		t.Errorf("%d lines stored, want %d", n, sent)
	}
	if n := r.rejected("unknown_device"); n != 0 {
		t.Errorf("%v messages rejected as unknown", n)
	}
}

// TestLedgerChangeCheckDevices: a device's own rule overrides are checked
// against the rules in force before a change is committed; one that got
// through anyway is evaluated with the rules of its kind, not left
// unwatched.
func TestLedgerChangeCheckDevices(t *testing.T) {
	r := newRegistryRig(t)
	bad := elEntry("el-bad", "地址")
	bad.Rules = "electrical.no_such_rule: {above: 1}\n"
	good := elEntry("el-good", "地址")
	good.Rules = "electrical.residual_current.alarm: {above: 100}\n"
	for _, c := range []struct {
		e    devices.DeviceEntry
		fail bool
	}{{bad, true}, {good, false}} {
		l, d, err := r.live.Load().Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{c.e}})
		if err != nil {
			t.Fatalf("%s: %v", c.e.ID, err)
		}
		if err := r.p.CheckDevices(l, d); (err != nil) != c.fail {
			t.Errorf("%s: CheckDevices = %v", c.e.ID, err)
		}
	}
	r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{bad, good}})
	r.send("el-good", rt0, `"m":{"residual_current_ma":150}`)
	r.send("el-good", rt0+10_000, `"m":{"residual_current_ma":150}`)
	r.send("el-bad", rt0, `"m":{"residual_current_ma":350}`)
	r.send("el-bad", rt0+10_000, `"m":{"residual_current_ma":350}`)
	got := r.alarms.take(r.live.Load())
	for _, want := range []string{"el-good electrical.residual_current.alarm raise", "el-bad electrical.residual_current.alarm raise"} {
		if !contains(got, want) {
			t.Errorf("events %q: want %q", got, want)
		}
	}
}

// TestLedgerChangeKindResets: a device whose kind changes (and changes
// back) restarts its rule state: a `for` pending before starts again.
func TestLedgerChangeKindResets(t *testing.T) {
	r := newRegistryRig(t)
	r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{elEntry("el-k", "地址")}})
	r.send("el-k", rt0, `"m":{"residual_current_ma":350}`)
	for _, kind := range []string{"charger", "electrical"} {
		e := elEntry("el-k", "地址")
		e.Kind = kind
		if _, d := r.apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{e}}); len(d.Reset) != 1 {
			t.Fatalf("kind %s: diff %+v, want a reset", kind, d)
		}
	}
	r.send("el-k", rt0+10_000, `"m":{"residual_current_ma":350}`)
	if got := r.alarms.take(r.live.Load()); contains(got, "el-k electrical.residual_current.alarm raise") {
		t.Fatalf("events %q: the pending for survived a kind change", got)
	}
	r.send("el-k", rt0+20_000, `"m":{"residual_current_ma":350}`)
	if got := r.alarms.take(r.live.Load()); !contains(got, "el-k electrical.residual_current.alarm raise") {
		t.Fatalf("events %q: no alarm once the restarted for passed", got)
	}
}
