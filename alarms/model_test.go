package alarms

// The model-based test of the alarm manager (issue 20): random sequences of
// raises, clears, repeated raises, people's transitions, storms across
// villages, escalation ticks, clock steps, restarts, store failures and
// receivers that are down, time out or refuse a push for good; after every
// step the invariants a dispatcher relies on are checked against what the
// receivers got. Run on SQLite (TestModel), on PostgreSQL and on PostgreSQL
// with two managers sharing the store (TestPostgres).
//
// Reproduce a failure with the seed it prints:
//
//	FIREWATCH_MODEL_SEED=123 go test -run TestModel ./alarms/
//
// FIREWATCH_MODEL_STEPS and FIREWATCH_MODEL_SEEDS make runs longer,
// FIREWATCH_MODEL_LOG prints more of the last steps (default 25);
// `make fuzz` runs FuzzModel (seeds chosen by the fuzzer).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Model defaults: bounded for `make test` with -race on a slow machine.
const (
	modelSteps = 100
	modelSeeds = 2
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestModel runs the model on SQLite.
func TestModel(t *testing.T) { runModels(t, 1) }

// testModelPostgres and testModelTwoManagers run under TestPostgres.
func testModelPostgres(t *testing.T)    { runModels(t, 1) }
func testModelTwoManagers(t *testing.T) { runModels(t, 2) }

func runModels(t *testing.T, managers int) {
	if s := os.Getenv("FIREWATCH_MODEL_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIREWATCH_MODEL_SEED: %v", err)
		}
		runModel(t, seed, managers, envInt("FIREWATCH_MODEL_STEPS", modelSteps))
		return
	}
	base := uint64(time.Now().UnixNano())
	for i := range envInt("FIREWATCH_MODEL_SEEDS", modelSeeds) {
		seed := base + uint64(i)
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			runModel(t, seed, managers, envInt("FIREWATCH_MODEL_STEPS", modelSteps))
		})
	}
}

// FuzzModel lets the fuzzer choose seeds (SQLite, one manager).
func FuzzModel(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(20))
	f.Fuzz(func(t *testing.T, seed uint64) { runModel(t, seed, 1, modelSteps) })
}

// condKey is one (device, rule, channel): the unit of "one open alarm".
type condKey struct {
	dev  devices.Index
	rule *rules.Rule
	ch   uint8
}

// modelReceiver is what one endpoint got: keys answered 2xx, alarms it was
// told of (raised, escalated, or listed open in an incident) and alarms it
// was told are closed.
type modelReceiver struct {
	up bool
	// drained: the last delivery round emptied its queue (nothing failed
	// or timed out), so that everything queued for it has reached it.
	drained bool
	// timedOut: the last round ended in a timeout.
	timedOut bool
	ok       map[string]int // key → 2xx answers
	told     map[string]bool
	// offered: alarms announced to it, taken or refused for good.
	offered map[string]bool
	closed  map[string]bool
	poison  map[string]bool // keys it refuses for good
	seen    map[string]bool // keys it has been offered
}

type model struct {
	t       *testing.T
	rng     *rand.Rand
	seed    uint64
	cfg     Config
	ledger  *devices.Ledger
	ms      []*Manager
	clk     atomic.Int64 // Unix ms of the simulated clock
	active  map[condKey]bool
	pending []rules.Event // events not yet stored (store failing)
	failing bool
	rcv     map[string]*modelReceiver
	conds   []condKey
	ends    map[condKey][]time.Time // when each condition ended
	log     []string                // the steps, printed on failure
	snap    struct {
		parked      map[string]map[string]bool // alarm → endpoints that refused a push of it for good
		parkedInc   map[string]bool            // incidents with a push refused for good
		robot       map[string]map[string]bool // robot target → alarms and incidents it got
		escalations map[string][]time.Time     // alarm → times of its escalations
	}
}

const modelBase = "http://model.invalid"

func runModel(t *testing.T, seed uint64, managers, steps int) {
	t.Helper()
	mo := &model{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed: seed,
		active: map[condKey]bool{}, rcv: map[string]*modelReceiver{}, ends: map[condKey][]time.Time{}}
	defer func() {
		if t.Failed() {
			n := len(mo.log)
			t.Logf("model seed %d (reproduce: FIREWATCH_MODEL_SEED=%d FIREWATCH_MODEL_STEPS=%d); last steps:\n%s",
				seed, seed, steps, strings.Join(mo.log[max(0, n-envInt("FIREWATCH_MODEL_LOG", 25)):], "\n"))
		}
	}()
	mo.ledger = newReviewLedger(t, modelBase)
	r := newTestRules(t)
	warning := &rules.Rule{ID: "elec-residual-warning", Kind: devices.KindElectrical, Metric: r.residual.Metric,
		Op: rules.OpAbove, Severity: rules.SeverityWarning, Threshold: 200, Clear: 150}
	for _, dev := range []devices.Index{rvEl1, rvEl2, rvEl3} {
		mo.conds = append(mo.conds, condKey{dev, r.residual, 0}, condKey{dev, warning, 0},
			condKey{dev, r.cableTemp, 1}, condKey{dev, r.cableTemp, 2})
	}
	for _, dev := range []devices.Index{rvSm1, rvSm2} {
		mo.conds = append(mo.conds, condKey{dev, r.smoke, 0})
	}
	cfg := testConfig(t)
	cfg.StormWindow, cfg.StormHold = DefaultStormWindow, DefaultStormHold
	cfg.RespondWithin = DefaultRespondWithin // the checks read these from cfg
	cfg.FlapStable = DefaultFlapStable
	cfg.FlapCount = 2 // flapping often enough to be exercised
	cfg.BrigadeEndpoint = modelBase + "/119"
	cfg.Robots, _ = ParseRobots("450204001001=wecom:" + modelBase + "/robot-v1?key=1,450204001002=dingtalk:" +
		modelBase + "/robot-v2?access_token=2,450204002=wecom:" + modelBase + "/robot-other?key=3")
	mo.cfg = cfg
	mo.clk.Store(drivenStart.UnixMilli())
	for range managers {
		mo.open()
	}
	for _, ep := range []string{"/town", "/county", "/other", "/119", "/robot-v1?key=1", "/robot-v2?access_token=2", "/robot-other?key=3"} {
		mo.rcv[modelBase+ep] = &modelReceiver{up: true, ok: map[string]int{}, told: map[string]bool{}, offered: map[string]bool{},
			closed: map[string]bool{}, poison: map[string]bool{}, seen: map[string]bool{}}
	}
	for step := range steps {
		mo.step(step)
		mo.storeEvents()
		mo.deliver()
		mo.check()
		if t.Failed() {
			return
		}
	}
	// The store recovers; everything owed is stored, delivered and checked.
	if mo.failing {
		mo.setFailing(false)
	}
	for _, rc := range mo.rcv {
		rc.up = true
	}
	mo.storeEvents()
	mo.tick(time.Second)
	mo.deliver()
	mo.check()
	if t.Failed() {
		return
	}
	mo.shutdownBounded()
}

func (mo *model) now() time.Time { return time.UnixMilli(mo.clk.Load()).In(cst) }

func (mo *model) logf(format string, args ...any) {
	mo.log = append(mo.log, fmt.Sprintf("[%s] ", mo.now().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

func (mo *model) open() {
	m, err := NewManager(mo.cfg, mo.ledger)
	if err != nil {
		mo.t.Fatalf("NewManager: %v", err)
	}
	m.now = mo.now
	mo.ms = append(mo.ms, m)
	mo.t.Cleanup(func() { m.Close() })
}

// manager picks the manager of a device: instances own devices (partitions).
func (mo *model) manager(dev devices.Index) *Manager { return mo.ms[int(dev)%len(mo.ms)] }

func (mo *model) step(n int) {
	if mo.failing && mo.rng.IntN(5) == 0 {
		mo.setFailing(false) // a store outage lasts a few steps
	}
	switch p := mo.rng.IntN(100); {
	case p < 22: // a condition begins
		k := mo.conds[mo.rng.IntN(len(mo.conds))]
		if !mo.active[k] {
			mo.active[k] = true
			mo.event(k, rules.Raise)
		}
	case p < 36: // a condition ends
		for _, k := range mo.shuffledConds() {
			if mo.active[k] {
				mo.active[k] = false
				mo.event(k, rules.Clear)
				break
			}
		}
	case p < 40: // a repeated raise (a restarted rules engine)
		for _, k := range mo.shuffledConds() {
			if mo.active[k] {
				mo.event(k, rules.Raise)
				break
			}
		}
	case p < 46: // a storm across the villages of one station
		for _, dev := range []devices.Index{rvEl1, rvEl2, rvSm1, rvSm2} {
			for _, k := range mo.conds {
				if k.dev == dev && !mo.active[k] && mo.rng.IntN(3) == 0 {
					mo.active[k] = true
					mo.event(k, rules.Raise)
				}
			}
		}
	case p < 52: // a person acts on an open alarm
		mo.person()
	case p < 76: // time passes: the periodic duties run
		dts := []time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second, 11 * time.Second, 61 * time.Second}
		mo.tick(dts[mo.rng.IntN(len(dts))])
	case p < 84: // the clock steps (NTP, downtime), or a long quiet spell
		mo.tick(5 * time.Minute)
	case p < 87: // restart
		mo.logf("restart")
		for _, m := range mo.ms {
			m.Close()
		}
		n := len(mo.ms)
		mo.ms = nil
		for range n {
			mo.open()
		}
	case p < 90: // the store fails
		if !mo.failing {
			mo.setFailing(true)
		}
	case p < 92: // a station reports its duty
		ids := []string{"st-town", "st-county", "st-other"}
		id := ids[mo.rng.IntN(len(ids))]
		body := []string{`{"duty":"on_duty","people":3}`, `{"duty":"busy"}`, `{"duty":"off_duty"}`}[mo.rng.IntN(3)]
		mo.logf("duty %s %s", id, body)
		if _, err := mo.ms[0].SetStationStatus(context.Background(), id, []byte(body), "model"); err != nil && !mo.failing {
			mo.t.Errorf("SetStationStatus: %v", err)
		}
	case p < 95: // an endpoint goes down or comes back
		eps := slices.Sorted(mapKeys(mo.rcv))
		ep := eps[mo.rng.IntN(len(eps))]
		mo.rcv[ep].up = !mo.rcv[ep].up
		mo.logf("endpoint %s up=%v", ep, mo.rcv[ep].up)
	case p < 97: // a flapping device whose condition then holds long
		k := mo.conds[mo.rng.IntN(len(mo.conds))]
		if mo.active[k] {
			return
		}
		mo.logf("long condition of a flapping device:")
		mo.active[k] = true
		mo.event(k, rules.Raise)
		mo.event(k, rules.Clear)
		mo.event(k, rules.Raise)
		mo.storeEvents()
		mo.tick(mo.cfg.FlapStable + time.Minute)
		mo.active[k] = false
		mo.event(k, rules.Clear)
		mo.storeEvents()
		mo.tick(time.Second)
	default:
		mo.tick(time.Duration(mo.rng.IntN(2000)) * time.Millisecond)
	}
}

func (mo *model) shuffledConds() []condKey {
	ks := slices.Clone(mo.conds)
	mo.rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	return ks
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (mo *model) event(k condKey, tr rules.Transition) {
	ms := mo.clk.Load()
	ev := rules.Event{Rule: k.rule, Device: k.dev, Channel: k.ch, Transition: tr, Value: k.rule.Threshold + 10,
		Since: ms, Time: ms, Seq: uint32(len(mo.log))}
	if tr == rules.Clear {
		ev.Value = k.rule.Threshold - 10
		mo.ends[k] = append(mo.ends[k], mo.now())
	}
	mo.logf("%s %s %s ch%d", tr, mo.ledger.Device(k.dev).ID, k.rule.ID, k.ch)
	mo.pending = append(mo.pending, ev)
}

// storeEvents commits the pending events, each on the manager owning its
// device (concurrently when there are two), as Run does; a failing store
// keeps them for the next step.
func (mo *model) storeEvents() {
	if len(mo.pending) == 0 {
		return
	}
	byM := map[*Manager][]rules.Event{}
	for _, ev := range mo.pending {
		m := mo.manager(ev.Device)
		byM[m] = append(byM[m], ev)
	}
	var mu sync.Mutex
	var left []rules.Event
	var wg sync.WaitGroup
	for m, evs := range byM {
		wg.Go(func() {
			// One event at a time, so that a failing one keeps only itself
			// and its successors back, in order.
			for i, ev := range evs {
				effs, err := m.apply([]rules.Event{ev})
				if err != nil {
					if !mo.failing && !errors.Is(err, errLeaderTaken) {
						mo.t.Errorf("apply: %v", err)
					}
					mu.Lock()
					left = append(left, evs[i:]...)
					mu.Unlock()
					return
				}
				m.after(effs)
			}
		})
	}
	wg.Wait()
	mo.pending = left
}

func (mo *model) tick(dt time.Duration) {
	mo.clk.Add(dt.Milliseconds())
	mo.logf("tick +%s", dt)
	var wg sync.WaitGroup
	for _, m := range mo.ms {
		wg.Go(func() {
			ctx := context.Background()
			now := mo.now()
			for _, f := range []func(context.Context, time.Time) error{m.escalateDue, m.flushIncidents, m.clearStable} {
				if err := f(ctx, now); err != nil && !mo.failing {
					mo.t.Errorf("periodic duty: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func (mo *model) person() {
	as, err := mo.ms[0].List(context.Background(), Filter{State: FilterOpen})
	if err != nil {
		if !mo.failing {
			mo.t.Errorf("List: %v", err)
		}
		return
	}
	if len(as) == 0 {
		return
	}
	a := as[mo.rng.IntN(len(as))]
	tos := []State{StateReceived, StateAcknowledged, StateDispatched, StateArrived, StateResolved, StateFalseAlarm, StateTest}
	to := tos[mo.rng.IntN(len(tos))]
	if CheckTransition(a.State, to, a.Severity) != nil {
		return
	}
	mo.logf("person %s %s → %s", a.ID, a.State, to)
	m := mo.ms[mo.rng.IntN(len(mo.ms))]
	if _, err := m.Transition(context.Background(), a.ID, to, "model", ""); err != nil && !mo.failing &&
		!errors.Is(err, ErrIllegalTransition) && !errors.Is(err, ErrConflict) {
		mo.t.Errorf("Transition %s → %s: %v", a.ID, to, err)
	}
}

// setFailing makes every write of a history entry fail (a broken disk, a
// lost database), or stop failing.
func (mo *model) setFailing(on bool) {
	mo.logf("store failing=%v", on)
	mo.failing = on
	w := mo.ms[0].store.w
	var stmts []string
	switch {
	case mo.ms[0].store.pg && on:
		stmts = []string{`CREATE OR REPLACE FUNCTION model_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'model: store failing'; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER model_fail BEFORE INSERT ON alarm_history FOR EACH ROW EXECUTE FUNCTION model_fail()`}
	case mo.ms[0].store.pg:
		stmts = []string{`DROP TRIGGER model_fail ON alarm_history`}
	case on:
		stmts = []string{`CREATE TRIGGER model_fail BEFORE INSERT ON alarm_history BEGIN SELECT RAISE(ABORT, 'model: store failing'); END`}
	default:
		stmts = []string{`DROP TRIGGER model_fail`}
	}
	for _, q := range stmts {
		if _, err := w.Exec(q); err != nil {
			mo.t.Fatalf("%s: %v", q, err)
		}
	}
}

// deliver runs one delivery round, as the outbox workers would: every
// endpoint that is up gets its pending pushes in order until one fails; a
// push it refuses for good is parked. A receiver may also time out after
// taking a push (it got it, the attempt counts as failed).
func (mo *model) deliver() {
	ctx := context.Background()
	m := mo.ms[0]
	for _, ep := range slices.Sorted(mapKeys(mo.rcv)) {
		rc := mo.rcv[ep]
		rc.drained, rc.timedOut = false, false
		for range 200 {
			row, err := m.store.nextPending(ctx, ep)
			if err != nil {
				mo.t.Fatalf("nextPending: %v", err)
			}
			if row == nil {
				rc.drained = true
				break
			}
			now := mo.now()
			if !rc.up {
				if err := m.store.markFailed(ctx, row.id, now, "connection refused"); err != nil && !mo.failing {
					mo.t.Fatal(err)
				}
				break
			}
			if !rc.seen[row.key] {
				rc.seen[row.key] = true
				// A receiver refuses a few pushes for good (a body it
				// cannot take), never a delivery-fault notice.
				if row.transition != TransitionDeliveryFault && mo.rng.IntN(25) == 0 {
					rc.poison[row.key] = true
				}
			}
			if rc.poison[row.key] {
				mo.logf("%s refuses %s for good", ep, row.key)
				mo.receive(ep, rc, row, false)
				effs, err := m.park(ctx, row, now, "status 413 Request Entity Too Large")
				if err != nil {
					if !mo.failing {
						mo.t.Fatalf("park: %v", err)
					}
					break
				}
				m.after(effs)
				continue
			}
			mo.receive(ep, rc, row, true)
			if mo.rng.IntN(30) == 0 { // took it, but the answer timed out
				mo.logf("%s timed out on %s", ep, row.key)
				rc.timedOut = true
				if err := m.store.markFailed(ctx, row.id, now, "context deadline exceeded"); err != nil && !mo.failing {
					mo.t.Fatal(err)
				}
				break
			}
			if _, err := m.store.markDelivered(ctx, row, now); err != nil {
				if !mo.failing {
					mo.t.Fatalf("markDelivered: %v", err)
				}
				break // sent again once the store is back, under the same key
			}
			rc.ok[row.key]++
			if rc.ok[row.key] > 1 {
				mo.t.Errorf("%s answered %s 2xx twice: one push per transition and key", ep, row.key)
			}
		}
	}
}

// receive records what a push tells its receiver (taken, or refused for
// good), and checks that no closing push overtakes the push announcing the
// alarm.
func (mo *model) receive(ep string, rc *modelReceiver, row *outboxRow, taken bool) {
	if strings.Contains(ep, "/robot") {
		return
	}
	announce := func(id string) {
		rc.offered[id] = true
		if taken {
			rc.told[id] = true
		}
	}
	switch row.transition {
	case TransitionIncident:
		var p IncidentPush
		if err := json.Unmarshal(row.body, &p); err != nil {
			mo.t.Fatalf("incident body: %v", err)
		}
		for _, a := range p.Alarms {
			if State(a.State).Open() {
				announce(a.AlarmID)
			} else if !rc.offered[a.AlarmID] && taken {
				rc.closed[a.AlarmID] = true // told and closed at once
			}
		}
	case TransitionDeliveryFault:
	default:
		var p Push
		if err := json.Unmarshal(row.body, &p); err != nil {
			mo.t.Fatalf("push body: %v", err)
		}
		switch p.Transition {
		case TransitionRaised, TransitionEscalated:
			announce(p.AlarmID)
		default:
			if !rc.offered[p.AlarmID] {
				mo.t.Errorf("%s got %s before any push announcing %s", ep, p.IdempotencyKey, p.AlarmID)
			}
			if taken {
				rc.closed[p.AlarmID] = true
			}
		}
	}
}

// check verifies the invariants after a step.
func (mo *model) check() {
	ctx := context.Background()
	m := mo.ms[0]
	as, err := m.store.list(ctx, Filter{all: true})
	if err != nil {
		mo.t.Fatalf("list: %v", err)
	}
	now := mo.now()
	mo.snapshot()
	open := map[condKey]Alarm{}
	last := map[condKey]Alarm{}
	for _, a := range as { // newest first
		k := mo.key(a)
		if _, ok := last[k]; !ok {
			last[k] = a
		}
		if a.Open {
			if o, dup := open[k]; dup {
				mo.t.Errorf("%s and %s both open for one (device, rule, channel)", o.ID, a.ID)
			}
			open[k] = a
		}
		mo.checkAlarm(a, now)
	}
	// No alarm closed automatically while its condition is active (once
	// the store has the condition's events).
	owed := map[condKey]bool{}
	for _, ev := range mo.pending {
		owed[condKey{ev.Device, ev.Rule, ev.Channel}] = true
	}
	for k, on := range mo.active {
		if !on || owed[k] {
			continue
		}
		if _, ok := open[k]; ok {
			continue
		}
		if a, ok := last[k]; ok && a.State == StateAutoCleared {
			mo.t.Errorf("%s auto-cleared while the condition of %s %s ch%d is active", a.ID, a.Device, a.Rule, a.Channel)
		}
	}
	// A receiver that is up and answers takes every push queued for it:
	// nothing it refuses blocks the pushes behind.
	if !mo.failing {
		for ep, rc := range mo.rcv {
			if rc.up && !rc.drained && !rc.timedOut {
				mo.t.Errorf("%s is up but its queue is stuck", ep)
			}
		}
	}
	// A flapping alarm is auto-cleared only FlapStable after its condition
	// ended.
	for _, a := range as {
		if !a.Flapping || a.State != StateAutoCleared || a.ClearedAt == nil {
			continue
		}
		// The last end before the clear (an end at the very same instant
		// belongs to a later alarm of the same condition).
		var end time.Time
		for _, t := range mo.ends[mo.key(a)] {
			if t.Before(*a.ClearedAt) {
				end = t
			}
		}
		if a.ClearedAt.Sub(end) < mo.cfg.FlapStable {
			mo.t.Errorf("flapping %s (%s %s ch%d, raised %s, last seen %s) auto-cleared at %s, %s after its condition ended, want >= %s",
				a.ID, a.Device, a.Rule, a.Channel, a.RaisedAt.Format("15:04:05.000"), a.LastSeenAt.Format("15:04:05.000"),
				a.ClearedAt.Format("15:04:05.000"), a.ClearedAt.Sub(end), mo.cfg.FlapStable)
		}
	}
	// No alarm leads two incidents.
	rows, err := m.store.r.Query(`SELECT leader_id FROM incidents GROUP BY leader_id HAVING COUNT(*) > 1`)
	if err != nil {
		mo.t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		mo.t.Errorf("%s leads two incidents", formatID(id))
	}
	rows.Close()
}

func (mo *model) key(a Alarm) condKey {
	d, _ := mo.ledger.LookupID(a.Device)
	for _, k := range mo.conds {
		if k.dev == d.Index && k.rule.ID == a.Rule && int(k.ch) == a.Channel {
			return k
		}
	}
	mo.t.Fatalf("alarm %s of no known condition", a.ID)
	return condKey{}
}

// checkAlarm checks the invariants of one alarm against the receivers.
func (mo *model) checkAlarm(a Alarm, now time.Time) {
	st := mo.ledger.Station(a.Station)
	stationEp := st.Endpoint
	station := mo.rcv[stationEp]
	brigade := mo.rcv[mo.cfg.BrigadeEndpoint]
	parked := mo.parked(a.ID)
	fire := a.Severity == rules.SeverityFire.String()
	// Every fire reaches its station and the brigade at once (the station
	// round after it was stored), on its own push.
	if fire {
		if station.drained && !parked[stationEp] && !station.told[a.ID] {
			mo.t.Errorf("fire %s not delivered to its station %s", a.ID, a.Station)
		}
		if brigade.drained && !parked[mo.cfg.BrigadeEndpoint] && !brigade.told[a.ID] {
			mo.t.Errorf("fire %s not delivered to the brigade", a.ID)
		}
		if a.Incident != "" {
			mo.t.Errorf("fire %s is a line in incident %s", a.ID, a.Incident)
		}
	}
	// Every alarm reaches its station within the storm window (on its own
	// or in an incident push), unless its push was refused for good.
	if station.drained && now.Sub(a.RaisedAt) > mo.cfg.StormWindow+time.Second && !parked[stationEp] && !mo.parkedIncident(a) &&
		!station.told[a.ID] && !station.closed[a.ID] {
		mo.t.Errorf("%s (%s, incident %q) raised %s ago never reached station %s", a.ID, a.Severity, a.Incident,
			now.Sub(a.RaisedAt), a.Station)
	}
	// Every receiver told of the alarm gets its close.
	if !a.Open {
		for ep, rc := range mo.rcv {
			if rc.drained && rc.told[a.ID] && !rc.closed[a.ID] && !parked[ep] {
				mo.t.Errorf("%s closed (%s) but %s, told of it, never got the close", a.ID, a.State, ep)
			}
		}
	}
	// Escalations are spaced by respond_within (the first may come early
	// only when the station refused the raised push for good).
	var prev time.Time
	for i, at := range mo.snap.escalations[a.ID] {
		from := prev
		prev = at
		if i == 0 {
			from = a.RaisedAt
			if parked[stationEp] {
				continue
			}
		}
		if at.Sub(from) < mo.cfg.RespondWithin {
			mo.t.Errorf("%s escalation %d %s after the previous step, want >= %s", a.ID, i+1, at.Sub(from), mo.cfg.RespondWithin)
		}
	}
	// A village robot hears of every alarm in its grid that a station was
	// told of.
	if station.told[a.ID] {
		for i, r := range mo.cfg.Robots {
			if strings.HasPrefix(a.Grid, r.Grid) && !mo.robotTold(a, i) {
				mo.t.Errorf("robot %s never got a push of %s", r.Grid, a.ID)
			}
		}
	}
}

// snapshot reads, once per check, what checkAlarm needs from the outbox and
// the history (one query each, not one per alarm: SQLite under -race is
// slow).
func (mo *model) snapshot() {
	r := mo.ms[0].store.r
	mo.snap.parked = map[string]map[string]bool{}
	mo.snap.parkedInc = map[string]bool{}
	mo.snap.robot = map[string]map[string]bool{}
	mo.snap.escalations = map[string][]time.Time{}
	rows, err := r.Query(`SELECT alarm_id, endpoint, target, idempotency_key, parked_at_ms IS NOT NULL, incident_id FROM outbox`)
	if err != nil {
		mo.t.Fatal(err)
	}
	for rows.Next() {
		var (
			id              int64
			ep, target, key string
			parked          bool
			incident        *int64
		)
		if err := rows.Scan(&id, &ep, &target, &key, &parked, &incident); err != nil {
			mo.t.Fatal(err)
		}
		alarm := formatID(id)
		if parked {
			if mo.snap.parked[alarm] == nil {
				mo.snap.parked[alarm] = map[string]bool{}
			}
			mo.snap.parked[alarm][ep] = true
			if incident != nil {
				mo.snap.parkedInc[formatIncidentID(*incident)] = true
			}
		}
		if strings.HasPrefix(target, "robot:") {
			if mo.snap.robot[target] == nil {
				mo.snap.robot[target] = map[string]bool{}
			}
			mo.snap.robot[target][alarm] = true
			if inc, ok := strings.CutPrefix(key, "inc-"); ok {
				mo.snap.robot[target]["inc-"+inc[:strings.IndexByte(inc, '-')]] = true
			}
		}
	}
	rows.Close()
	rows, err = r.Query(`SELECT alarm_id, at_ms FROM alarm_history WHERE actor = ? AND note LIKE ? ORDER BY id`, ActorSystem, "%次升级%")
	if err != nil {
		mo.t.Fatal(err)
	}
	for rows.Next() {
		var id, at int64
		if err := rows.Scan(&id, &at); err != nil {
			mo.t.Fatal(err)
		}
		mo.snap.escalations[formatID(id)] = append(mo.snap.escalations[formatID(id)], msTime(at))
	}
	rows.Close()
}

// parked returns the endpoints that refused a push of alarm id for good.
func (mo *model) parked(id string) map[string]bool {
	if p := mo.snap.parked[id]; p != nil {
		return p
	}
	return map[string]bool{}
}

// parkedIncident reports whether an incident push of a's incident was
// refused for good.
func (mo *model) parkedIncident(a Alarm) bool {
	return a.Incident != "" && mo.snap.parkedInc[a.Incident]
}

// robotTold reports whether robot i has a message of a: its own push or an
// incident push of its incident.
func (mo *model) robotTold(a Alarm, i int) bool {
	r := mo.cfg.Robots[i]
	got := mo.snap.robot["robot:"+r.Kind+":"+r.Grid+":"+strconv.Itoa(i)]
	return got[a.ID] || a.Incident != "" && got[a.Incident]
}

// shutdownBounded: with the store failing and a caller waiting in Sync (the
// MQTT handler holding its source), Stopping and the drain grace end the
// wait and Run, instead of hanging (defect 11).
func (mo *model) shutdownBounded() {
	t := mo.t
	m := mo.ms[0]
	if !mo.failing {
		mo.setFailing(true)
	}
	m.grace = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	k := mo.conds[0]
	m.Submit(rules.Event{Rule: k.rule, Device: k.dev, Channel: 7, Transition: rules.Raise, Value: 999, Time: mo.clk.Load()})
	synced := make(chan struct{})
	go func() { m.Sync(); close(synced) }()
	m.Stopping()
	select {
	case <-synced:
	case <-time.After(wait):
		t.Fatalf("Sync still waiting %s after Stopping with a failing store: shutdown hangs", wait)
	}
	cancel()
	select {
	case err := <-runDone:
		if err == nil {
			t.Errorf("Run lost an event to the failing store and said nothing")
		}
	case <-time.After(wait):
		t.Fatalf("Run did not return")
	}
	mo.setFailing(false)
}
