package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func TestKnownTopic(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic string
		known bool
	}{
		{"fw/v1/up/sm-1/event", true},
		{"fw/v1/up/hy-1/telemetry", true},
		{"fw/v1/up/ch-1/status", true},
		{"fw/v1/up/sm-new/event", false},
		{"fw/v1/up/sm-new/telemetry", false},
		{"fw/v1/up/gw/gw-1/batch", true},
		{"fw/v1/up/gw/gw-new/batch", false},
		{"fw/v1/up/gw/gw-new/status", true}, // no readings: not worth a catch-up
		{"fw/v1/up/station/st-tanxi/status", true},
		{"fw/v1/up/station/st-new/status", false},
		// Topics the pipeline rejects as bad_topic whatever the registry.
		{"fw/v1/up/sm-new/other", true},
		{"fw/v1/up/sm-new", true},
		{"fw/v2/up/sm-new/event", true},
	} {
		if got := known(l, c.topic); got != c.known {
			t.Errorf("known(%q) = %v, want %v", c.topic, got, c.known)
		}
	}
}

// TestKnowTopicCatchesUp: a message of a device the live registry does not
// have waits for a catch-up, after which the registry has it; a known
// device's message costs none; a device that stays unknown costs a
// catch-up per message, at most one every catchUpEvery.
func TestKnowTopicCatchesUp(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lv := devices.NewLive(l)
	s := NewSource(testConfig("nats://127.0.0.1:1", 4, "b"), &msgRecorder{}, l, nil, quiet())
	s.Follow(lv)
	// The store has sm-new, committed by another instance; the catch-up
	// applies it (registry.Store.Sync).
	var mu sync.Mutex
	var starts []time.Time
	pending := &devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "sm-new", Kind: "smoke", Grid: "450204002003", Address: "鹅山路40号"}}}
	s.CatchUpRegistry(func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, time.Now())
		if pending != nil {
			if _, _, err := lv.Apply(pending); err != nil {
				return err
			}
			pending = nil
		}
		return nil
	}, nil)
	p := s.newPartition(0, nil)

	p.knowTopic("fw/v1/up/sm-1/event", time.Now())
	if n := s.RegistryCatchUps(); n != 0 {
		t.Fatalf("a known device's message made %d catch-ups", n)
	}
	p.knowTopic("fw/v1/up/sm-new/event", time.Now())
	if n := s.RegistryCatchUps(); n != 1 {
		t.Fatalf("catch-ups: %d, want 1", n)
	}
	if _, ok := s.devs.Load().ledger.LookupID("sm-new"); !ok {
		t.Fatal("sm-new not in the registry after the catch-up")
	}
	p.knowTopic("fw/v1/up/sm-new/event", time.Now())
	if n := s.RegistryCatchUps(); n != 1 {
		t.Fatalf("sm-new known: catch-ups %d, want still 1", n)
	}
	p.knowTopic("fw/v1/up/sm-ghost/event", time.Now())
	p.knowTopic("fw/v1/up/sm-ghost/event", time.Now())
	if n := s.RegistryCatchUps(); n != 3 {
		t.Fatalf("catch-ups: %d, want 3", n)
	}
	for i := 1; i < len(starts); i++ {
		if d := starts[i].Sub(starts[i-1]); d < catchUpEvery {
			t.Errorf("catch-up %d started %v after the previous one, want at least %v", i, d, catchUpEvery)
		}
	}
}

// TestCatchUpCoalesced: a message that arrives while a catch-up runs waits
// for the next one (the one running may have read the store before the
// device was committed); every message waiting then is served by that one.
func TestCatchUpCoalesced(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	var calls atomic.Int32
	c := newCatchUp(func(context.Context) error {
		calls.Add(1)
		entered <- struct{}{}
		<-release
		return nil
	}, 10*time.Millisecond)
	quit := make(chan struct{})
	first := make(chan struct{})
	go func() { c.wait(quit, time.Now()); close(first) }()
	<-entered // catch-up 1 runs
	const waiters = 5
	var served sync.WaitGroup
	var seen [waiters]int32
	for i := range waiters {
		served.Go(func() { c.wait(quit, time.Now()); seen[i] = calls.Load() })
	}
	testenv.WaitFor(t, 5*time.Second, "the messages to wait for catch-up 1", func() bool { return c.waiting.Load() == waiters })
	release <- struct{}{}
	<-first
	<-entered // catch-up 2, for all the waiters
	release <- struct{}{}
	served.Wait()
	if n := calls.Load(); n != 2 {
		t.Errorf("catch-ups: %d, want 2 (one for the first message, one for all that came while it ran)", n)
	}
	for i, n := range seen {
		if n != 2 {
			t.Errorf("waiter %d returned after catch-up %d, want 2", i, n)
		}
	}

	// A partition that stops does not wait for a catch-up.
	go c.wait(nil, time.Now()) // catch-up 3, held
	<-entered
	stopped := make(chan struct{})
	go func() { c.wait(quit, time.Now()); close(stopped) }()
	testenv.WaitFor(t, 5*time.Second, "a message to wait for catch-up 3", func() bool { return c.waiting.Load() == 1 })
	close(quit)
	<-stopped
	release <- struct{}{}
}

// BenchmarkKnownTopic is what a message of a known device costs the
// partition's goroutine for the catch-up check (knowTopic): the topic cut
// and one lookup in the live ledger.
func BenchmarkKnownTopic(b *testing.B) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		b.Fatal(err)
	}
	s := NewSource(testConfig("nats://127.0.0.1:1", 4, "b"), &msgRecorder{}, l, nil, quiet())
	s.CatchUpRegistry(func(context.Context) error { b.Fatal("a catch-up for a known device"); return nil }, nil)
	p := s.newPartition(0, nil)
	b.ReportAllocs()
	for b.Loop() {
		p.knowTopic("fw/v1/up/sm-1/event", time.Now())
		p.knowTopic("fw/v1/up/gw/gw-1/batch", time.Now())
	}
}

// TestCatchUpCoversOlderMessages: a message stored in the stream more than
// catchUpSkew before the last catch-up started does not wait for another
// (a partition behind after a flood of unknown ids catches up at once); a
// live one does.
func TestCatchUpCoversOlderMessages(t *testing.T) {
	var calls atomic.Int32
	c := newCatchUp(func(context.Context) error { calls.Add(1); return nil }, catchUpEvery)
	c.wait(nil, time.Now())
	if n := calls.Load(); n != 1 {
		t.Fatalf("catch-ups: %d, want 1", n)
	}
	start := time.Now()
	for range 100 {
		c.wait(nil, start.Add(-catchUpSkew-time.Second))
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("messages stored before the last catch-up made %d more", n-1)
	}
	if d := time.Since(start); d >= catchUpEvery {
		t.Errorf("they waited %v", d)
	}
	c.wait(nil, time.Now())
	if n := calls.Load(); n != 2 {
		t.Errorf("a live message: catch-ups %d, want 2", n)
	}
}
