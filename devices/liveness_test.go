package devices

import (
	"bytes"
	"math"
	"runtime"
	"testing"
	"time"
)

type liveEvent struct {
	online   bool
	d        Index
	lastSeen int64
	now      int64
}

type liveSink struct{ evs []liveEvent }

func (s *liveSink) Offline(d Index, lastSeen, now int64) {
	s.evs = append(s.evs, liveEvent{false, d, lastSeen, now})
}
func (s *liveSink) Online(d Index, lastSeen, now int64) {
	s.evs = append(s.evs, liveEvent{true, d, lastSeen, now})
}

func fleet(n int, k Kind) *Ledger {
	l := &Ledger{Devices: make([]Device, n)}
	for i := range l.Devices {
		l.Devices[i] = Device{Index: Index(i), ID: "d", Kind: k}
	}
	return l
}

func TestLiveness(t *testing.T) {
	l := fleet(3, KindElectrical)
	l.Devices[2].Heartbeat = 10 * time.Second // ledger override
	sink := &liveSink{}
	const t0 = int64(1_800_000_000_000)
	cfg := LivenessConfig{Tick: time.Second}
	cfg.Heartbeat[KindElectrical] = time.Minute // grace 2 min
	lv, err := NewLiveness(l, cfg, sink, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Device 0 speaks every 30 s, device 1 falls silent after t0+10s,
	// device 2 (grace 20 s) is silent from the start.
	lv.Seen(1, t0+10_000)
	lv.Vitals(1, []Metric{mustMetric(t, KindElectrical, "rssi_dbm")}, []float64{-80})
	for now := t0; now <= t0+200_000; now += 1000 {
		if (now-t0)%30_000 == 0 {
			lv.Seen(0, now)
		}
		lv.Tick(now)
	}
	want := []liveEvent{{false, 2, t0, t0 + 20_000}, {false, 1, t0 + 10_000, t0 + 130_000}}
	if len(sink.evs) != len(want) {
		t.Fatalf("events %+v, want %+v", sink.evs, want)
	}
	for i := range want {
		if sink.evs[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, sink.evs[i], want[i])
		}
	}
	if lv.Offline() != 2 || lv.Status(1).Online || !lv.Status(0).Online {
		t.Fatalf("offline %d, status %+v %+v", lv.Offline(), lv.Status(0), lv.Status(1))
	}
	if st := lv.Status(1); st.RSSI != -80 || st.LastSeen != t0+10_000 || !math.IsNaN(st.Battery) {
		t.Errorf("status %+v", st)
	}
	// Device 1 speaks again: cleared at once, and raised again after a new
	// grace of silence.
	lv.Seen(1, t0+201_000)
	lv.Tick(t0 + 201_000) // the next tick tells the sink
	if e := sink.evs[len(sink.evs)-1]; e != (liveEvent{true, 1, t0 + 10_000, t0 + 201_000}) {
		t.Fatalf("online event %+v", e)
	}
	for now := t0 + 201_000; now <= t0+400_000; now += 1000 {
		lv.Seen(0, now)
		lv.Tick(now)
	}
	if e := sink.evs[len(sink.evs)-1]; e != (liveEvent{false, 1, t0 + 201_000, t0 + 321_000}) {
		t.Fatalf("second offline %+v", e)
	}
	// A late ticker catches up, and still raises within one tick of the
	// grace as it sees it.
	lv.Tick(t0 + 10_000_000)
	// MarkOffline at start: the first word clears.
	lv2, _ := NewLiveness(l, cfg, sink, t0)
	lv2.MarkOffline(0, t0-5000)
	n := len(sink.evs)
	lv2.Seen(0, t0+1)
	lv2.Tick(t0 + 1)
	if len(sink.evs) != n+1 || !sink.evs[n].online {
		t.Fatalf("restored offline device did not clear: %+v", sink.evs[n:])
	}
}

func mustMetric(t *testing.T, k Kind, name string) Metric {
	m, ok := MetricByName(k, name)
	if !ok {
		t.Fatal(name)
	}
	return m
}

func TestLivenessSeenDoesNotAllocate(t *testing.T) {
	lv, _ := NewLiveness(fleet(10, KindSmoke), LivenessConfig{Tick: time.Second}, &liveSink{}, 0)
	m := []Metric{mustMetric(t, KindSmoke, "battery_pct")}
	v := []float64{80}
	if a := testing.AllocsPerRun(100, func() { lv.Seen(3, 1000); lv.Vitals(3, m, v) }); a != 0 {
		t.Fatalf("%v allocs", a)
	}
}

type countSink struct{ off, on int }

func (s *countSink) Offline(Index, int64, int64) { s.off++ }
func (s *countSink) Online(Index, int64, int64)  { s.on++ }

// BenchmarkLivenessTick is one tick of the timing wheel over 1,000,000
// devices that all speak every heartbeat (electrical: 5 min, grace 10 min):
// each tick reschedules the ~1/600 of the fleet whose slot comes up. It
// reports the memory of the tracker per device.
func BenchmarkLivenessTick(b *testing.B) {
	const n = 1_000_000
	l := fleet(n, KindElectrical)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const t0 = int64(1_800_000_000_000)
	lv, err := NewLiveness(l, LivenessConfig{Tick: time.Second}, &countSink{}, t0)
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perDevice := float64(after.TotalAlloc-before.TotalAlloc) / n
	now := t0
	next := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now += 1000
		// The fleet speaks round-robin: each device once per 5 min.
		for j := 0; j < n/300; j++ {
			lv.Seen(Index(next), now)
			next = (next + 1) % n
		}
		lv.Tick(now)
	}
	b.StopTimer()
	b.ReportMetric(perDevice, "B/device")
	if lv.Offline() != 0 {
		b.Fatalf("%d devices offline", lv.Offline())
	}
}

// BenchmarkLivenessTickStorm is the worst tick: 1,000,000 devices fall
// silent together and are all raised in one tick.
func BenchmarkLivenessTickStorm(b *testing.B) {
	const n = 1_000_000
	l := fleet(n, KindSmoke)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		sink := &countSink{}
		lv, _ := NewLiveness(l, LivenessConfig{Tick: time.Second}, sink, 0)
		b.StartTimer()
		lv.Tick((48*time.Hour + time.Second).Milliseconds())
		if sink.off != n {
			b.Fatalf("raised %d", sink.off)
		}
	}
}

func BenchmarkLivenessSeen(b *testing.B) {
	lv, _ := NewLiveness(fleet(1_000_000, KindSmoke), LivenessConfig{Tick: time.Second}, &countSink{}, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		lv.Seen(Index(i), 1000)
		i = (i + 7919) % 1_000_000
	}
}

// blockSink blocks in Offline until released.
type blockSink struct {
	entered, release chan struct{}
}

func (s *blockSink) Offline(Index, int64, int64) {
	s.entered <- struct{}{}
	<-s.release
}
func (s *blockSink) Online(Index, int64, int64) {}

// Issue 22 #11: while the sink (the alarm manager) is slow to take a mass
// offline, a device that speaks is not held up: Seen runs on the ingest
// goroutine, and a wait there stalls every message, smoke alarms included.
func TestSeenDoesNotWaitForTheSink(t *testing.T) {
	sink := &blockSink{entered: make(chan struct{}), release: make(chan struct{})}
	lv, err := NewLiveness(fleet(2, KindElectrical), LivenessConfig{Tick: time.Second}, sink, 0)
	if err != nil {
		t.Fatal(err)
	}
	ticked := make(chan struct{})
	go func() { lv.Tick(int64(MaxGrace / time.Millisecond)); close(ticked) }()
	<-sink.entered // device 0 or 1 is being raised; the sink waits
	done := make(chan struct{})
	go func() {
		lv.Seen(0, 1)
		lv.Seen(1, 1)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Seen waited for the sink")
	}
	close(sink.release)
	go func() {
		for range sink.entered {
		}
	}()
	<-ticked
}

// Issue 22 #10: liveness survives restarts. A detector (grace 48 h) that
// never speaks again is raised 48 h after it was last heard, even when
// firewatch restarts every 12 h; without the checkpoint it never is.
func TestLivenessSurvivesRestarts(t *testing.T) {
	l := fleet(1, KindSmoke)
	const t0 = int64(1_800_000_000_000)
	const h = int64(3600_000)
	for _, restore := range []bool{true, false} {
		sink := &liveSink{}
		var state []byte
		lv, err := NewLiveness(l, LivenessConfig{Tick: time.Minute}, sink, t0)
		if err != nil {
			t.Fatal(err)
		}
		lv.Seen(0, t0)
		for now := t0; now <= t0+100*h; now += time.Minute.Milliseconds() {
			if (now-t0)%(12*h) == 0 && now > t0 { // a restart
				var buf bytes.Buffer
				if err := lv.WriteState(&buf, l, now); err != nil {
					t.Fatal(err)
				}
				state = buf.Bytes()
				cfg := LivenessConfig{Tick: time.Minute}
				if restore {
					if cfg.Restored, err = ReadLivenessState(bytes.NewReader(state), l, now); err != nil {
						t.Fatal(err)
					}
				}
				if lv, err = NewLiveness(l, cfg, sink, now); err != nil {
					t.Fatal(err)
				}
			}
			lv.Tick(now)
		}
		if restore && (len(sink.evs) != 1 || sink.evs[0].lastSeen != t0 || sink.evs[0].now > t0+48*h+time.Minute.Milliseconds()) {
			t.Fatalf("with the checkpoint: %+v, want offline at 48 h since %d", sink.evs, t0)
		}
		if !restore && len(sink.evs) != 0 {
			t.Fatalf("without the checkpoint the restarts hide the silence, yet: %+v", sink.evs)
		}
	}
	// A corrupt checkpoint is refused, not half read.
	var buf bytes.Buffer
	lv, _ := NewLiveness(l, LivenessConfig{Tick: time.Minute}, &liveSink{}, t0)
	lv.WriteState(&buf, l, t0)
	b := buf.Bytes()
	b[len(b)-6] ^= 1
	if _, err := ReadLivenessState(bytes.NewReader(b), l, t0); err == nil {
		t.Fatal("a corrupt checkpoint was read")
	}
	// Downtime is not silence: a checkpoint from 3 days ago moves the
	// device's silence forward by 3 days.
	buf.Reset()
	lv.Seen(0, t0)
	lv.WriteState(&buf, l, t0+h)
	r, err := ReadLivenessState(bytes.NewReader(buf.Bytes()), l, t0+h+72*h)
	if err != nil || r[0] != (Restored{Since: t0 + 72*h, Seen: true}) {
		t.Fatalf("restored %+v, %v", r, err)
	}
}
