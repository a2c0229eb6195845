package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// heldAlarms is an alarm store whose Sync waits until release, as a slow
// store does while a message's events are being stored; entered receives
// once per Sync call.
type heldAlarms struct {
	lockedAlarms
	entered chan struct{}
	gate    chan struct{}
}

func (a *heldAlarms) Sync() error {
	a.entered <- struct{}{}
	<-a.gate
	return nil
}

// ckptPipeline is a pipeline as New builds it, with the state file path.
func ckptPipeline(t *testing.T, l *devices.Ledger, path string, lines Lines, a Alarms, d Durability) *Pipeline {
	t.Helper()
	p, err := New(Options{Ledger: l, Lines: lines, Alarms: a, Durability: d, Ingest: DefaultIngest(),
		Liveness: DefaultLiveness(), StateFile: path, StateInterval: 1 << 62, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 15: the restart checkpoint claims only messages that may be
// acknowledged. A message is handled, its readings are in the write-ahead
// log's pending group commit (not fsynced: its ack is held), and the
// checkpoint is written meanwhile. firewatch is then killed before the
// fsync: the readings are gone and the device, never acknowledged, sends
// the message again to the next run. Before the fix the checkpoint's
// duplicate window held the message, the resend was dropped as a
// duplicate, and its readings were never written. Now the checkpoint is not
// renamed into place until the WAL is durable up to its snapshot (here the
// fsync never comes, so after the bounded wait it is skipped); once the
// fsync comes, it is, and the message is acknowledged.
func TestCheckpointClaimsOnlyDurableReadings(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"ts":1700000000000,"seq":7,"m":{"residual_current_ma":20}}`)
	const topic = "fw/v1/up/el-1/telemetry"

	path := filepath.Join(t.TempDir(), "firewatch.state")
	d := &heldDurability{in: make(chan struct{}, 10)}
	acked := false
	p := ckptPipeline(t, l, path, &fakeLines{}, &lockedAlarms{}, d)
	p.ckpt.wait = 0 // the fsync never comes: the checkpoint gives up at once
	if err := p.Take(Message{Origin: "test", Topic: topic, Payload: msg, Ack: func() { acked = true }}); err != nil {
		t.Fatal(err)
	}
	<-d.in
	err = p.ckpt.write() // while the group commit is pending
	// kill -9 here: the pending commit (the held ack) is lost.
	if acked {
		t.Fatal("acknowledged before durable")
	}
	if err == nil {
		t.Error("the checkpoint was written while the readings of a message it holds were not durable")
	}
	if _, serr := os.Stat(path); serr == nil {
		t.Error("a state file claims a message whose readings were not durable")
	}

	// The next run: the device sends the unacknowledged message again.
	lines := &fakeLines{}
	p2 := ckptPipeline(t, l, path, lines, &lockedAlarms{}, nil)
	if err := p2.Take(Message{Origin: "test", Topic: topic, Payload: msg}); err != nil {
		t.Fatal(err)
	}
	if len(lines.b) == 0 {
		t.Fatal("the resent message's readings were dropped as a duplicate: LOST (they never reached the writer)")
	}

	// Once the group commit comes during the wait, the checkpoint is
	// written and holds the message (acknowledged: never resent).
	path = filepath.Join(t.TempDir(), "firewatch.state")
	d = &heldDurability{in: make(chan struct{}, 10)}
	p = ckptPipeline(t, l, path, &fakeLines{}, &lockedAlarms{}, d)
	var ackMu sync.Mutex
	acked = false
	if err := p.Take(Message{Origin: "test", Topic: topic, Payload: msg, Ack: func() { ackMu.Lock(); acked = true; ackMu.Unlock() }}); err != nil {
		t.Fatal(err)
	}
	<-d.in
	done := make(chan error, 1)
	go func() { done <- p.ckpt.write() }()
	<-d.in // the checkpoint waits for the fsync
	d.release()
	if err := <-done; err != nil {
		t.Fatalf("checkpoint not written once durable: %v", err)
	}
	ackMu.Lock()
	if !acked {
		t.Error("the message was not acknowledged")
	}
	ackMu.Unlock()
	lines = &fakeLines{}
	p2 = ckptPipeline(t, l, path, lines, &lockedAlarms{}, nil)
	p2.Take(Message{Origin: "test", Topic: topic, Payload: msg})
	if len(lines.b) != 0 {
		t.Errorf("the checkpoint written once durable did not hold the message (resend stored again: %q)", lines.b)
	}
}

// Issue 15, alarm events: a message raised a smoke alarm, and the
// checkpoint is written while the event is still being stored (Sync has
// not returned: the message is not acknowledged). firewatch is killed
// before the store commits. Before the fix the checkpoint held the rule's
// transition and the message's digest: the resend to the next run was a
// duplicate and the smoke alarm was never raised. Now the checkpoint waits
// for the events submitted before its snapshot to be stored.
func TestCheckpointClaimsOnlyStoredEvents(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	smoke := []byte(`{"ts":1700000000000,"seq":1,"event":"smoke_alarm"}`)
	const topic = "fw/v1/up/sm-1/event"
	path := filepath.Join(t.TempDir(), "firewatch.state")
	a := &heldAlarms{entered: make(chan struct{}, 4), gate: make(chan struct{})}
	p := ckptPipeline(t, l, path, &lockedLines{}, a, nil)
	p.ckpt.wait = 0 // the store never commits: the checkpoint gives up at once
	taken := make(chan error, 1)
	go func() { taken <- p.Take(Message{Origin: "test", Topic: topic, Payload: smoke}) }()
	<-a.entered // handled; its event is being stored
	err = p.ckpt.write()
	// kill -9 here: the event was not stored, the message not acknowledged.
	if err == nil {
		t.Error("the checkpoint was written while an event of a message it holds was not stored")
	}
	if _, serr := os.Stat(path); serr == nil {
		t.Error("a state file claims a message whose alarm event was not stored")
	}
	close(a.gate) // let the goroutines end
	<-taken

	evs := &lockedAlarms{}
	p2 := ckptPipeline(t, l, path, &lockedLines{}, evs, nil)
	if err := p2.Take(Message{Origin: "test", Topic: topic, Payload: smoke}); err != nil {
		t.Fatal(err)
	}
	raised := false
	for _, ev := range evs.evs {
		raised = raised || (ev.Rule.ID == "smoke.smoke_alarm" && ev.Transition == rules.Raise)
	}
	if !raised {
		t.Fatalf("the resent smoke alarm raised nothing after the restart: LOST (events %+v)", evs.evs)
	}
}

// A periodic checkpoint whose events the alarm store reports not stored is
// skipped; the last one, at shutdown, is written all the same: the sources
// stopped, and Take made the engine forget the devices of every message
// whose events were not stored (notStored) before its snapshot.
func TestCheckpointAlarmStoreFailing(t *testing.T) {
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "firewatch.state")
	p := ckptPipeline(t, l, path, &fakeLines{}, &fakeAlarms{syncErr: errors.New("store failing at shutdown")}, nil)
	if err := p.ckpt.write(); !errors.Is(err, errCheckpointNotDurable) {
		t.Errorf("periodic checkpoint with the store failing: %v, want skipped", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("periodic checkpoint written with the store failing")
	}
	p.ckpt.final = true
	if err := p.ckpt.write(); err != nil {
		t.Errorf("last checkpoint with the store failing: %v, want written", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("last checkpoint not written: %v", err)
	}
}
