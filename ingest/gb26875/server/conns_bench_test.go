package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// benchLedger is a ledger of n UITDs (addresses 000000000001…), each with one listed smoke detector.
func benchLedger(b *testing.B, n int) *devices.Ledger {
	var sb strings.Builder
	sb.WriteString("places:\n  \"450204\": 柳州市柳南区\n  \"450204002\": 潭西街道\n  \"450204002003\": 鹅山村\nstations:\n  - id: st\n    name: 站\n    grids: [\"450204002\"]\n    endpoint: http://127.0.0.1:1/d\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  - {id: uitd-%d, kind: facility, grid: \"450204002003\", address: 楼%d 消防控制室}\n", i, i)
		fmt.Fprintf(&sb, "  - {id: fa-%d, kind: facility, grid: \"450204002003\", address: 楼%d 走廊}\n", i, i)
	}
	sb.WriteString("uitds:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  - {address: \"%012x\", device: uitd-%d, points: [{system: 1, system_addr: 1, type: 42, addr: 0x105, device: fa-%d}]}\n", i+1, i, i)
	}
	l, err := devices.ParseLedger("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func benchAddr(i int) gb26875.Address {
	var a gb26875.Address
	for k, v := 5, uint64(i+1); k >= 0; k, v = k-1, v>>8 {
		a[k] = byte(v)
	}
	return a
}

// BenchmarkConnections: n UITDs connected at once over real TCP sockets (loopback), sending their listed
// smoke detector's fire alarm and return to normal in turn: one frame at a time from connection after
// connection (the latency with n connections open), or all n sending as fast as the 确认 come back (the
// saturated throughput; its latency is queueing). ns/op is the wall time per frame; p99-µs is the 99th percentile of frame → 确认 (the
// pipeline is a no-op here: BenchmarkPipeline in cmd/firewatch measures it); heap-B/conn is the heap and
// stack held per connection, both ends (client and server are in this process).
func BenchmarkConnections(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("conns=%d/one-at-a-time", n), func(b *testing.B) { benchConnections(b, n, false) })
		b.Run(fmt.Sprintf("conns=%d/all-sending", n), func(b *testing.B) { benchConnections(b, n, true) })
	}
}

// sender holds one sending goroutine's buffers.
type sender struct {
	up              gb26875.Upload
	adu, frame, buf []byte
}

func newSender() *sender {
	return &sender{buf: make([]byte, 30), up: gb26875.Upload{Type: gb26875.TypeComponentState, ComponentStates: []gb26875.ComponentState{{
		Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 42, Addr: 0x105}}}}}
}

func benchConnections(b *testing.B, n int, parallel bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < uint64(2*n+200) {
		b.Skipf("open files limit %d is below the %d sockets of both ends", rl.Cur, 2*n+200)
	}
	l := benchLedger(b, n)
	cfg := DefaultConfig()
	cfg.Listen, cfg.ClockSyncEvery, cfg.MaxConnections = "127.0.0.1:0", 0, n+10
	s, err := New(cfg, l, discard{}, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	conns := make([]net.Conn, n)
	serials := make([]uint16, n)
	ack := make([]byte, 30)
	for i := range conns {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		h := gb26875.Header{Serial: 1, Major: 1, Src: benchAddr(i), Command: gb26875.CmdSend}
		if _, err := c.Write(gb26875.AppendFrame(nil, &h, nil)); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatal(err)
		}
		serials[i] = 1
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perConn := float64(int64(m1.HeapInuse+m1.StackInuse)-int64(m0.HeapInuse+m0.StackInuse)) / float64(n)

	// send sends connection i's next frame (fire alarm and return to normal in turn) and waits for the 确认.
	send := func(i int, st *sender) time.Duration {
		st.up.ComponentStates[0].State = gb26875.CompNormal
		if serials[i]%2 == 0 {
			st.up.ComponentStates[0].State |= gb26875.CompFire
		}
		st.adu, _ = st.up.Append(st.adu[:0])
		serials[i]++
		h := gb26875.Header{Serial: serials[i], Major: 1, Src: benchAddr(i), Command: gb26875.CmdSend}
		st.frame = gb26875.AppendFrame(st.frame[:0], &h, st.adu)
		t0 := time.Now()
		if _, err := conns[i].Write(st.frame); err != nil {
			b.Error(err)
			return 0
		}
		if _, err := io.ReadFull(conns[i], st.buf); err != nil {
			b.Error(err)
			return 0
		}
		return time.Since(t0)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	if !parallel {
		// One frame at a time, each from the next connection: the latency with n connections open.
		st := newSender()
		for k := range b.N {
			lat[0] = append(lat[0], send(k%n, st))
		}
	} else {
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := newSender()
				for next.Add(1) <= int64(b.N) {
					lat[i] = append(lat[i], send(i, st))
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(perConn, "heap-B/conn")
}
