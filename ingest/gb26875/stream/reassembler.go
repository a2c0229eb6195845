package stream

import (
	"bytes"
	"errors"
	"io"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// BufferSize is the Reassembler's fixed buffer: room for the longest frame and as much again for the read
// that completes it.
const BufferSize = 2 * gb26875.MaxFrameLen

var start = []byte("@@")

// Reassembler cuts a byte stream into frames. Its buffer is fixed (BufferSize), so a peer cannot make it
// grow: anything that is not a frame is skipped and counted. Use: Fill, then Next until it returns no frame
// and no error, then Fill again. A frame returned by Next aliases the buffer until the next Fill.
type Reassembler struct {
	buf        [BufferSize]byte
	head, tail int    // unconsumed bytes are buf[head:tail]
	skipped    uint64 // bytes discarded: garbage and refused candidates
	misaligned bool   // bytes were skipped since the last frame (or the start of the stream)
	aligned    bool   // what Aligned reports
}

// Skipped is the number of bytes discarded so far (garbage between frames and the bytes of refused
// candidates), not counting frames refused whole.
func (r *Reassembler) Skipped() uint64 { return r.skipped }

// Aligned reports whether what Next returned last began exactly where the previous frame ended (or at the
// start of the stream). Only then is a refused candidate certainly the sender's frame, worth a 否认; a
// candidate after garbage may be an `@@` inside the garbage.
func (r *Reassembler) Aligned() bool { return r.aligned }

// Buffered is the number of bytes held that are not yet a frame.
func (r *Reassembler) Buffered() int { return r.tail - r.head }

// Fill reads once from rd into the free part of the buffer (after moving what is left to the front). It
// returns what rd.Read returned. Call Next until it reports nothing more before calling Fill again.
func (r *Reassembler) Fill(rd io.Reader) (int, error) {
	r.compact()
	if r.tail == len(r.buf) {
		// Cannot happen when Next is drained first: a frame candidate never needs more than MaxFrameLen.
		return 0, errors.New("gb26875 stream: buffer full (Next not drained)")
	}
	n, err := rd.Read(r.buf[r.tail:])
	r.tail += n
	return n, err
}

// Write appends as much of p as fits, for callers that already hold the bytes (datagrams, tests), and
// returns how much that was; the caller drains Next and writes the rest.
func (r *Reassembler) Write(p []byte) int {
	r.compact()
	n := copy(r.buf[r.tail:], p)
	r.tail += n
	return n
}

func (r *Reassembler) compact() {
	if r.head > 0 {
		r.tail = copy(r.buf[:], r.buf[r.head:r.tail])
		r.head = 0
	}
}

func (r *Reassembler) skip(n int) {
	if n > 0 {
		r.head += n
		r.skipped += uint64(n)
		r.misaligned = true
	}
}

// Next returns the next frame in the buffer:
//
//   - raw != nil, err == nil: a valid frame, parsed into f.
//   - raw != nil, err is gb26875.ErrCommand: a whole frame with a good checksum and an unknown command; it
//     is consumed. f.Header is filled for the 否认.
//   - raw == nil, err != nil: a candidate at `@@` that is not a frame (gb26875.ErrChecksum, ErrEnd,
//     ErrTooLong). f.Header holds what the candidate's header said (untrusted). Only its first byte is
//     consumed, so that a real frame starting inside the candidate (`@@@`, or a start inside a damaged
//     frame) is still found.
//   - raw == nil, err == nil: more bytes are needed.
func (r *Reassembler) Next(f *gb26875.Frame) (raw []byte, err error) {
	b := r.buf[r.head:r.tail]
	i := bytes.Index(b, start)
	if i < 0 {
		// Keep a trailing '@': it may be the first half of the next start.
		keep := 0
		if len(b) > 0 && b[len(b)-1] == '@' {
			keep = 1
		}
		r.skip(len(b) - keep)
		return nil, nil
	}
	r.skip(i)
	b = b[i:]
	n := gb26875.Len(b)
	if n == 0 {
		return nil, nil // the header is not all here yet
	}
	r.aligned = !r.misaligned
	if n > gb26875.MaxFrameLen {
		if len(b) < gb26875.MinFrameLen {
			// Parse needs a whole minimal frame to report the header; near
			// the end of the buffer b may hold less (FuzzReassemble found
			// the slice past its capacity). The next Write compacts.
			return nil, nil
		}
		err = gb26875.Parse(b[:gb26875.MinFrameLen], f)
		r.skip(1)
		return nil, err
	}
	if len(b) < n {
		return nil, nil
	}
	err = gb26875.Parse(b[:n], f)
	if err != nil && !errors.Is(err, gb26875.ErrCommand) {
		// ErrEnd, ErrChecksum: not a frame where it claims to be; resynchronise one byte on.
		r.skip(1)
		return nil, err
	}
	r.head += n
	r.misaligned = false
	return b[:n:n], err
}
