package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// stalling is the pipeline of an owner that stops taking messages for a
// while (a stalled disk, a long catch-up): they wait in the stream.
type stalling struct {
	*pipeline.Pipeline
	gate atomic.Pointer[chan struct{}]
}

func (s *stalling) Take(m pipeline.Message) error {
	if g := s.gate.Load(); g != nil {
		<-*g
	}
	return s.Pipeline.Take(m)
}

// arrivalTimes returns the times (ms) of dev's lines (issue 15).
func (r *recLines) arrivalTimes(dev string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []int64
	for line := range strings.SplitSeq(string(r.b), "\n") {
		if !strings.Contains(line, ",device="+dev+",") {
			continue
		}
		v, _ := strconv.ParseInt(line[strings.LastIndexByte(line, ' ')+1:], 10, 64)
		ts = append(ts, v)
	}
	return ts
}

// TestClusterLateDeliveryJudgedAtArrival (issue 15): the owner of the
// partition stalls for 6 s while devices publish; the messages wait in the
// stream and reach the pipeline late. Readings without a ts stand at their
// arrival in the stream, not when the owner took them (the old code piled
// the backlog up at the catch-up: failed); a device with a right clock
// raises no clock fault (时钟异常) although its messages come late.
func TestClusterLateDeliveryJudgedAtArrival(t *testing.T) {
	const parts = 1
	nc := testenv.StartNATSCluster(t, ServerMappings(parts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := stateLedger(t, 2)
	rulesFile := residualRule(t)
	log := &eventLog{}
	lines := &recLines{}
	var src *Source
	p, err := pipeline.New(pipeline.Options{Ledger: l, RulesFile: rulesFile, Lines: lines,
		Alarms: &testAlarms{inst: "a", log: log, ledger: l}, Ingest: pipeline.DefaultIngest(),
		Liveness: pipeline.DefaultLiveness(), Logger: quiet(),
		Owns: func(d devices.Index) bool { return src.Owns(d) }})
	if err != nil {
		t.Fatal(err)
	}
	pipe := &stalling{Pipeline: p}
	cfg := testConfig(nc.URLs(), parts, "a")
	cfg.AckWait = 3 * time.Second
	src = NewSource(cfg, pipe, l, nil, quiet())
	go p.Run(ctx)
	runSource(t, ctx, src, "a")
	pub := mqttPublisher(t, nc.Nodes[1].MQTT, "late-pub")
	// publish returns when it began and when its PUBACK came: the stream
	// stored the message in between.
	publish := func(dev, payload string) [2]int64 {
		at := time.Now().UnixMilli()
		if tok := pub.Publish("fw/v1/up/"+dev+"/telemetry", 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		return [2]int64{at, time.Now().UnixMilli()}
	}
	testenv.WaitFor(t, 60*time.Second, "the partition owned", func() bool {
		pub.Publish("fw/v1/up/el-00/status", 1, false, `{}`)
		return len(src.Owned()) == parts
	})

	gate := make(chan struct{})
	pipe.gate.Store(&gate)
	var sent [][2]int64
	for i := range 3 {
		sent = append(sent, publish("el-00", fmt.Sprintf(`{"seq":%d,"m":{"residual_current_ma":20}}`, i+1)))
		now := time.Now().UnixMilli()
		publish("el-01", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":20}}`, now, i+1))
		time.Sleep(500 * time.Millisecond) // the devices' report interval
	}
	time.Sleep(6 * time.Second) // the owner's stall: the scenario, not a synchronisation
	pipe.gate.Store(nil)
	close(gate)
	testenv.WaitFor(t, 20*time.Second, "the backlog taken", func() bool {
		return len(lines.arrivalTimes("el-00")) >= 3 && len(lines.arrivalTimes("el-01")) >= 3
	})
	got := lines.arrivalTimes("el-00")
	for i, at := range sent {
		// The stream's time of it: after the publish began, before its
		// PUBACK came back (50 ms for the clocks' resolution).
		if got[i] < at[0]-50 || got[i] > at[1]+50 {
			t.Errorf("reading %d without ts stands at %d, %+d ms from its publish (PUBACK after %d ms): want its arrival in the stream, not when the stalled owner took it",
				i+1, got[i], got[i]-at[0], at[1]-at[0])
		}
	}
	for _, dev := range []string{"el-00", "el-01"} {
		if evs := log.of("electrical.clock", dev); len(evs) > 0 {
			t.Errorf("%s: clock fault %+v after a late delivery", dev, evs)
		}
	}
}
