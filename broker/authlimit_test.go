package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/logbudget"
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
	s, err := Start(Config{Addr: addr, MaxConnections: 3, ConnectTimeout: 500 * time.Millisecond,
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

// TestRateHandler: below Error, at most logbudget.PerSecond lines a second, then
// one line saying how many were dropped; errors always pass.
func TestRateHandler(t *testing.T) {
	var buf strings.Builder
	log := slog.New(newRateHandler(slog.NewTextHandler(&buf, nil))).With("component", "broker")
	for range 100 {
		log.Warn("refused")
	}
	log.Error("broken")
	if n := strings.Count(buf.String(), "msg=refused"); n != logbudget.PerSecond {
		t.Errorf("%d warnings passed, want %d", n, logbudget.PerSecond)
	}
	if !strings.Contains(buf.String(), "msg=broken") {
		t.Error("an error was dropped")
	}
	h := log.Handler()
	r := slog.NewRecord(time.Now().Add(2*time.Second), slog.LevelWarn, "later", 0)
	h.Handle(context.Background(), r)
	if !strings.Contains(buf.String(), "count=95") || !strings.Contains(buf.String(), "msg=later") {
		t.Errorf("after the second:\n%s", buf.String())
	}
}

// TestReservedDeviceIDs: a ledger device named gw or station would own
// every gateway's or station's topics; the embedded broker refuses it.
func TestReservedDeviceIDs(t *testing.T) {
	h, err := HashSecret([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"gw", "station"} {
		y := fmt.Sprintf("stations:\n  - {id: st, name: S, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n  - {id: %s, kind: smoke, grid: \"450204002003\", secret_hash: \"%s\"}\n", id, h)
		l, err := devices.ParseLedger("reserved.yaml", []byte(y))
		if err != nil {
			t.Logf("%s: the ledger refuses it already: %v", id, err)
			continue
		}
		if _, err := NewAuth(AuthConfig{Ledger: l}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("device %s: NewAuth error %v", id, err)
		}
	}
}
