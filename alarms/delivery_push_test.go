package alarms

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

func TestMessage(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	r := newTestRules(t)
	raisedDevTime := msTime(deviceTime)
	tests := []struct {
		name       string
		ev         rules.Event
		transition string
		want       string
	}{
		{
			name:       "above threshold",
			ev:         raise(r.residual, devElectrical, 0, 356, 12_000),
			transition: TransitionRaised,
			want:       "【报警】柳州市柳南区潭西街道某村 和平路12号 电气火灾监控探测器 el-450204-0001 剩余电流 356.0 mA，超过报警值 300 mA 已持续 12 秒（设备时间 2026-11-23 18:02:11）。责任单位：某厂。就近微型消防站：潭西街道微型消防站。",
		},
		{
			name:       "fire event",
			ev:         raise(r.smoke, devSmoke, 0, 1, 0),
			transition: TransitionRaised,
			want:       "【火警】柳州市柳南区潭西街道某村 和平路14号 独立式感烟火灾探测报警器 sm-450204-0002 烟雾报警（设备时间 2026-11-23 18:02:11）。责任单位：某村民委员会。就近微型消防站：潭西街道微型消防站。",
		},
		{
			name:       "below threshold, no unit, partly named place",
			ev:         raise(r.pressure, devHydrant, 0, 0.083, 60_400),
			transition: TransitionRaised,
			want:       "【报警】柳州市柳南区 建设路1号 消火栓水压监测装置 hy-450204-0003 水压 0.083 MPa，低于报警值 0.1 MPa 已持续 60 秒（设备时间 2026-11-23 18:02:11）。就近微型消防站：另一微型消防站。",
		},
		{
			name:       "channel and linkage",
			ev:         raise(r.slotTemp, devCharger, 3, 66.24, 0),
			transition: TransitionRaised,
			want:       "【报警】柳州市柳南区潭西街道某村 和平路16号车棚 电动自行车充电柜 ch-450204-0004 充电口温度（第3路） 66.2 °C，超过报警值 65 °C（设备时间 2026-11-23 18:02:11）。联动：切断电源。责任单位：某物业。就近微型消防站：潭西街道微型消防站。",
		},
		{
			name:       "cleared",
			ev:         clearEv(r.residual, devElectrical, 0, 240),
			transition: TransitionCleared,
			want:       "【报警已恢复】柳州市柳南区潭西街道某村 和平路12号 电气火灾监控探测器 el-450204-0001 剩余电流 已恢复，当前 240.0 mA（设备时间 2026-11-23 18:03:16）。原报警 alm-000007，报警时间 2026-11-23 18:02:11。责任单位：某厂。就近微型消防站：潭西街道微型消防站。",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := l.Device(tt.ev.Device)
			a := &Alarm{ID: "alm-000007", Severity: tt.ev.Rule.Severity.String(), SeverityZH: tt.ev.Rule.Severity.ZH(),
				DeviceTime: raisedDevTime, RaisedAt: raisedDevTime.Add(30 * time.Millisecond)}
			p := buildPush(pushInput{alarm: a, transition: tt.transition, ledger: l, device: d, station: d.Station,
				rule: tt.ev.Rule, ev: tt.ev, clearedAt: raisedDevTime.Add(time.Minute)})
			if p.Message != tt.want {
				t.Errorf("message\n got %s\nwant %s", p.Message, tt.want)
			}
		})
	}
}

func TestPushNonFiniteValue(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	r := newTestRules(t)
	d := l.Device(devElectrical)
	ev := raise(r.residual, devElectrical, 0, math.Inf(1), 0)
	p := buildPush(pushInput{alarm: &Alarm{ID: "alm-000001"}, transition: TransitionRaised, ledger: l, device: d,
		station: d.Station, rule: r.residual, ev: ev})
	if _, err := json.Marshal(p); err != nil {
		t.Fatalf("a push with an infinite reading must still encode: %v", err)
	}
}

// A ledger address that already starts with the place names is not
// prefixed with them again.
func TestMessageAddressNamesPlace(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	r := newTestRules(t)
	d := *l.Device(devSmoke)
	d.Address = "柳州市柳南区潭西街道某村和平路14号"
	ev := raise(r.smoke, devSmoke, 0, 1, 0)
	p := buildPush(pushInput{alarm: &Alarm{ID: "alm-000001", SeverityZH: "火警"}, transition: TransitionRaised, ledger: l,
		device: &d, station: d.Station, rule: r.smoke, ev: ev})
	if n := strings.Count(p.Message, "柳州市柳南区"); n != 1 || !strings.Contains(p.Message, d.Address) {
		t.Errorf("message names the place %d times: %s", n, p.Message)
	}
}

// A rate rule says from what to what the value changed and within how
// long; an offline alarm says since when the device is silent.
func TestMessageRateAndOffline(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	d := l.Device(devHydrant)
	drop := &rules.Rule{ID: "hydrant.pressure.drop", Kind: devices.KindHydrant, Metric: metric(t, devices.KindHydrant, "pressure_mpa"),
		Op: rules.OpFalls, Severity: rules.SeverityWarning, Threshold: 0.05, Within: 10 * time.Second}
	ev := raise(drop, devHydrant, 0, 0.22, 4_000)
	ev.Ref = 0.31
	a := &Alarm{ID: "alm-000009", SeverityZH: "预警", Since: msTime(ev.Since), DeviceTime: msTime(ev.Time)}
	p := buildPush(pushInput{alarm: a, transition: TransitionRaised, ledger: l, device: d, station: d.Station, rule: drop, ev: ev})
	if want := "水压 从 0.310 MPa 降至 0.220 MPa（4 秒内），超过预警变化量 0.05 MPa/10 秒"; !strings.Contains(p.Message, want) {
		t.Errorf("rate message:\n got %s\nwant …%s…", p.Message, want)
	}
	if p.Ref == nil || *p.Ref != 0.31 || p.Within != 10 {
		t.Errorf("push ref %v within %v", p.Ref, p.Within)
	}

	off := &rules.Rule{ID: "hydrant.offline", Kind: devices.KindHydrant, Metric: metric(t, devices.KindHydrant, "rssi_dbm"),
		Op: rules.OpEvent, Severity: rules.SeverityOffline}
	ev = raise(off, devHydrant, 0, 1, 2*3600_000)
	a = &Alarm{ID: "alm-000010", SeverityZH: "离线", Since: msTime(ev.Since), DeviceTime: msTime(ev.Time)}
	p = buildPush(pushInput{alarm: a, transition: TransitionRaised, ledger: l, device: d, station: d.Station, rule: off, ev: ev})
	if !strings.Contains(p.Message, "离线：最后一次上报 ") || !strings.Contains(p.Message, "已 120 分钟未上报") || strings.Contains(p.Message, "信号强度") {
		t.Errorf("offline message: %s", p.Message)
	}
}
