package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 15: with NewAckSource a message is acknowledged to the broker only
// when the handler's ack is called, after the callback returned; the
// broker redelivers, after a reconnect, every message whose ack never
// came, and none whose ack did.
func TestAckSourceAcksWhenTold(t *testing.T) {
	m := testenv.StartMosquitto(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	type msg struct {
		payload string
		ack     func()
	}
	proxy := newPubackCounter(t, strings.TrimPrefix(m.URL, "tcp://"))
	run := func(got chan<- msg) (stop func()) {
		src := NewAckSource(SourceConfig{Broker: "tcp://" + proxy.addr, ClientID: "fw-ack", Logger: quiet},
			func(_ string, payload []byte, ack func()) {
				got <- msg{string(payload), ack} // acknowledged later, elsewhere
			})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { src.Run(ctx); close(done) }()
		select {
		case <-src.Ready():
		case <-time.After(20 * time.Second):
			t.Fatal("source did not subscribe")
		}
		return func() { cancel(); <-done }
	}
	got := make(chan msg, 100)
	stop := run(got)

	// Ten QoS 1 messages from a device, written by hand (MQTT 3.1.1).
	c, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'p', 'u', 'b'})
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("CONNACK % x %v", ack, err)
	}
	for i := range 10 {
		c.Write(testenv.PublishBurst("fw/v1/up/dev-1/telemetry", fmt.Appendf(nil, `{"seq":%d}`, i), 1))
	}
	// Acknowledge the even ones, in order, from another goroutine once
	// all ten were handed over.
	var all []msg
	for range 10 {
		select {
		case g := <-got:
			all = append(all, g)
		case <-time.After(20 * time.Second):
			t.Fatalf("got %d of 10", len(all))
		}
	}
	var wg sync.WaitGroup
	var unacked []string
	wg.Go(func() {
		for i, g := range all {
			if i%2 == 0 {
				g.ack()
			}
		}
	})
	wg.Wait()
	for i, g := range all {
		if i%2 == 1 {
			unacked = append(unacked, g.payload)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "5 PUBACKs on their way to the broker", func() bool { return proxy.pubacks.Load() == 5 })
	stop()

	got2 := make(chan msg, 100)
	stop2 := run(got2)
	defer stop2()
	var again []string
	testenv.WaitFor(t, 20*time.Second, "the unacknowledged messages again", func() bool {
		for {
			select {
			case g := <-got2:
				again = append(again, g.payload)
				g.ack()
				continue
			default:
			}
			return len(again) >= len(unacked)
		}
	})
	slices.Sort(again)
	slices.Sort(unacked)
	if !slices.Equal(again, unacked) {
		t.Fatalf("redelivered %q, want exactly the unacknowledged %q", again, unacked)
	}
}

// pubackCounter is a TCP proxy in front of the broker that counts the
// PUBACK packets clients send through it (MQTT 3.1.1 fixed headers parsed
// by hand).
type pubackCounter struct {
	addr    string
	pubacks atomic.Int64
}

func newPubackCounter(t *testing.T, broker string) *pubackCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &pubackCounter{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", broker)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, b); c.Close() }()
			go func() { p.forward(c, b); b.Close() }()
		}
	}()
	return p
}

// forward copies client packets to the broker one by one, counting PUBACKs.
func (p *pubackCounter) forward(c, b net.Conn) {
	var hdr [1]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		pk := []byte{hdr[0]}
		n, mul := 0, 1
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			pk = append(pk, hdr[0])
			n += int(hdr[0]&0x7f) * mul
			mul *= 128
			if hdr[0]&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if _, err := b.Write(append(pk, body...)); err != nil {
			return
		}
		if pk[0]>>4 == 4 { // PUBACK, once the broker has it
			p.pubacks.Add(1)
		}
	}
}
