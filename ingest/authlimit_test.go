package ingest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func TestBackoff(t *testing.T) {
	b := newBackoff()
	t0 := time.Unix(1_800_000_000, 0)
	for i := range freeFailures {
		if b.wait("el-1", t0) {
			t.Fatalf("backing off after %d failures", i)
		}
		b.fail("el-1", t0)
	}
	if b.wait("el-1", t0) || !b.known("el-1") {
		t.Fatal("the free failures")
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		b.fail("el-1", t0)
		if !b.wait("el-1", t0.Add(want-time.Millisecond)) || b.wait("el-1", t0.Add(want)) {
			t.Fatalf("failure %d: want a wait of %v", freeFailures+i+1, want)
		}
	}
	for range 40 {
		b.fail("el-1", t0)
	}
	if !b.wait("el-1", t0.Add(backoffMax-time.Millisecond)) || b.wait("el-1", t0.Add(backoffMax)) {
		t.Fatal("the wait is not capped at backoffMax")
	}
	// Quiet for long: starts over.
	later := t0.Add(3 * backoffMax)
	b.fail("el-1", later)
	if b.wait("el-1", later) {
		t.Fatal("an old record still counts")
	}
	b.ok("el-1")
	if b.known("el-1") {
		t.Fatal("ok does not forget")
	}
	// Bounded: a flood of new keys keeps at most maxTracked.
	for i := range maxTracked + 1000 {
		b.fail(strconv.Itoa(i), t0)
	}
	if n := len(b.keys); n > maxTracked {
		t.Fatalf("%d keys tracked", n)
	}
}

// TestBrokerConnLimits: a connection that sends no CONNECT is closed after
// the connect timeout, and connections beyond the cap are closed at once.
func TestBrokerConnLimits(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := StartBroker(BrokerConfig{Addr: addr, MaxConnections: 3, ConnectTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	closed := func(c net.Conn, within time.Duration) error {
		c.SetReadDeadline(time.Now().Add(within))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return fmt.Errorf("still open after %v", within)
		}
		return nil
	}
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// The broker has accepted the three once a fourth is refused: retry
	// until one is (a dial can complete before the broker's Accept).
	testenv.WaitFor(t, 10*time.Second, "a connection over the cap refused", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return closed(c, 200*time.Millisecond) == nil
	})
	start := time.Now()
	for i, c := range idle {
		if err := closed(c, 5*time.Second); err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
	}
	t.Logf("silent connections closed after %v", time.Since(start))
}
