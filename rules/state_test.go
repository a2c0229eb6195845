package rules

import (
	"bytes"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// Issue 22 #10: rule state survives a restart. An alarm open before the
// restart clears when its condition ends after it; a firing rule does not
// raise again; an event replayed after the restart is still older than the
// rule's last transition. Without the checkpoint the clear never comes.
func TestStateSurvivesRestart(t *testing.T) {
	const yaml = `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 250, for: 10s, severity: alarm}
  - {id: tilt, kind: hydrant, event: tilt, severity: alarm}
`
	e, l := mustEngine(t, yaml)
	el, _ := l.Lookup([]byte("el-1"))
	hy, _ := l.Lookup([]byte("hy-1"))
	rc, _ := devices.MetricByName(el.Kind, "residual_current_ma")
	tilt, _ := devices.MetricByName(hy.Kind, "tilt")
	t0 := int64(1_795_000_000_000)
	feed := func(e *Engine, d *devices.Device, m devices.Metric, sec int64, seq uint32, v float64) []Event {
		r := devices.Reading{Device: d.Index, Kind: d.Kind, Metric: m, Value: v, Time: t0 + sec*1000, Seq: seq}
		return e.Eval(r, e.Admit(d.Index, r.Time, seq, true), nil)
	}
	feed(e, el, rc, 0, 1, 350)
	if evs := feed(e, el, rc, 10, 2, 350); len(evs) != 1 || evs[0].Transition != Raise {
		t.Fatalf("not raised: %+v", evs)
	}
	feed(e, hy, tilt, 5, 1, 1)
	feed(e, hy, tilt, 8, 2, 0) // tilt raised and ended

	var buf bytes.Buffer
	if _, err := e.Snapshot(nil, l).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, restore := range []bool{true, false} {
		e2, _ := mustEngine(t, yaml)
		if restore {
			n, err := e2.Restore(bytes.NewReader(buf.Bytes()), l)
			if err != nil || n != len(l.Devices) {
				t.Fatalf("restored %d devices: %v", n, err)
			}
		}
		still := feed(e2, el, rc, 20, 3, 400)
		ended := feed(e2, el, rc, 21, 4, 100)
		replay := feed(e2, hy, tilt, 5, 1, 1)
		if restore {
			if len(still) != 0 || len(ended) != 1 || ended[0].Transition != Clear || ended[0].Since != t0+21_000 {
				t.Errorf("after a restore: still firing %+v, ended %+v", still, ended)
			}
			if len(replay) != 0 {
				t.Errorf("a replayed tilt raised again after the restart: %+v", replay)
			}
		} else if len(ended) != 0 {
			t.Errorf("without the checkpoint a clear came: %+v", ended)
		}
	}
	// Another rule set (rc's threshold changed, tilt gone): rc keeps its
	// state, as on a reload.
	e3, _ := mustEngine(t, `rules:
  - {id: rc, kind: electrical, metric: residual_current_ma, above: 320, clear: 250, for: 10s, severity: alarm}
`)
	if _, err := e3.Restore(bytes.NewReader(buf.Bytes()), l); err != nil {
		t.Fatal(err)
	}
	if evs := feed(e3, el, rc, 21, 4, 100); len(evs) != 1 || evs[0].Transition != Clear {
		t.Errorf("after a restore into changed rules: %+v", evs)
	}
	// A damaged checkpoint is refused whole.
	b := bytes.Clone(buf.Bytes())
	b[len(b)/2] ^= 0x10
	if _, err := e3.Restore(bytes.NewReader(b), l); err == nil {
		t.Error("a damaged checkpoint was restored")
	}
	if _, err := e3.Restore(bytes.NewReader(buf.Bytes()[:len(buf.Bytes())-3]), l); err == nil {
		t.Error("a truncated checkpoint was restored")
	}
}
