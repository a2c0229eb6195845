package stream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// centreConn serves one TCP connection with a Session and returns the client side.
func centreConn(t *testing.T, s *Session) (net.Conn, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- Read(ctx, c, Options{}, func(ev *Event) error { return s.Handle(ev, c) })
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, done
}

// answers reads n answers from c.
func answers(t *testing.T, c net.Conn, n int) []gb26875.Header {
	t.Helper()
	var r Reassembler
	var f gb26875.Frame
	var out []gb26875.Header
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(out) < n {
		if _, err := r.Fill(c); err != nil {
			t.Fatalf("after %d answers: %v", len(out), err)
		}
		for {
			raw, err := r.Next(&f)
			if raw == nil && err == nil {
				break
			}
			if err != nil {
				t.Fatalf("bad answer: %v", err)
			}
			out = append(out, f.Header)
		}
	}
	return out
}

// TestSession drives a Session through a real TCP connection with hand-written frames: confirm after
// commit, a retransmission confirmed again but committed once, a commit failure left unanswered (so the
// UITD sends again) and then committed, a 否认 for an aligned bad frame and silence for one after garbage,
// a spoofed source refused.
func TestSession(t *testing.T) {
	ex := frame(t, "frames/worked_example.hex")
	fire := frame(t, "frames/type01_system_fire.hex")
	var mu sync.Mutex
	var committed []uint16
	fail := true
	st := new(Stats)
	s := &Session{
		Dedup: NewDedup(64, time.Minute),
		Stats: st,
		Commit: func(f *gb26875.Frame, u *gb26875.Upload) error {
			mu.Lock()
			defer mu.Unlock()
			if f.Serial == 2 && fail { // the alarm store is down for the first try of serial 2
				fail = false
				return errors.New("store down")
			}
			committed = append(committed, f.Serial)
			return nil
		},
	}
	c, _ := centreConn(t, s)
	write := func(b ...[]byte) {
		if _, err := c.Write(bytes.Join(b, nil)); err != nil {
			t.Fatal(err)
		}
	}
	write(ex, ex) // the second is a retransmission after a lost 确认
	got := answers(t, c, 2)
	write(fire) // commit fails: no answer
	write(fire) // retransmitted: committed now
	got = append(got, answers(t, c, 1)...)
	spoof := bytes.Clone(fire)
	spoof[12]++ // source 02 02 03 04 05 06, checksum recomputed
	spoof = fixSum(spoof)
	bad := frame(t, "bad/checksum.hex")
	write(spoof, bad, []byte("noise@"), bad)
	got = append(got, answers(t, c, 2)...)
	want := []struct {
		cmd    gb26875.Command
		serial uint16
	}{{3, 1}, {3, 1}, {3, 2}, {6, 2}, {6, 15}}
	if len(got) != len(want) {
		t.Fatalf("answers %+v", got)
	}
	for i, w := range want {
		dst := gb26875.Address{1, 2, 3, 4, 5, 6}
		if i == 3 {
			dst[0] = 2 // the 否认 of the spoofed frame goes to the address it claimed
		}
		if got[i].Command != w.cmd || got[i].Serial != w.serial || got[i].Dst != dst {
			t.Errorf("answer %d: %+v, want %+v", i, got[i], w)
		}
	}
	mu.Lock()
	if len(committed) != 2 || committed[0] != 1 || committed[1] != 2 {
		t.Errorf("committed %v, want [1 2]", committed)
	}
	mu.Unlock()
	// The last bad frame follows garbage ("@" + "@@" is a misaligned candidate too): counted, not answered.
	testenv.WaitFor(t, 5*time.Second, "the misaligned candidates to be counted", func() bool { return st.Ignored.Load() >= 2 })
	r := st.Refusals()
	if st.Retransmissions.Load() != 1 || st.CommitFailed.Load() != 1 || r["spoofed"] != 1 || r["checksum"] != 2 || r["end"] != 1 || st.Ignored.Load() != 2 ||
		st.Confirmed.Load() != 3 || st.Denied.Load() != 2 {
		t.Errorf("stats: retrans %d, commit failed %d, refused %v, ignored %d, confirmed %d, denied %d",
			st.Retransmissions.Load(), st.CommitFailed.Load(), r, st.Ignored.Load(), st.Confirmed.Load(), st.Denied.Load())
	}
	if src, ok := s.Source(); !ok || src != (gb26875.Address{1, 2, 3, 4, 5, 6}) {
		t.Errorf("pinned %v %v", src, ok)
	}
}

func fixSum(b []byte) []byte {
	n := len(b) - gb26875.TrailerLen
	b[n] = gb26875.Checksum(b[2:n])
	return b
}

// TestSessionUnknown: a UITD the ledger does not know is cut off without an answer.
func TestSessionUnknown(t *testing.T) {
	st := new(Stats)
	s := &Session{Stats: st, Known: func(a gb26875.Address) bool { return a == gb26875.Address{9, 9, 9, 9, 9, 9} }}
	c, done := centreConn(t, s)
	if _, err := c.Write(frame(t, "frames/worked_example.hex")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnknownUITD) || st.Unknown.Load() != 1 || st.Confirmed.Load() != 0 {
			t.Fatalf("%v, unknown %d", err, st.Unknown.Load())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connection of an unknown UITD not ended")
	}
}

// BenchmarkSession: a component-state frame through Session.Handle (dedup check, decode, commit, record,
// 确认) with a new serial number each time.
func BenchmarkSession(b *testing.B) {
	raw := frame(b, "frames/worked_example.hex")
	s := &Session{Dedup: NewDedup(1024, time.Minute), Commit: func(*gb26875.Frame, *gb26875.Upload) error { return nil }}
	var f gb26875.Frame
	if err := gb26875.Parse(raw, &f); err != nil {
		b.Fatal(err)
	}
	ev := Event{Raw: raw, Frame: &f, Aligned: true}
	var sink bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		f.Serial++
		sink.Reset()
		if err := s.Handle(&ev, &sink); err != nil {
			b.Fatal(err)
		}
	}
}
