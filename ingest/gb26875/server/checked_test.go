package server

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// refuser is a CheckedHandler that refuses every message while refuse is set (the stream unreachable in
// cluster mode) and records those it takes.
type refuser struct {
	recorder
	refuse  atomic.Bool
	refused atomic.Int64
}

func (r *refuser) HandleChecked(topic string, payload []byte) error {
	if r.refuse.Load() {
		r.refused.Add(1)
		return errors.New("not taken")
	}
	r.recorder.Handle(topic, payload)
	return nil
}

// TestRefusedNotConfirmed: a frame whose message the handler refuses is not confirmed and not remembered as
// done; the UITD's retransmission, once the handler takes messages again, is evaluated and confirmed.
func TestRefusedNotConfirmed(t *testing.T) {
	h := &refuser{}
	h.refuse.Store(true)
	s, _ := startServer(t, nil, &h.recorder)
	s.h, s.checked = h, h // the server as New makes it with a CheckedHandler
	c := dial(t, s)
	f := hexFile(t, "frames/worked_example.hex")
	write(t, c, f)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !os.IsTimeout(err) {
		t.Fatalf("a refused frame was answered: %d bytes, %v", n, err)
	}
	if n := h.refused.Load(); n != 1 {
		t.Errorf("%d messages offered after the first refusal, want 1 (the rest of the upload held back)", n)
	}
	if got := s.stats.CommitFailed.Load(); got != 1 {
		t.Errorf("commit failures counted %d, want 1", got)
	}
	h.refuse.Store(false)
	write(t, c, f) // the UITD's retransmission (§6.5)
	readAnswer(t, c, 1, 3)
	if got := h.last("fa-1-0105"); got == "" {
		t.Error("the retransmission was not evaluated")
	}
}

// TestCheckedHandlerFromNew: New recognises a CheckedHandler.
func TestCheckedHandlerFromNew(t *testing.T) {
	var h Handler = CheckedHandlerFunc(func(string, []byte) error { return nil })
	if _, ok := h.(CheckedHandler); !ok {
		t.Fatal("CheckedHandlerFunc is not a CheckedHandler")
	}
}
