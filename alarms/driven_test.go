package alarms

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// reviewLedger has two villages of one town covered by the town's station
// (no village station), the county's station above it, and a second town
// with a station of its own. Endpoints are base + "/town", "/county",
// "/other".
const reviewLedger = `
places:
  "450204": 柳州市柳南区
  "450204001": 潭西街道
  "450204001001": 某村
  "450204001002": 鹅山村
  "450204002": 另一街道
  "450204002001": 另一村
stations:
  - id: st-town
    name: 潭西街道微型消防站
    grids: ["450204001"]
    endpoint: %[1]s/town
  - id: st-county
    name: 柳南区消防救援站
    grids: ["450204"]
    endpoint: %[1]s/county
  - id: st-other
    name: 另一微型消防站
    grids: ["450204002"]
    endpoint: %[1]s/other
devices:
  - id: el-1
    kind: electrical
    model: M
    grid: "450204001001"
    address: 和平路1号
  - id: el-2
    kind: electrical
    model: M
    grid: "450204001002"
    address: 鹅山路2号
  - id: sm-1
    kind: smoke
    model: M
    grid: "450204001001"
    address: 和平路3号
  - id: sm-2
    kind: smoke
    model: M
    grid: "450204001002"
    address: 鹅山路4号
  - id: el-3
    kind: electrical
    model: M
    grid: "450204002001"
    address: 建设路5号
`

// Device indexes of reviewLedger.
const (
	rvEl1 devices.Index = iota
	rvEl2
	rvSm1
	rvSm2
	rvEl3
)

func newReviewLedger(t testing.TB, base string) *devices.Ledger {
	t.Helper()
	l, err := devices.ParseLedger("review.yaml", fmt.Appendf(nil, reviewLedger, base))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// driven is a Manager whose Run does not run: the test applies events,
// steps a simulated clock and runs the periodic duties itself, and reads
// what would be delivered from the outbox. Nothing sleeps.
type driven struct {
	*Manager
	t   testing.TB
	clk time.Time
}

// drivenBase is the endpoint base of driven tests: nothing is delivered.
const drivenBase = "http://receiver.invalid"

var drivenStart = time.Date(2026, 11, 23, 18, 0, 0, 0, cst)

func newDriven(t testing.TB, cfg Config, l *devices.Ledger) *driven {
	t.Helper()
	m, err := NewManager(cfg, l)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	d := &driven{Manager: m, t: t, clk: drivenStart}
	m.now = func() time.Time { return d.clk }
	return d
}

// apply commits events as one batch, failing the test on error.
func (d *driven) apply(evs ...rules.Event) {
	d.t.Helper()
	if err := d.tryApply(evs...); err != nil {
		d.t.Fatalf("apply: %v", err)
	}
}

func (d *driven) tryApply(evs ...rules.Event) error {
	effs, err := d.Manager.apply(evs)
	if err != nil {
		return err
	}
	d.after(effs)
	return nil
}

// tick advances the clock by dt and runs the periodic duties as the
// escalation loop does.
func (d *driven) tick(dt time.Duration) {
	d.t.Helper()
	d.clk = d.clk.Add(dt)
	ctx := context.Background()
	if err := d.escalateDue(ctx, d.clk); err != nil {
		d.t.Fatalf("escalateDue: %v", err)
	}
	if err := d.flushIncidents(ctx, d.clk); err != nil {
		d.t.Fatalf("flushIncidents: %v", err)
	}
	if err := d.clearStable(ctx, d.clk); err != nil {
		d.t.Fatalf("clearStable: %v", err)
	}
}

// keys lists the idempotency keys queued for endpoint, in delivery order.
func (d *driven) keys(endpoint string) []string {
	d.t.Helper()
	rows, err := d.store.r.Query(`SELECT idempotency_key FROM outbox WHERE endpoint = ? ORDER BY id`, endpoint)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		rows.Scan(&k)
		out = append(out, k)
	}
	return out
}

// body returns the body of the push with key to endpoint.
func (d *driven) body(endpoint, key string) string {
	d.t.Helper()
	var b string
	if err := d.store.r.QueryRow(`SELECT body FROM outbox WHERE endpoint = ? AND idempotency_key = ?`, endpoint, key).Scan(&b); err != nil {
		d.t.Fatalf("push %s to %s: %v", key, endpoint, err)
	}
	return b
}

// deliverAll marks every pending push delivered, in order, as a receiver
// answering 2xx would.
func (d *driven) deliverAll() {
	d.t.Helper()
	eps, _, err := d.store.pendingEndpoints(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	for _, ep := range eps {
		for {
			row, err := d.store.nextPending(context.Background(), ep)
			if err != nil {
				d.t.Fatal(err)
			}
			if row == nil {
				break
			}
			if _, err := d.store.markDelivered(context.Background(), row, d.clk); err != nil {
				d.t.Fatal(err)
			}
		}
	}
}

func (d *driven) alarm(id string) Alarm { d.t.Helper(); return get(d.t, d.Manager, id) }

// at makes an event's device times follow the simulated clock.
func (d *driven) at(ev rules.Event) rules.Event {
	ev.Time = d.clk.UnixMilli()
	if ev.Transition == rules.Raise {
		ev.Since = ev.Time
	}
	return ev
}

// lockWaiters counts PostgreSQL backends waiting for a lock: a concurrent
// statement has reached the row another transaction holds.
func lockWaiters(t testing.TB, db *sql.DB) int {
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
