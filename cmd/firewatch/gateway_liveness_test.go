package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestSilentGatewayThroughBroker (issue 14, item 7): firegate's gw-1
// publishes batches through the real embedded broker and falls silent
// without a last will (a hung box, a lost will). One gateway fault naming
// it and its devices is pushed, no offline alarm per device. When it is
// back with el-1 and hy-1 the fault clears and ch-1, still silent, goes
// offline on its own; a replay of ch-1's old readings does not revive it.
func TestSilentGatewayThroughBroker(t *testing.T) {
	rcv := newReceiver(t)
	const heartbeat = 500 * time.Millisecond // offline after 1 s
	s, url, _ := embeddedService(t, rcv, func(c *Config) {
		c.Liveness.Tick = 100 * time.Millisecond
		c.Liveness.Electrical, c.Liveness.Hydrant, c.Liveness.Charger = heartbeat, heartbeat, heartbeat
		c.Alarms.StormWindow = 0 // one push per alarm, to look at each
	})
	gw := mqttClient(t, url, "gw-1", "gw-1", "gw-1-secret")
	var mu sync.Mutex
	seq := map[string]int{}
	batch := func(ts int64, devs ...string) string {
		mu.Lock()
		defer mu.Unlock()
		var rs []string
		for _, d := range devs {
			seq[d]++
			rs = append(rs, fmt.Sprintf(`{"dev":%q,"ts":%d,"seq":%d,"m":{"rssi_dbm":-80}}`, d, ts, seq[d]))
		}
		return `{"readings":[` + strings.Join(rs, ",") + `]}`
	}
	chLast := time.Now().UnixMilli()
	publish(t, gw, "fw/v1/up/gw/gw-1/batch", batch(chLast, "el-1", "hy-1", "ch-1"))
	isGW := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			rule, _ := b["rule"].(string)
			return strings.HasSuffix(rule, ".gateway_offline") && b["transition"] == transition
		}
	}
	p, _ := rcv.nextPush(t, 15*time.Second, "gateway offline fault", isGW("raised"))
	if msg, _ := p["message"].(string); !strings.Contains(msg, "gw-1") || !strings.Contains(msg, "4 台") || !strings.Contains(msg, "ch-1") {
		t.Errorf("gateway fault push does not name the gateway and its devices: %v", p["message"])
	}
	testenv.WaitFor(t, 15*time.Second, "three devices offline in liveness", func() bool { return s.live.Offline() >= 3 })
	if n := openOffline(t, s); n != 0 {
		t.Errorf("%d offline alarms opened while their gateway is silent", n)
	}

	// The gateway is back with el-1 and hy-1, every 200 ms; ch-1 is dead.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			gw.Publish("fw/v1/up/gw/gw-1/batch", 1, false, batch(time.Now().UnixMilli(), "el-1", "hy-1")).Wait()
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	defer func() { cancel(); <-done }()
	rcv.nextPush(t, 15*time.Second, "gateway fault cleared", isGW("cleared"))
	p, _ = rcv.nextPush(t, 15*time.Second, "ch-1 offline on its own", is("charger.offline", "raised"))
	if d, _ := p["device"].(map[string]any); d["id"] != "ch-1" {
		t.Errorf("offline push for %v", d)
	}
	// The spool's replay of what ch-1 said before it died: acknowledged
	// (handled) and ch-1 still offline.
	publish(t, gw, "fw/v1/up/gw/gw-1/batch", batch(chLast+100, "ch-1"))
	if st := getDevice(t, s, "ch-1"); st["online"] != false {
		t.Errorf("ch-1 after the replay of its old readings: %v", st)
	}
	for _, p := range rcv.all() {
		if p.body["severity"] == "offline" {
			if d, _ := p.body["device"].(map[string]any); d["id"] != "ch-1" || p.body["transition"] != "raised" {
				t.Errorf("offline push %v for %v", p.body["transition"], d["id"])
			}
		}
	}
}
