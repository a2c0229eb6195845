package pipeline

import (
	"context"
	"sync/atomic"
	"time"
)

// coarseClock is the receive time of messages, to 10 ms. The hot path
// needs it per message (the stand-in for a missing device timestamp, the
// timestamp limits, liveness) but not finer; reading an atomic costs a
// nanosecond where time.Now costs tens to a hundred on a virtual machine's
// clock source.
type coarseClock struct{ ms atomic.Int64 }

const clockTick = 10 * time.Millisecond

// now returns the time in Unix ms; before run starts it reads the clock.
func (c *coarseClock) now() int64 {
	if v := c.ms.Load(); v != 0 {
		return v
	}
	return time.Now().UnixMilli()
}

// run keeps the time until ctx is done.
func (c *coarseClock) run(ctx context.Context) error {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	c.ms.Store(time.Now().UnixMilli())
	for {
		select {
		case <-ctx.Done():
			c.ms.Store(0)
			return nil
		case now := <-t.C:
			c.ms.Store(now.UnixMilli())
		}
	}
}
