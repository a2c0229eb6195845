package pipeline

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// TestGatewayLivenessRandomized: a gateway that falls silent and comes back
// at random, behind it devices that fall silent and come back at random
// (seeded; FW_GW_SEED=n runs one seed). What must hold at every second:
//   - a device is never offline while the gateway delivers its readings;
//   - a device goes offline on its own only when its gateway was heard
//     within its grace (else the gateway is the cause);
//   - the gateway's fault is raised only after the gateway said nothing for
//     a device's grace, at most once per silence, and clears when it speaks;
//   - a gateway silent for two graces after delivering a device's reading
//     has its fault open;
//   - a device still silent a grace after its gateway came back is offline.
func TestGatewayLivenessRandomized(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	if s := os.Getenv("FW_GW_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = []uint64{n}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { gatewayModel(t, seed) })
	}
}

func gatewayModel(t *testing.T, seed uint64) {
	var ef *edgeFaults
	r := newReplayRig(t, func(p *Pipeline, events *fakeEvents) devices.LivenessSink {
		ef = newEdgeFaults(p.ledger, events, newLivenessAlarms(p.ledger, events), discardLogger())
		ef.now = p.clock.now
		p.edge = ef
		return ef
	})
	ef.live = r.live
	start := r.now
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d (FW_GW_SEED=%d), +%ds: %s", seed, seed, (r.now-start)/1000, fmt.Sprintf(format, args...))
	}
	// sm-1 has a heartbeat of a day: it is never due in the run.
	ids := []string{"el-1", "hy-1", "ch-1"}
	talk := map[string]bool{}
	heard := map[string]int64{}
	var grace int64
	for _, id := range ids {
		talk[id], heard[id] = true, r.now
		grace = max(grace, r.status(id).Grace.Milliseconds())
	}
	gwUp, gwHeard, gwBack, lastBatch := true, r.now, r.now, r.now
	seq := 0
	deliver := func() {
		seq++
		var rs []string
		for _, id := range ids {
			if talk[id] {
				rs = append(rs, fmt.Sprintf(`{"dev":%q,"ts":%d,"seq":%d,"m":{"rssi_dbm":-80}}`, id, r.now, seq))
				heard[id] = r.now
			}
		}
		if len(rs) > 0 {
			r.p.handle("fw/v1/up/gw/gw-1/batch", []byte(`{"readings":[`+strings.Join(rs, ",")+`]}`))
			lastBatch = r.now
		}
		r.p.handle("fw/v1/up/gw/gw-1/status", fmt.Appendf(nil, `{"ts":%d,"online":true,"buses":[]}`, r.now))
		gwHeard = r.now
	}
	deliver()
	r.events.evs = nil // the first word's clear of a previous run's fault
	open := map[string]bool{}
	gwFault := false
	seen := 0
	for range 90 * 60 {
		r.now += 1000
		r.p.clock.ms.Store(r.now)
		if rng.IntN(240) == 0 {
			gwUp = !gwUp
			if gwUp {
				gwBack = r.now
			}
		}
		for _, id := range ids {
			if rng.IntN(200) == 0 {
				talk[id] = !talk[id]
			}
		}
		spoke := gwUp && (r.now%30_000 == 0 || r.now == gwBack)
		if spoke {
			deliver()
		}
		r.live.Tick(r.now)
		for _, ev := range r.events.evs[seen:] {
			id := r.p.ledger.Device(ev.Device).ID
			if strings.HasSuffix(ev.Rule.ID, gatewayRuleSuffix) {
				switch {
				case ev.Transition == rules.Raise && gwFault:
					fail("gateway fault raised while open")
				case ev.Transition == rules.Raise && r.now-gwHeard < grace:
					fail("gateway fault raised %d ms after the gateway spoke (grace %d ms)", r.now-gwHeard, grace)
				case ev.Transition == rules.Clear && !gwFault:
					fail("gateway fault cleared while not open")
				}
				gwFault = ev.Transition == rules.Raise
				continue
			}
			if ev.Rule.Severity != rules.SeverityOffline {
				continue
			}
			if (ev.Transition == rules.Raise) == open[id] {
				fail("%s offline %s while open %v", id, ev.Transition, open[id])
			}
			open[id] = ev.Transition == rules.Raise
			if ev.Transition == rules.Raise {
				if heard[id] == lastBatch && r.now-heard[id] < grace {
					fail("%s offline %d ms after its last reading (grace %d ms)", id, r.now-heard[id], grace)
				}
				if r.now-gwHeard >= grace+2000 {
					fail("%s offline on its own while its gateway has been silent %d ms: the gateway is the cause", id, r.now-gwHeard)
				}
			}
		}
		seen = len(r.events.evs)
		if spoke && gwFault {
			fail("the gateway spoke, its fault is still open")
		}
		if !gwUp && r.now-gwHeard >= 2*grace && lastBatch == gwHeard && !gwFault {
			fail("gateway silent %d ms after delivering readings, no gateway fault", r.now-gwHeard)
		}
		for _, id := range ids {
			if talk[id] && spoke && !r.status(id).Online {
				fail("%s offline although its gateway just delivered its reading", id)
			}
			if gwUp && !talk[id] && r.now-max(heard[id], gwBack) >= grace+5000 && r.status(id).Online {
				fail("%s silent %d ms while its gateway speaks, still online", id, r.now-max(heard[id], gwBack))
			}
		}
	}
}
