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
	"github.com/firewatch-iot/firewatch/internal/testenv"
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

type toAddr struct {
	pc net.PacketConn
	to net.Addr
}

func (w toAddr) Write(b []byte) (int, error) { return w.pc.WriteTo(b, w.to) }

// TestWithSessionUDP: the simulated UITD over UDP against Session.HandleDatagram (one Session per remote
// address): a fire is committed and confirmed; a damaged datagram gets a 否认.
func TestWithSessionUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var fires int
	st := new(stream.Stats)
	go func() {
		sessions := map[string]*stream.Session{}
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s := sessions[from.String()]
			if s == nil {
				s = &stream.Session{Stats: st, Dedup: stream.NewDedup(64, time.Minute), Commit: func(f *gb26875.Frame, u *gb26875.Upload) error {
					mu.Lock()
					defer mu.Unlock()
					if u.Type == gb26875.TypeComponentState && u.ComponentStates[0].State.Has(gb26875.CompFire) {
						fires++
					}
					return nil
				}}
				sessions[from.String()] = s
			}
			s.HandleDatagram(buf[:n], toAddr{pc, from})
		}
	}()
	u := dial(t, "udp", pc.LocalAddr().String(), Config{Timeout: time.Second})
	if _, err := u.Fire(smoke); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if fires != 1 {
		t.Fatalf("%d fires committed", fires)
	}
	mu.Unlock()
	// A datagram with a wrong checksum: the centre answers 否认 (the UITD's reader ignores a 否认 nobody
	// waits for); it is counted.
	bad := []byte("@@\x07\x00\x01\x01\x31\x16\x0d\x01\x0c\x1a\x01\x02\x03\x04\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00##")
	if err := u.Garbage(bad); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the 否认 of the damaged datagram", func() bool { return st.Denied.Load() > 0 })
	if r := st.Refusals(); r["checksum"] != 1 {
		t.Fatalf("refusals %v", r)
	}
}
