package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// ErrIdle ends Read when OnIdle refuses to wait any longer.
var ErrIdle = errors.New("gb26875 stream: connection idle")

// Options configure Read.
type Options struct {
	// IdleTimeout is how long a read may wait for bytes; 0 waits for ever. The standard sets no keep-alive
	// (GB 50440's patrol period of at most 2 h is the centre's business, not the connection's).
	IdleTimeout time.Duration
	// OnIdle is called when nothing arrived for IdleTimeout. Returning nil keeps waiting (after, say,
	// sending a read to the UITD); an error ends Read with it. Nil: end with ErrIdle.
	OnIdle func() error
}

// Event is what Read hands to the Handler: a frame (Raw != nil, Err == nil), a frame refused whole
// (Raw != nil, Err != nil) or a refused candidate (Raw == nil, Err != nil); see Reassembler.Next. Aligned is
// Reassembler.Aligned: a refused candidate deserves a 否认 only when it is aligned. Raw and Frame are
// valid only during the call.
type Event struct {
	Raw     []byte
	Frame   *gb26875.Frame
	Err     error
	Aligned bool
}

// Handler receives every Event of a connection. An error from it ends Read with that error.
type Handler func(ev *Event) error

// Read reads frames from conn until it ends (nil at EOF), ctx is cancelled (ctx.Err()), the handler fails
// or the connection goes idle. It does not close conn.
func Read(ctx context.Context, conn net.Conn, opt Options, handle Handler) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if opt.IdleTimeout == 0 {
		conn.SetReadDeadline(time.Time{}) // clear a deadline left by an earlier user of conn
	}
	r := new(Reassembler)
	var f gb26875.Frame
	ev := Event{Frame: &f}
	for {
		if opt.IdleTimeout > 0 {
			conn.SetReadDeadline(time.Now().Add(opt.IdleTimeout))
		}
		// After the deadline is set: a cancellation from now on is seen by the AfterFunc's deadline.
		if err := ctx.Err(); err != nil {
			return err
		}
		_, rerr := r.Fill(conn)
		for {
			raw, err := r.Next(&f)
			if raw == nil && err == nil {
				break
			}
			ev.Raw, ev.Err, ev.Aligned = raw, err, r.Aligned()
			if herr := handle(&ev); herr != nil {
				return herr
			}
		}
		switch {
		case rerr == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if opt.OnIdle == nil {
				return ErrIdle
			}
			if err := opt.OnIdle(); err != nil {
				return err
			}
		case errors.Is(rerr, io.EOF):
			return nil
		default:
			return rerr
		}
	}
}
