package pipeline

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A message whose alarm events the alarm manager could not store (Sync
// fails: the store failing at shutdown) is not acknowledged: Take never
// calls its Ack, not even once its readings are durable, and returns
// ErrNotStored to a source that acknowledges on return (the embedded
// broker: no PUBACK; NB-IoT: 503). It is counted.
func TestTakeNotStoredNotAcked(t *testing.T) {
	smoke := []byte(`{"ts":1000,"seq":1,"event":"smoke_alarm"}`)
	for _, durable := range []bool{false, true} {
		p, lines, _, _ := newTestPipeline(t)
		p.alarms = &fakeAlarms{syncErr: errors.New("store failing at shutdown")}
		var d *heldDurability
		if durable {
			d = &heldDurability{in: make(chan struct{}, 10)}
			p.durable = d
		}
		acked := 0
		err := p.Take(Message{Origin: "test", Topic: "fw/v1/up/sm-1/event", Payload: smoke, Ack: func() { acked++ }})
		if !errors.Is(err, ErrNotStored) {
			t.Errorf("durable %v: Take with Ack returned %v, want ErrNotStored", durable, err)
		}
		want := 1.0
		if !durable { // (with a Durability, a Take without Ack would wait for the release below)
			want = 3
			if err := p.Take(Message{Origin: "test", Topic: "fw/v1/up/sm-1/event", Payload: smoke, Relayed: true}); !errors.Is(err, ErrNotStored) {
				t.Errorf("relayed Take returned %v, want ErrNotStored", err)
			}
			if err := CheckedHandler(p, OriginBroker)("fw/v1/up/sm-1/event", smoke); !errors.Is(err, ErrNotStored) {
				t.Errorf("CheckedHandler returned %v, want ErrNotStored", err)
			}
		}
		if d != nil {
			d.release()
		}
		if acked != 0 {
			t.Errorf("durable %v: a message whose alarms were not stored was acknowledged", durable)
		}
		if len(lines.b) == 0 {
			t.Errorf("durable %v: the readings were not written (they stay written)", durable)
		}
		if n := testutil.ToFloat64(p.unacked); n != want {
			t.Errorf("durable %v: %v messages counted unacknowledged, want %v", durable, n, want)
		}
	}

	// Once the store works again, the message sent again is evaluated
	// afresh (not a duplicate: the engine forgot what the unstored one did),
	// raises the alarm again and is acknowledged.
	p, _, events, _ := newTestPipeline(t)
	a := &fakeAlarms{syncErr: errors.New("store failing at shutdown")}
	p.alarms = a
	if err := p.Take(Message{Origin: "test", Topic: "fw/v1/up/sm-1/event", Payload: smoke}); !errors.Is(err, ErrNotStored) {
		t.Fatalf("Take = %v, want ErrNotStored", err)
	}
	if len(events.evs) != 1 {
		t.Fatalf("%d events from the smoke alarm, want 1", len(events.evs))
	}
	a.syncErr = nil
	acked := false
	if err := p.Take(Message{Origin: "test", Topic: "fw/v1/up/sm-1/event", Payload: smoke, Ack: func() { acked = true }}); err != nil || !acked {
		t.Fatalf("Take with a working store: err %v, acked %v", err, acked)
	}
	if len(events.evs) != 2 || events.evs[1].Transition != events.evs[0].Transition || events.evs[1].Rule != events.evs[0].Rule {
		t.Fatalf("the resent smoke alarm raised %d events in all, want it raised again: %+v", len(events.evs), events.evs)
	}
}
