package stream

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// TestSessionModel drives a Session with a seeded random mix of new frames, retransmissions, damaged
// frames and commit failures, and checks the promises that matter for alarms:
//
//   - every 确认 of a 发送数据 follows a successful commit of that frame (nothing acknowledged is lost);
//   - a frame is committed at most once however often it is retransmitted (evaluated once);
//   - a frame whose commit failed is committed when it comes back;
//   - every answer echoes the serial number it answers.
//
// GB26875_SEED reproduces a run.
func TestSessionModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GB26875_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	type key struct {
		serial uint16
		adu    string
	}
	committed := map[key]int{}
	failNext := false
	s := &Session{
		Dedup: NewDedup(4096, time.Hour),
		Commit: func(f *gb26875.Frame, u *gb26875.Upload) error {
			if failNext {
				return errors.New("store down")
			}
			committed[key{f.Serial, string(f.ADU)}]++
			return nil
		},
		Now: func() time.Time { return time.Unix(1e9, 0) },
	}
	uitd := gb26875.Address{1, 2, 3, 4, 5, 6}
	var sent [][]byte // frames sent so far, for retransmissions
	var serial uint16
	var out bytes.Buffer
	var f, ans gb26875.Frame
	for step := range 5000 {
		var raw []byte
		switch op := rng.IntN(10); {
		case op < 5 || len(sent) == 0: // a new frame: a component state with a random point and state
			serial++
			adu := []byte{2, 1, 1, 1, 42, byte(rng.IntN(256)), byte(rng.IntN(4)), 0, 0, byte(rng.IntN(8)), 0}
			adu = append(adu, make([]byte, 31)...)
			adu = append(adu, byte(rng.IntN(60)), 0, 12, 1, 12, 26)
			h := gb26875.Header{Serial: serial, Major: 1, Src: uitd, Command: gb26875.CmdSend}
			raw = gb26875.AppendFrame(nil, &h, adu)
			sent = append(sent, raw)
		case op < 8: // a retransmission of an earlier frame, possibly with a fresh packet time
			raw = bytes.Clone(sent[rng.IntN(len(sent))])
			if rng.IntN(2) == 0 {
				raw[6] = byte(rng.IntN(60))
				n := len(raw) - gb26875.TrailerLen
				raw[n] = gb26875.Checksum(raw[2:n])
			}
		default: // a damaged copy
			raw = bytes.Clone(sent[rng.IntN(len(sent))])
			raw[2+rng.IntN(len(raw)-4)] ^= byte(1 + rng.IntN(255))
		}
		failNext = rng.IntN(8) == 0
		ferr := gb26875.Parse(raw, &f)
		var fcopy gb26875.Frame
		if ferr == nil {
			fcopy = f
			fcopy.ADU = bytes.Clone(f.ADU)
		}
		out.Reset()
		if err := s.Handle(&Event{Raw: raw, Frame: &f, Err: ferr, Aligned: true}, &out); err != nil {
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		if out.Len() == 0 {
			if ferr == nil && !failNext && f.Src == uitd {
				t.Fatalf("seed %d step %d: valid frame not answered", seed, step)
			}
			continue
		}
		if err := gb26875.Parse(out.Bytes(), &ans); err != nil {
			t.Fatalf("seed %d step %d: answer %v", seed, step, err)
		}
		if ans.Serial != f.Serial {
			t.Fatalf("seed %d step %d: answer serial %d to %d", seed, step, ans.Serial, f.Serial)
		}
		if ans.Command == gb26875.CmdConfirm {
			if ferr != nil {
				t.Fatalf("seed %d step %d: confirmed a refused frame (%v)", seed, step, ferr)
			}
			k := key{fcopy.Serial, string(fcopy.ADU)}
			if committed[k] != 1 {
				t.Fatalf("seed %d step %d: confirmed serial %d committed %d times", seed, step, k.serial, committed[k])
			}
		}
	}
	for k, n := range committed {
		if n != 1 {
			t.Fatalf("seed %d: serial %d committed %d times", seed, k.serial, n)
		}
	}
}
