package alarms

import (
	"encoding/json"
	"strings"
	"testing"
)

// A device whose ledger entry names its responsible person (责任人) has
// the name and the phone in the dispatcher text, beside the owning unit,
// and in the push's device (issue 18).
func TestMessageContact(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	r := newTestRules(t)
	d := *l.Device(devElectrical)
	d.Contact, d.Phone = "张三", "13800000000"
	ev := raise(r.residual, devElectrical, 0, 356, 12_000)
	a := &Alarm{ID: "alm-000007", SeverityZH: "报警", DeviceTime: msTime(deviceTime)}
	p := buildPush(pushInput{alarm: a, transition: TransitionRaised, ledger: l, device: &d, station: d.Station, rule: r.residual, ev: ev})
	if want := "责任单位：某厂。责任人：张三 13800000000。就近微型消防站："; !strings.Contains(p.Message, want) {
		t.Errorf("message\n got %s\nwant …%s…", p.Message, want)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"contact":"张三","phone":"13800000000"`) {
		t.Errorf("push device: %s", b)
	}

	d.Phone = ""
	p = buildPush(pushInput{alarm: a, transition: TransitionCleared, ledger: l, device: &d, station: d.Station, rule: r.residual, ev: ev})
	if !strings.Contains(p.Message, "责任人：张三。") {
		t.Errorf("cleared message without a phone: %s", p.Message)
	}
}
