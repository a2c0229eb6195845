package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestIdleMemory (FW_IDLE_MEM=n to run) connects n clients to the embedded
// broker, each publishing one QoS 1 message through an InlineSource whose
// handler uses FW_IDLE_DEPTH bytes of stack (the pipeline's depth), then
// idle; it logs the runtime's figures per connection: stacks, heap,
// goroutines, before and after garbage collections (issue 19).
func TestIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FW_IDLE_MEM"))
	if n == 0 {
		t.Skip("FW_IDLE_MEM=n measures n idle connections")
	}
	depth, _ := strconv.Atoi(os.Getenv("FW_IDLE_DEPTH"))
	src := NewInlineSource(func(topic string, payload []byte) { deep(depth / 1024) })
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks: []mochi.Hook{src}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go src.Run(ctx)
	<-src.Ready()

	runtime.GC()
	m0 := readIdleMetrics()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := idleConn(addr, fmt.Sprintf("dev-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second)
	m1 := readIdleMetrics()
	m1.log(t, "idle", m0, n)
	for i := range 4 {
		runtime.GC()
		m := readIdleMetrics()
		m.log(t, fmt.Sprintf("after GC %d", i+1), m0, n)
	}
	if p := os.Getenv("FW_IDLE_PROF"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
}

//go:noinline
func deep(k int) byte {
	var buf [1024]byte
	buf[k%1024] = byte(k)
	if k <= 0 {
		return buf[0]
	}
	return deep(k-1) + buf[k%1024]
}

type idleMetrics struct{ stacks, heap, goroutines, rss float64 }

func readIdleMetrics() idleMetrics {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	var rss float64
	if raw, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, res int
		fmt.Sscan(string(raw), &size, &res)
		rss = float64(res * os.Getpagesize())
	}
	return idleMetrics{float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64()), float64(s[2].Value.Uint64()), rss}
}

func (m idleMetrics) log(t *testing.T, what string, m0 idleMetrics, n int) {
	t.Logf("%s: per connection: stacks %.2f KiB, heap objects %.2f KiB, goroutines %.2f, RSS %.2f KiB", what,
		(m.stacks-m0.stacks)/float64(n)/1024, (m.heap-m0.heap)/float64(n)/1024, (m.goroutines-m0.goroutines)/float64(n), (m.rss-m0.rss)/float64(n)/1024)
}

func idleConn(addr, id string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	pkt := func(h byte, body []byte) []byte { return append([]byte{h, byte(len(body))}, body...) }
	connect := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0x02, 0x58}, byte(len(id)>>8), byte(len(id)))
	connect = append(connect, id...)
	topic := "fw/v1/up/" + id + "/telemetry"
	pub := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	pub = append(append(pub, topic...), 0, 1)
	pub = append(pub, `{"ts":1,"temp_c":[21.5]}`...)
	var ack [4]byte
	if _, err := c.Write(pkt(0x10, connect)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 {
		return nil, fmt.Errorf("CONNACK % x: %v", ack, err)
	}
	if _, err := c.Write(pkt(0x32, pub)); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x40 {
		return nil, fmt.Errorf("PUBACK % x: %v", ack, err)
	}
	return c, nil
}
