package uitd

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

// TestWithSession: the simulated UITD against the stream layer's Session over TCP. The first commit of the
// fire fails (the alarm store is down): the Session sends nothing, the UITD retransmits after its timeout,
// the second try is committed and confirmed.
func TestWithSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var fires []string
	tries := 0
	st := new(stream.Stats)
	s := &stream.Session{
		Known: func(a gb26875.Address) bool { return a == addr },
		Dedup: stream.NewDedup(64, time.Minute),
		Stats: st,
		Commit: func(f *gb26875.Frame, u *gb26875.Upload) error {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range u.ComponentStates {
				if c.State.Has(gb26875.CompFire) {
					if tries++; tries == 1 {
						return errors.New("alarm store down")
					}
					fires = append(fires, gb26875.ComponentTypeName(c.Type)+" "+string(gb26875.Text(nil, c.Desc[:])))
				}
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		served <- stream.Read(ctx, c, stream.Options{}, func(ev *stream.Event) error { return s.Handle(ev, c) })
	}()
	u := dial(t, "tcp", ln.Addr().String(), Config{Timeout: 300 * time.Millisecond})
	serial, err := u.Fire(smoke)
	if err != nil || u.Attempts(serial) != 2 {
		t.Fatalf("fire: %v after %d attempts", err, u.Attempts(serial))
	}
	mu.Lock()
	if len(fires) != 1 || fires[0] != "点型光电感烟火灾探测器 3号楼2层走廊" {
		t.Fatalf("fires %q", fires)
	}
	mu.Unlock()
	if st.CommitFailed.Load() != 1 || st.Confirmed.Load() != 1 {
		t.Fatalf("commit failed %d, confirmed %d", st.CommitFailed.Load(), st.Confirmed.Load())
	}
	cancel()
	if err := <-served; !errors.Is(err, context.Canceled) {
		t.Fatalf("served: %v", err)
	}
}
