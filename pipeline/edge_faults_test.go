package pipeline

import (
	"log/slog"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

type eventLog struct{ evs []rules.Event }

func (l *eventLog) Submit(ev rules.Event) { l.evs = append(l.evs, ev) }

type livenessLog struct{ offline, online []devices.Index }

func (l *livenessLog) Offline(d devices.Index, _, _ int64) { l.offline = append(l.offline, d) }
func (l *livenessLog) Online(d devices.Index, _, _ int64)  { l.online = append(l.online, d) }

// TestGatewayWillDeferred: a last will holds back the gateway's devices'
// offline alarms and raises nothing until the first of them goes offline;
// a gateway back before that raises nothing at all; a clean stop raises
// nothing; a device not on the gateway is not held.
func TestGatewayWillDeferred(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	events, off := &eventLog{}, &livenessLog{}
	ef := newEdgeFaults(l, events, off, slog.New(slog.DiscardHandler))
	el, _ := l.LookupID("el-1")
	hy, _ := l.LookupID("hy-1")
	// The first word from the gateway clears a gateway fault a previous
	// run may have left open (gateway_liveness.go).
	ef.Status("gw-1", []byte(`{"online":true,"ts":1,"buses":[]}`), 1)
	if len(events.evs) != 1 || events.evs[0].Transition != rules.Clear || events.evs[0].Rule.ID != "electrical.gateway_offline" {
		t.Fatalf("first status: events %+v, want the gateway fault of a previous run cleared", events.evs)
	}
	events.evs = nil

	ef.Status("gw-1", []byte(`{"online":false,"ts":5}`), 10) // clean stop
	ef.Offline(el.Index, 1, 10)
	if len(events.evs) != 0 || len(off.offline) != 1 {
		t.Fatalf("after a clean stop: events %v, offline %v", events.evs, off.offline)
	}
	ef.Online(el.Index, 1, 11)

	ef.Status("gw-1", []byte(`{"online":false}`), 20) // last will
	ef.Status("gw-1", []byte(`{"online":true,"ts":21,"buses":[]}`), 21)
	if len(events.evs) != 0 {
		t.Fatalf("a gateway back within the grace raised %v", events.evs)
	}

	ef.Status("gw-1", []byte(`{"online":false}`), 30)
	ef.Offline(hy.Index, 25, 40)
	ef.Offline(el.Index, 26, 41)
	if len(events.evs) != 1 || events.evs[0].Transition != rules.Raise || events.evs[0].Rule.ID != "electrical.gateway_offline" {
		t.Fatalf("events %+v, want one gateway fault raised", events.evs)
	}
	if len(off.offline) != 1 {
		t.Fatalf("offline alarms passed through while held: %v", off.offline)
	}
	ef.Status("gw-1", []byte(`{"online":true,"ts":50,"buses":[]}`), 50)
	if len(events.evs) != 2 || events.evs[1].Transition != rules.Clear {
		t.Fatalf("events %+v, want the gateway fault cleared", events.evs)
	}
	// Held devices are re-armed (no liveness here: the hold is dropped), so
	// a later silence goes through as an offline alarm again.
	ef.Offline(hy.Index, 60, 70)
	if len(off.offline) != 2 {
		t.Errorf("offline after the gateway is back: %v", off.offline)
	}
}
