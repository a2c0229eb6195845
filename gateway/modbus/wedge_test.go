package modbus

import (
	"context"
	"errors"
	"math/rand"
	"testing"
	"time"
)

// TestMasterNeverWedges answers random requests with random bytes (with
// a plausible header half the time): the master must return within its
// timeout every time, with an error of a known kind.
func TestMasterNeverWedges(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		r := Request{Slave: byte(rng.Intn(4)), Function: byte(rng.Intn(8)), Address: uint16(rng.Intn(70000)), Value: uint16(rng.Intn(3000))}
		if rng.Intn(3) == 0 {
			r.Value = 0xFF00
		}
		frame := make([]byte, rng.Intn(300))
		rng.Read(frame)
		if r.Validate() != nil {
			continue
		}
		if len(frame) > 2 {
			frame[0] = r.Slave
			frame[1] = r.Function | byte(rng.Intn(2))<<7
		}
		m := NewMaster(&scripted{data: frame}, Config{Timeout: time.Millisecond, Baud: 1 << 20})
		done := make(chan struct{})
		var err error
		go func() { _, err = m.Do(context.Background(), r); close(done) }()
		select {
		case <-done:
			var ex *Exception
			if err != nil && !errors.As(err, &ex) && !retryable(err) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("hang: %+v % x", r, frame)
		}
	}
}
