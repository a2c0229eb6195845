package server

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

var comment = regexp.MustCompile(`#[^\n]*`)

// hexFile reads a hand-written frame (hex bytes, whitespace, # comments) from testdata/ or, with a path,
// from the codec's testdata.
func hexFile(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if strings.Contains(name, "/") {
		path = filepath.Join("..", "testdata", name)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(comment.ReplaceAllString(string(raw), "")), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

type msg struct{ topic, payload string }

// recorder is the pipeline: it records messages, and what the server had confirmed when each came.
type recorder struct {
	mu        sync.Mutex
	msgs      []msg
	confirmed []uint64
	srv       *Server
	// gate, when set, holds Handle until it is closed; entered is signalled first.
	gate    chan struct{}
	entered chan struct{}
}

func (r *recorder) Handle(topic string, payload []byte) {
	if r.gate != nil {
		select {
		case r.entered <- struct{}{}:
		default:
		}
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg{topic, string(payload)})
	r.confirmed = append(r.confirmed, r.srv.stats.Confirmed.Load())
}

// states returns the state payloads sent to device id, in order (heartbeats left out).
func (r *recorder) states(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		if m.topic == "fw/v1/up/"+id+"/telemetry" {
			out = append(out, m.payload)
		}
	}
	return out
}

func (r *recorder) last(id string) string {
	s := r.states(id)
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func startServer(t *testing.T, tune func(*Config), rec *recorder) (*Server, *prometheus.Registry) {
	s, reg, _ := startServerStop(t, tune, rec)
	return s, reg
}

// startServerStop is startServer that also returns a function stopping the server (without waiting).
func startServerStop(t *testing.T, tune func(*Config), rec *recorder) (*Server, *prometheus.Registry, func()) {
	t.Helper()
	l, err := devices.LoadLedger("testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.ListenUDP = "127.0.0.1:0", "127.0.0.1:0"
	// No 校时 on connect: the tests read the answers they expect; TestClockSyncOnConnect turns it on.
	cfg.ClockSyncEvery = 0
	if tune != nil {
		tune(&cfg)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, l, rec, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	// The test frames were sent at 13:22:49 on 1 Dec 2026 (CST): the centre's clock agrees, so that no
	// clock synchronisation is sent unless a test asks for one.
	s.Now = func() time.Time { return time.Date(2026, 12, 1, 13, 22, 50, 0, cst) }
	rec.srv = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10 s")
		}
	})
	return s, reg, cancel
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAnswer reads one frame of an empty ADU (确认 or 否认, 30 bytes) and checks it by its bytes: start,
// the echoed serial number, the swapped addresses, the command, the checksum and the end.
func readAnswer(t *testing.T, c net.Conn, serial uint16, cmd byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 30)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("no answer to serial %d: %v", serial, err)
	}
	var sum byte
	for _, x := range b[2:27] {
		sum += x
	}
	if got := hex.EncodeToString(b[:2]); got != "4040" {
		t.Fatalf("answer %x: start %s", b, got)
	}
	if b[2] != byte(serial) || b[3] != byte(serial>>8) || b[26] != cmd || b[24] != 0 || b[25] != 0 ||
		hex.EncodeToString(b[12:24]) != "000000000000010203040506" || b[27] != sum || b[28] != '#' || b[29] != '#' {
		t.Fatalf("answer %x: want serial %d, command %d, source centre, destination 010203040506", b, serial, cmd)
	}
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestFireConfirmedAfterPipeline: the worked example of the standard (a listed smoke detector in fire
// alarm) becomes a fire_alarm state of its device, and the 确认 is written only after the pipeline took it.
func TestFireConfirmedAfterPipeline(t *testing.T) {
	rec := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, _ := startServer(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	select {
	case <-rec.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the pipeline was not called")
	}
	// While the pipeline holds the frame, nothing is answered.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !os.IsTimeout(err) {
		t.Fatalf("answer before the pipeline returned: %d bytes, %v", n, err)
	}
	close(rec.gate)
	readAnswer(t, c, 1, 3)
	if got := rec.last("fa-1-0105"); got != `{"m":{"fire_alarm":1,"fault":0,"disabled":0,"supervisory":0,"started":0,"feedback":0,"delay":0,"power_fault":0}}` {
		t.Errorf("state of fa-1-0105: %s", got)
	}
	for i, n := range rec.confirmed {
		if n != 0 {
			t.Errorf("message %d (%s) handled after %d confirmations", i, rec.msgs[i].topic, n)
		}
	}
	if len(rec.msgs) < 2 || rec.msgs[len(rec.msgs)-2].topic != "fw/v1/up/uitd-1/status" && rec.msgs[1].topic != "fw/v1/up/uitd-1/status" {
		t.Errorf("no heartbeat of the UITD: %v", rec.msgs)
	}
}

// TestRetransmissionEvaluatedOnce: the same frame again (a lost 确认) is confirmed again, not evaluated.
func TestRetransmissionEvaluatedOnce(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c := dial(t, s)
	f := hexFile(t, "frames/worked_example.hex")
	write(t, c, f)
	readAnswer(t, c, 1, 3)
	n := len(rec.states("fa-1-0105"))
	write(t, c, f)
	readAnswer(t, c, 1, 3)
	if got := len(rec.states("fa-1-0105")); got != n {
		t.Errorf("retransmission evaluated again: %d states, want %d", got, n)
	}
}

// TestUnlistedPointsShareTheUITD: points the ledger does not list report on the UITD's own device; its
// fire alarm stays while any of them is in fire alarm.
func TestUnlistedPointsShareTheUITD(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c := dial(t, s)
	for _, step := range []struct {
		file   string
		serial uint16
		fire   bool
	}{
		{"comp106_fire.hex", 3, true},
		{"comp107_fire.hex", 6, true},
		{"comp106_normal.hex", 7, true}, // 0x107 still burns
		{"comp107_normal.hex", 8, false},
	} {
		write(t, c, hexFile(t, step.file))
		readAnswer(t, c, step.serial, 3)
		got := rec.last("uitd-1")
		if want := `"fire_alarm":1`; strings.Contains(got, want) != step.fire {
			t.Errorf("after %s: UITD state %s, want fire %v", step.file, got, step.fire)
		}
	}
	if n := testutil.ToFloat64(s.m.unlisted); n != 4 {
		t.Errorf("unlisted points counted %v, want 4", n)
	}
}

// TestResetClears: a 复位 of system 1 (type 4, hand-written) clears the fire alarm of its listed point and of
// the UITD's device; a fault and 屏蔽 stay (the controller reports them again when they end).
func TestResetClears(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, c, 1, 3)
	write(t, c, hexFile(t, "comp105_fault_disabled.hex"))
	readAnswer(t, c, 9, 3)
	if got := rec.last("fa-1-0105"); !strings.Contains(got, `"fire_alarm":0,"fault":1,"disabled":1`) {
		t.Fatalf("fault and disabled: %s", got)
	}
	write(t, c, hexFile(t, "comp106_fire.hex"))
	readAnswer(t, c, 3, 3)
	write(t, c, hexFile(t, "frames/type04_operation.hex"))
	readAnswer(t, c, 5, 3)
	if got := rec.last("fa-1-0105"); got != `{"m":{"fire_alarm":0,"supervisory":0,"started":0,"feedback":0,"delay":0}}` {
		t.Errorf("point after reset: %s", got)
	}
	if got := rec.last("uitd-1"); !strings.Contains(got, `"fire_alarm":0`) {
		t.Errorf("UITD after reset: %s", got)
	}
	// The fault stays: the point's next report still has it, whatever else changes.
	st := s.uitds[[6]byte{1, 2, 3, 4, 5, 6}]
	if f := st.union(st.u.Points[devices.FacilityPoint{SystemType: 1, SystemAddr: 1, Component: true, Addr: 0x105}]); f != fFault|fDisabled {
		t.Errorf("state after reset %b, want fault and disabled", f)
	}
	if n := testutil.ToFloat64(s.m.resets); n != 1 {
		t.Errorf("resets %v", n)
	}
}

// TestGarbledFrameDenied: a frame with a wrong checksum gets a 否认 and is counted; the connection stays and
// the next frame is confirmed. Garbage between frames is skipped.
func TestGarbledFrameDenied(t *testing.T) {
	rec := &recorder{}
	s, reg := startServer(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, c, 1, 3)
	write(t, c, hexFile(t, "bad/checksum.hex"))
	readAnswer(t, c, 15, 6)
	write(t, c, append([]byte("\x00\xffnoise@"), hexFile(t, "comp106_fire.hex")...))
	readAnswer(t, c, 3, 3)
	if n := testutil.ToFloat64(refused(t, reg, "checksum")); n != 1 {
		t.Errorf("refused{checksum} = %v, want 1", n)
	}
}

func refused(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "firewatch_gb26875_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				g.Set(m.GetCounter().GetValue())
			}
		}
	}
	return g
}

// TestUnknownUITDRefused: a UITD not in the ledger is cut off without an answer and counted.
func TestUnknownUITDRefused(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, func(c *Config) {}, rec)
	s.uitds = nil // no UITD known
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("unknown UITD: read %d bytes, %v; want the connection closed", n, err)
	}
	if n := testutil.ToFloat64(s.m.connRefused.WithLabelValues("unknown")); n != 1 {
		t.Errorf("refused{unknown} = %v", n)
	}
	if len(rec.msgs) != 0 {
		t.Errorf("messages from an unknown UITD: %v", rec.msgs)
	}
}

// TestClockSync: a UITD whose packet time is off gets the centre's time (type 90, command 1) after the 确认.
func TestClockSync(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	s.Now = func() time.Time { return time.Date(2026, 12, 1, 14, 0, 0, 0, cst) }
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	b := make([]byte, 36)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	// serial 1, command 1, ADU: type 90, one object, 14:00:00 1 Dec 2026.
	if got := hex.EncodeToString(b[2:4]) + " " + hex.EncodeToString(b[24:35]); got != "0100 080001"+"5a01"+"00000e010c1a" {
		t.Errorf("clock sync %x", b)
	}
	if n := testutil.ToFloat64(s.m.clockSyncs); n != 1 {
		t.Errorf("clock syncs %v", n)
	}
}

// TestUDP: over UDP, one frame per datagram, the fire is handled and confirmed.
func TestUDP(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, c, 1, 3)
	if got := rec.last("fa-1-0105"); !strings.Contains(got, `"fire_alarm":1`) {
		t.Errorf("state over UDP: %s", got)
	}
}

// TestNetworkRefused: a known UITD connecting from a network its ledger entry does not list is cut off.
func TestNetworkRefused(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	s.uitds[[6]byte{1, 2, 3, 4, 5, 6}].u.Networks = []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")}
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	if n := testutil.ToFloat64(s.m.connRefused.WithLabelValues("network")); n != 1 {
		t.Errorf("refused{network} = %v", n)
	}
	if len(rec.msgs) != 0 {
		t.Errorf("messages from a refused network: %v", rec.msgs)
	}
}

// TestConnectionLimit: a connection beyond max_connections is closed at once and counted; the first works.
func TestConnectionLimit(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, func(c *Config) { c.MaxConnections = 1 }, rec)
	first := dial(t, s)
	second := dial(t, s)
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("second connection: read %d bytes, %v; want it closed", n, err)
	}
	if n := testutil.ToFloat64(s.m.connRefused.WithLabelValues("limit")); n != 1 {
		t.Errorf("refused{limit} = %v", n)
	}
	write(t, first, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, first, 1, 3)
}

// TestSpoofedAddressDenied: once a connection is pinned to its UITD, a frame claiming another address is
// denied and not evaluated.
func TestSpoofedAddressDenied(t *testing.T) {
	rec := &recorder{}
	s, reg := startServer(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	// The worked example with source 01 02 03 04 05 07: byte 17 (0-based) and the checksum one more.
	f := hexFile(t, "frames/worked_example.hex")
	f[17]++
	f[len(f)-3]++
	write(t, c, f)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 30)
	if _, err := io.ReadFull(c, b); err != nil || b[26] != 6 {
		t.Fatalf("answer to a spoofed frame %x, %v; want a 否认", b, err)
	}
	if got := rec.states("fa-1-0105"); len(got) != 0 {
		t.Errorf("spoofed frame evaluated: %v", got)
	}
	if n := testutil.ToFloat64(refused(t, reg, "spoofed")); n != 1 {
		t.Errorf("refused{spoofed} = %v", n)
	}
}

// TestNoConfirmWhileStopping: a frame whose pipeline call was still running when the server began to stop
// is not confirmed (the UITD sends it again to the next run).
func TestNoConfirmWhileStopping(t *testing.T) {
	rec := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	s, _, stop := startServerStop(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	select {
	case <-rec.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the pipeline was not called")
	}
	stop()
	testenv.WaitFor(t, 10*time.Second, "server stopping", s.stopping.Load)
	close(rec.gate)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 30)); n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v; want the connection closed without a 确认", n, err)
	}
	if n := s.stats.CommitFailed.Load(); n != 1 {
		t.Errorf("commit failed %d, want 1", n)
	}
}

// TestReconnectEvaluatesAgain: serial numbers start again with each connection, so a frame with the serial
// number and content of one already evaluated on an earlier connection is evaluated again: here a fire, a
// return to normal and, after a reconnect, the same fire again (a UITD whose clock does not run).
func TestReconnectEvaluatesAgain(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, c, 1, 3)
	write(t, c, hexFile(t, "comp105_normal.hex"))
	readAnswer(t, c, 2, 3)
	c.Close()
	c = dial(t, s)
	write(t, c, hexFile(t, "frames/worked_example.hex"))
	readAnswer(t, c, 1, 3)
	if got := rec.last("fa-1-0105"); !strings.Contains(got, `"fire_alarm":1`) {
		t.Errorf("the fire after the reconnect was not evaluated: last state %s", got)
	}
}

// TestPointLiveness: every frame is a sign of life of the UITD's device; its listed points are told they
// are alive at most once an hour while it speaks.
func TestPointLiveness(t *testing.T) {
	rec := &recorder{}
	// No clock synchronisation: the test moves the centre's clock by an hour, which the check after a
	// 确认 could see for the frame before.
	s, _ := startServer(t, func(c *Config) { c.ClockSkew = 48 * time.Hour }, rec)
	now := time.Date(2026, 12, 1, 13, 22, 50, 0, cst)
	var mu sync.Mutex
	s.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	count := func(topic string) int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, m := range rec.msgs {
			if m.topic == topic && m.payload == "{}" {
				n++
			}
		}
		return n
	}
	c := dial(t, s)
	keepalive := hexFile(t, "frames/keepalive.hex")
	send := func(serial byte) {
		f := append([]byte(nil), keepalive...)
		f[2] = serial
		f[len(f)-3] += serial - 15 // the checksum follows the serial number's low byte
		write(t, c, f)
		readAnswer(t, c, uint16(serial), 3)
	}
	send(15)
	send(16)
	if u, p := count("fw/v1/up/uitd-1/status"), count("fw/v1/up/fa-1-0105/status"); u != 2 || p != 1 {
		t.Fatalf("after two keep-alives: %d heartbeats of the UITD, %d of its point; want 2 and 1", u, p)
	}
	mu.Lock()
	now = now.Add(pointLiveness)
	mu.Unlock()
	send(17)
	if p := count("fw/v1/up/fa-1-0105/status"); p != 2 {
		t.Fatalf("an hour later: %d heartbeats of the point, want 2", p)
	}
}
