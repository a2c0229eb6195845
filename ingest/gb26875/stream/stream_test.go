package stream

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

var comment = regexp.MustCompile(`#[^\n]*`)

// frame reads a hand-written frame of ../testdata.
func frame(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(comment.ReplaceAllString(string(raw), "")), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type event struct {
	raw     []byte
	serial  uint16
	err     error
	aligned bool
}

// drain writes in into a Reassembler in chunks of the given sizes (cycled) and collects what Next returns.
func drain(t testing.TB, in []byte, chunks []int) (out []event, r *Reassembler) {
	r = new(Reassembler)
	var f gb26875.Frame
	for i := 0; len(in) > 0; i++ {
		n := min(chunks[i%len(chunks)], len(in))
		w := r.Write(in[:n])
		if w == 0 {
			t.Fatalf("buffer full with %d buffered", r.Buffered())
		}
		in = in[w:]
		for {
			raw, err := r.Next(&f)
			if raw == nil && err == nil {
				break
			}
			out = append(out, event{bytes.Clone(raw), f.Serial, err, r.Aligned()})
		}
		if r.Buffered() > gb26875.MaxFrameLen {
			t.Fatalf("%d bytes buffered after draining", r.Buffered())
		}
	}
	return out, r
}

func frames(out []event) (serials []uint16) {
	for _, e := range out {
		if e.err == nil {
			serials = append(serials, e.serial)
		}
	}
	return serials
}

func TestReassembler(t *testing.T) {
	ex := frame(t, "frames/worked_example.hex")       // serial 1
	fire := frame(t, "frames/type01_system_fire.hex") // serial 2
	ka := frame(t, "frames/keepalive.hex")            // serial 15
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	badSum := bytes.Clone(fire)
	badSum[len(badSum)-3]++
	cases := []struct {
		name    string
		in      []byte
		want    []uint16
		errs    []error
		aligned []bool // of the errors
		skipped uint64
	}{
		{"one", ex, []uint16{1}, nil, nil, 0},
		{"three in one read", cat(ex, fire, ka), []uint16{1, 2, 15}, nil, nil, 0},
		// "@" + fire's "@@" is a start one byte early (its length field reads 3072): the real start is found.
		{"garbage between", cat([]byte("\x00\xffAT+OK\r\n"), ex, []byte("##@x@"), fire, []byte("junk")), []uint16{1, 2},
			[]error{gb26875.ErrTooLong}, []bool{false}, 9 + 5 + 4},
		{"@@ in garbage", cat([]byte("@@@@\x01"), ex), []uint16{1},
			[]error{gb26875.ErrEnd, gb26875.ErrEnd, gb26875.ErrEnd}, []bool{true, false, false}, 5},
		{"bad checksum then good", cat(ex, badSum, fire), []uint16{1, 2}, []error{gb26875.ErrChecksum}, []bool{true}, uint64(len(badSum))},
		{"too long", cat(frame(t, "bad/too_long.hex"), ka), []uint16{15}, []error{gb26875.ErrTooLong}, []bool{true}, 30},
		{"unknown command", cat(frame(t, "bad/command.hex"), ka), []uint16{15}, []error{gb26875.ErrCommand}, []bool{true}, 0},
		{"frame inside a broken frame", cat([]byte("@@\x00\x00"), ex[:10], ka), []uint16{15}, nil, nil, 0},
	}
	for _, c := range cases {
		for _, chunks := range [][]int{{len(c.in)}, {1}, {7, 3, 64}, {29, 1}} {
			out, r := drain(t, c.in, chunks)
			var errs []error
			var aligned []bool
			for _, e := range out {
				if e.err != nil {
					errs, aligned = append(errs, e.err), append(aligned, e.aligned)
				}
			}
			if got := frames(out); !equal(got, c.want) {
				t.Errorf("%s, chunks %v: frames %v, want %v", c.name, chunks, got, c.want)
			}
			if c.name == "frame inside a broken frame" {
				continue // the candidates' errors depend on the bytes; finding the frame is what counts
			}
			if len(errs) != len(c.errs) {
				t.Errorf("%s, chunks %v: errors %v, want %v", c.name, chunks, errs, c.errs)
			} else {
				for i := range errs {
					if !errors.Is(errs[i], c.errs[i]) || aligned[i] != c.aligned[i] {
						t.Errorf("%s, chunks %v: error %d %v aligned %v, want %v %v", c.name, chunks, i, errs[i], aligned[i], c.errs[i], c.aligned[i])
					}
				}
			}
			if r.Skipped() != c.skipped {
				t.Errorf("%s, chunks %v: skipped %d, want %d", c.name, chunks, r.Skipped(), c.skipped)
			}
		}
	}
}

func equal(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReassemblerBounded: a megabyte of garbage (with starts in it) never grows the buffer, and the frame
// after it is found.
func TestReassemblerBounded(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GB26875_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	junk := make([]byte, 1<<20)
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
		if junk[i] == '#' || junk[i] == '@' && rng.IntN(8) != 0 {
			junk[i] = 0x55 // keep a few starts, no ends: no accidental frame
		}
	}
	out, r := drain(t, append(junk, frame(t, "frames/worked_example.hex")...), []int{4096, 1000, 1})
	if got := frames(out); !equal(got, []uint16{1}) {
		t.Fatalf("seed %d (GB26875_SEED): frames %v", seed, got)
	}
	if r.Skipped() < 1<<19 {
		t.Fatalf("seed %d: skipped only %d", seed, r.Skipped())
	}
}

func TestDedup(t *testing.T) {
	d := NewDedup(2, time.Minute)
	var a, b gb26875.Frame
	if err := gb26875.Parse(frame(t, "frames/worked_example.hex"), &a); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	if d.Seen(&a, now) {
		t.Fatal("seen before recorded")
	}
	d.Done(&a, now)
	retrans := a
	retrans.Time[0]++ // a refreshed send time is still the same frame
	if !d.Seen(&retrans, now.Add(10*time.Second)) {
		t.Fatal("retransmission not recognised")
	}
	if d.Seen(&a, now.Add(2*time.Minute)) {
		t.Fatal("remembered past the ttl")
	}
	other := a
	other.ADU = bytes.Clone(a.ADU)
	other.ADU[10] ^= 2 // same serial, different content (the UITD restarted its numbering)
	if d.Seen(&other, now) {
		t.Fatal("different content taken for a retransmission")
	}
	otherSrc := a
	otherSrc.Src[0]++
	if d.Seen(&otherSrc, now) {
		t.Fatal("another UITD's frame taken for a retransmission")
	}
	// Capacity 2: recording two more forgets the first.
	b = a
	b.Serial = 2
	d.Done(&b, now)
	b.Serial = 3
	d.Done(&b, now)
	if d.Seen(&a, now) || d.Len() != 2 {
		t.Fatalf("capacity not kept: %d", d.Len())
	}
}

// TestLoopback runs Read on a real TCP connection: the client writes frames in awkward pieces with
// garbage between them, the server confirms each valid frame and denies the refused ones, and a
// retransmission is confirmed again but evaluated once.
func TestLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ex := frame(t, "frames/worked_example.hex")
	fire := frame(t, "frames/type01_system_fire.hex")
	bad := frame(t, "bad/checksum.hex")

	evaluated := make(chan uint16, 16)
	idle := make(chan struct{}, 4)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		dd := NewDedup(64, time.Minute)
		var out []byte
		opt := Options{IdleTimeout: 200 * time.Millisecond, OnIdle: func() error { idle <- struct{}{}; return nil }}
		done <- Read(ctx, c, opt, func(ev *Event) error {
			now := time.Now()
			tl := gb26875.MakeTimeLabel(now)
			f := ev.Frame
			switch {
			case ev.Err != nil && !ev.Aligned:
				return nil // an @@ in garbage: counted, not answered
			case ev.Err != nil:
				out = gb26875.AppendDeny(out[:0], &f.Header, tl)
			default:
				if !dd.Seen(f, now) {
					evaluated <- f.Serial
					dd.Done(f, now)
				}
				out = gb26875.AppendConfirm(out[:0], &f.Header, tl)
			}
			_, err := c.Write(out)
			return err
		})
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stream := bytes.Join([][]byte{[]byte("garbage@"), ex[:5], ex[5:40], ex[40:], bad, fire, ex}, nil)
	go func() {
		for len(stream) > 0 {
			n := min(13, len(stream))
			c.Write(stream[:n])
			stream = stream[n:]
		}
	}()
	// Answers: confirm 1, deny 15, confirm 2, confirm 1 (the retransmission). The "@" before the first frame
	// makes a misaligned candidate, which is not answered.
	var r Reassembler
	var f gb26875.Frame
	want := []struct {
		cmd    gb26875.Command
		serial uint16
	}{{gb26875.CmdConfirm, 1}, {gb26875.CmdDeny, 15}, {gb26875.CmdConfirm, 2}, {gb26875.CmdConfirm, 1}}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < len(want); {
		if _, err := r.Fill(c); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		for {
			raw, err := r.Next(&f)
			if raw == nil && err == nil {
				break
			}
			if err != nil || f.Command != want[i].cmd || f.Serial != want[i].serial || f.Dst != (gb26875.Address{1, 2, 3, 4, 5, 6}) {
				t.Fatalf("answer %d: %+v %v, want %+v", i, f.Header, err, want[i])
			}
			i++
		}
	}
	if a, b := <-evaluated, <-evaluated; a != 1 || b != 2 || len(evaluated) != 0 {
		t.Fatalf("evaluated %d, %d and %d more", a, b, len(evaluated))
	}
	<-idle // nothing more is sent: the idle hook runs and Read keeps waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read ended with %v", err)
	}
}

// TestReadIdleEnds: without OnIdle an idle connection ends Read with ErrIdle; EOF ends it with nil.
func TestReadIdleEnds(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if err := Read(context.Background(), a, Options{IdleTimeout: 20 * time.Millisecond}, nil); !errors.Is(err, ErrIdle) {
		t.Fatalf("idle: %v", err)
	}
	go b.Close()
	if err := Read(context.Background(), a, Options{}, nil); err != nil {
		t.Fatalf("EOF: %v", err)
	}
}

// FuzzReassemble: arbitrary bytes in arbitrary pieces never panic or overflow the buffer, give the same
// result whatever the pieces, and a valid frame after garbage without '@' is always found.
func FuzzReassemble(f *testing.F) {
	ex := frame(f, "frames/worked_example.hex")
	f.Add([]byte("junk"), uint8(1), uint8(7))
	f.Add(append([]byte("@@\x01\x00"), ex...), uint8(13), uint8(2))
	f.Add(bytes.Repeat([]byte("@"), 40), uint8(3), uint8(29))
	f.Add(frame(f, "bad/too_long.hex"), uint8(30), uint8(1))
	f.Fuzz(func(t *testing.T, junk []byte, c1, c2 uint8) {
		if len(junk) > 8192 {
			return
		}
		in := append(bytes.Clone(junk), ex...)
		whole, _ := drain(t, in, []int{len(in)})
		pieces, _ := drain(t, in, []int{int(c1)%64 + 1, int(c2)%64 + 1})
		if len(whole) != len(pieces) {
			t.Fatalf("%d events whole, %d in pieces", len(whole), len(pieces))
		}
		for i := range whole {
			if !bytes.Equal(whole[i].raw, pieces[i].raw) || (whole[i].err == nil) != (pieces[i].err == nil) {
				t.Fatalf("event %d differs: %+v vs %+v", i, whole[i], pieces[i])
			}
		}
		if !bytes.Contains(junk, []byte("@")) {
			if got := frames(whole); len(got) == 0 || got[len(got)-1] != 1 || !bytes.Equal(whole[len(whole)-1].raw, ex) {
				t.Fatalf("frame after garbage not found: %v", got)
			}
		}
	})
}

// BenchmarkReassemble: component-state frames through Write and Next, 13 frames per 1 KiB write.
func BenchmarkReassemble(b *testing.B) {
	ex := frame(b, "frames/worked_example.hex")
	in := bytes.Repeat(ex, 13)
	var r Reassembler
	var f gb26875.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		r.Write(in)
		for n := 0; ; n++ {
			raw, err := r.Next(&f)
			if raw == nil && err == nil {
				if n != 13 {
					b.Fatalf("%d frames", n)
				}
				break
			}
		}
	}
}
