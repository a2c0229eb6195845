package stream

import (
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// ErrUnknownUITD ends a connection whose UITD is not known (Session.Known said no).
var ErrUnknownUITD = errors.New("gb26875 stream: unknown UITD")

// Reasons a frame is refused, in the order of Stats.Refused. The first are gb26875.Reason's names.
var Reasons = [...]string{"short", "start", "too_long", "length", "end", "checksum", "command", "type", "adu", "other", "spoofed"}

func reasonIndex(err error) int {
	r := gb26875.Reason(err)
	for i, n := range Reasons {
		if n == r {
			return i
		}
	}
	return len(Reasons) - 2 // other
}

// Stats counts what sessions did; safe for concurrent use, shared by every connection of a listener.
type Stats struct {
	Frames          atomic.Uint64 // valid frames received
	Confirmed       atomic.Uint64 // 确认 sent
	Denied          atomic.Uint64 // 否认 sent
	Retransmissions atomic.Uint64 // frames recognised as retransmissions: confirmed again, not evaluated
	CommitFailed    atomic.Uint64 // frames whose commit failed: not confirmed, so the UITD sends them again
	Unknown         atomic.Uint64 // connections ended because their UITD is not known
	Ignored         atomic.Uint64 // refused candidates found after garbage (counted by reason too, not answered)
	Refused         [len(Reasons)]atomic.Uint64
}

// Refusals returns the refused counts by reason name (for a metric), omitting zeros.
func (s *Stats) Refusals() map[string]uint64 {
	m := map[string]uint64{}
	for i := range s.Refused {
		if n := s.Refused[i].Load(); n > 0 {
			m[Reasons[i]] = n
		}
	}
	return m
}

// Session is the centre's side of one UITD connection: it answers frames as GB/T 26875.3 asks and hands
// the uploads to Commit. Its Handle method is a Handler for Read once bound to the connection's writer:
//
//	stream.Read(ctx, conn, opt, func(ev *stream.Event) error { return s.Handle(ev, conn) })
//
// Rules: a 发送数据 is confirmed only after Commit returned nil (so an alarm is acknowledged to the UITD
// only once it is committed; when Commit fails nothing is sent and the UITD retransmits); a retransmission
// (Dedup) is confirmed again without a second Commit; the first valid frame pins the connection's source
// address and a frame claiming another is refused as spoofed; refused frames are counted by reason and get a
// 否认 when they are certainly the sender's (aligned, see Reassembler.Aligned).
type Session struct {
	// Known reports whether a UITD address may connect; nil admits every address. An unknown address ends
	// the connection with ErrUnknownUITD, without an answer.
	Known func(gb26875.Address) bool
	// Commit evaluates an upload (command 2, 发送数据, or 5, 应答) and makes its effects durable. The frame and
	// upload alias buffers that are reused after it returns.
	Commit func(f *gb26875.Frame, u *gb26875.Upload) error
	// Answer receives the UITD's 确认 and 否认 of the centre's own commands; nil ignores them.
	Answer func(f *gb26875.Frame)
	Dedup  *Dedup           // nil: no retransmission detection
	Stats  *Stats           // nil: not counted
	Now    func() time.Time // default time.Now
	Loc    *time.Location   // zone of the centre's time labels (default UTC+8)

	pinned bool
	src    gb26875.Address
	upload gb26875.Upload
	frame  gb26875.Frame // HandleDatagram's
	out    []byte
}

// HandleDatagram handles one UDP datagram, which is one frame: every refusal is certainly the sender's and
// gets a 否认, except a datagram too short to hold a header (counted only). Use one Session per remote
// address, so that pinning means one UITD per address.
func (s *Session) HandleDatagram(b []byte, w io.Writer) error {
	err := gb26875.Parse(b, &s.frame)
	if errors.Is(err, gb26875.ErrShort) {
		s.stats().Refused[reasonIndex(err)].Add(1)
		return nil
	}
	ev := Event{Raw: b, Frame: &s.frame, Err: err, Aligned: true}
	return s.Handle(&ev, w)
}

// Source is the UITD address the connection is pinned to, once a valid frame has arrived.
func (s *Session) Source() (gb26875.Address, bool) { return s.src, s.pinned }

func (s *Session) label() gb26875.TimeLabel {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	loc := s.Loc
	if loc == nil {
		loc = cst
	}
	return gb26875.MakeTimeLabel(now().In(loc))
}

var cst = time.FixedZone("CST", 8*3600)

func (s *Session) stats() *Stats {
	if s.Stats == nil {
		s.Stats = new(Stats)
	}
	return s.Stats
}

func (s *Session) reply(w io.Writer, h *gb26875.Header, cmd gb26875.Command) error {
	if cmd == gb26875.CmdConfirm {
		s.out = gb26875.AppendConfirm(s.out[:0], h, s.label())
		s.stats().Confirmed.Add(1)
	} else {
		s.out = gb26875.AppendDeny(s.out[:0], h, s.label())
		s.stats().Denied.Add(1)
	}
	_, err := w.Write(s.out)
	return err
}

// Handle answers one event of the connection, writing answers to w.
func (s *Session) Handle(ev *Event, w io.Writer) error {
	st := s.stats()
	f := ev.Frame
	if ev.Err != nil {
		st.Refused[reasonIndex(ev.Err)].Add(1)
		if !ev.Aligned {
			st.Ignored.Add(1)
			return nil
		}
		return s.reply(w, &f.Header, gb26875.CmdDeny)
	}
	st.Frames.Add(1)
	if !s.pinned {
		if s.Known != nil && !s.Known(f.Src) {
			st.Unknown.Add(1)
			return ErrUnknownUITD
		}
		s.pinned, s.src = true, f.Src
	} else if f.Src != s.src {
		st.Refused[len(Reasons)-1].Add(1)
		return s.reply(w, &f.Header, gb26875.CmdDeny)
	}
	switch f.Command {
	case gb26875.CmdConfirm, gb26875.CmdDeny:
		if s.Answer != nil {
			s.Answer(f)
		}
		return nil
	case gb26875.CmdSend, gb26875.CmdReply:
	default: // a UITD does not send control commands or requests to the centre
		st.Refused[reasonIndex(gb26875.ErrCommand)].Add(1)
		return s.reply(w, &f.Header, gb26875.CmdDeny)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if f.Command == gb26875.CmdSend && s.Dedup != nil && s.Dedup.Seen(f, now()) {
		st.Retransmissions.Add(1)
		return s.reply(w, &f.Header, gb26875.CmdConfirm)
	}
	if err := s.upload.Unmarshal(f.ADU); err != nil {
		st.Refused[reasonIndex(err)].Add(1)
		if f.Command == gb26875.CmdReply {
			return nil // 应答 is not answered
		}
		return s.reply(w, &f.Header, gb26875.CmdDeny)
	}
	if s.Commit != nil {
		if err := s.Commit(f, &s.upload); err != nil {
			st.CommitFailed.Add(1)
			return nil
		}
	}
	if f.Command == gb26875.CmdReply {
		return nil
	}
	if s.Dedup != nil {
		s.Dedup.Done(f, now())
	}
	return s.reply(w, &f.Header, gb26875.CmdConfirm)
}
