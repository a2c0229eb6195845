package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestUnsyncedClock plays a box without a real-time clock before NTP has
// set it (finding 7 of issue 24): its readings go without "ts", so that
// firewatch stamps them on receipt instead of rejecting them or filing them
// in the past; linkage commands are refused, since their expiry cannot be
// checked; the status says so.
func TestUnsyncedClock(t *testing.T) {
	old := gateway.SetClockFloor(time.Now().Add(365 * 24 * time.Hour))
	t.Cleanup(func() { gateway.SetClockFloor(old) })
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	sim.AddSlave(1, maps["ARCM300"]).SetPlausible()
	coll, raw := collectRaw(t, mq.URL)
	cfg := edgeConfig(mq.URL, t.TempDir(), sim.Path, edgeDev("el-1", "ARCM300", 1))
	e := startEdge(t, cfg, coll, raw.client)
	testenv.WaitFor(t, 10*time.Second, "readings", func() bool { return strings.Contains(raw.text(), `"dev":"el-1"`) })
	if strings.Contains(raw.text(), `"ts":`) {
		t.Errorf("readings stamped by an unset clock: %s", raw.text())
	}
	if s := coll.lastStatus(); s["clock_synced"] != false {
		t.Errorf("status %v, want clock_synced false", s)
	}
	now := time.Now().UnixMilli()
	e.command("el-1", cmdFields("c1", 1, now, now+60000))
	if a := e.waitAck("c1"); a["ok"] != false || !strings.Contains(a["error"].(string), "clock") {
		t.Errorf("command with an unset clock: ack %v", a)
	}
	if sim.Slave(1).Coil(0) {
		t.Error("command executed with an unset clock")
	}
}
