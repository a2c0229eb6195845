package uitd

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

var (
	addr  = gb26875.Address{1, 2, 3, 4, 5, 6}
	smoke = Point{Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 42, Addr: 0x105}, Desc: "3号楼2层走廊"}
)

// centre is a minimal monitoring centre for the tests: it decodes what arrives, evaluates each frame once
// (Dedup), and answers as told by policy.
type centre struct {
	mu        sync.Mutex
	evaluated []gb26875.Upload
	frames    int
	errors    int
	policy    func(n int, f *gb26875.Frame) gb26875.Command // 0: no answer
	dedup     *stream.Dedup
	conn      net.Conn
	got       chan struct{}
}

func newCentre(policy func(int, *gb26875.Frame) gb26875.Command) *centre {
	if policy == nil {
		policy = func(int, *gb26875.Frame) gb26875.Command { return gb26875.CmdConfirm }
	}
	return &centre{policy: policy, dedup: stream.NewDedup(64, time.Minute), got: make(chan struct{}, 64)}
}

func (c *centre) handle(ev *stream.Event, write func([]byte) error) error {
	f := ev.Frame
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Err != nil {
		c.errors++
		return nil
	}
	if f.Command == gb26875.CmdConfirm || f.Command == gb26875.CmdDeny || f.Command == gb26875.CmdReply {
		if f.Command == gb26875.CmdReply {
			var u gb26875.Upload
			if u.Unmarshal(f.ADU) == nil {
				c.evaluated = append(c.evaluated, clone(u))
			}
		}
		c.got <- struct{}{}
		return nil
	}
	c.frames++
	cmd := c.policy(c.frames, f)
	if cmd == gb26875.CmdConfirm && !c.dedup.Seen(f, time.Now()) {
		var u gb26875.Upload
		if err := u.Unmarshal(f.ADU); err != nil {
			cmd = gb26875.CmdDeny
		} else {
			c.evaluated = append(c.evaluated, clone(u))
			c.dedup.Done(f, time.Now())
			c.got <- struct{}{}
		}
	}
	if cmd == 0 {
		return nil
	}
	h := gb26875.Answer(&f.Header, cmd, gb26875.MakeTimeLabel(time.Now()))
	return write(gb26875.AppendFrame(nil, &h, nil))
}

func clone(u gb26875.Upload) gb26875.Upload {
	u.ComponentStates = append([]gb26875.ComponentState(nil), u.ComponentStates...)
	u.SystemStates = append([]gb26875.SystemState(nil), u.SystemStates...)
	u.Operations = append([]gb26875.Operation(nil), u.Operations...)
	u.UITDOperations = append([]gb26875.UITDOperation(nil), u.UITDOperations...)
	u.UITDStates = append([]gb26875.UITDState(nil), u.UITDStates...)
	u.Analogs = append([]gb26875.Analog(nil), u.Analogs...)
	return u
}

func (c *centre) uploads() []gb26875.Upload {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gb26875.Upload(nil), c.evaluated...)
}

// serveTCP accepts one UITD and runs the centre on it.
func serveTCP(t *testing.T, c *centre) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		stream.Read(ctx, conn, stream.Options{}, func(ev *stream.Event) error {
			return c.handle(ev, func(b []byte) error { _, err := conn.Write(b); return err })
		})
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return ln.Addr().String()
}

func dial(t *testing.T, network, at string, cfg Config) *UITD {
	if cfg.Addr == (gb26875.Address{}) {
		cfg.Addr = addr
	}
	u, err := Dial(context.Background(), network, at, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestFireOverTCP(t *testing.T) {
	c := newCentre(nil)
	u := dial(t, "tcp", serveTCP(t, c), Config{})
	if err := u.Garbage([]byte("AT+CSQ\r\n@@\x00")); err != nil {
		t.Fatal(err)
	}
	s, err := u.Fire(smoke)
	if err != nil || u.Attempts(s) != 1 {
		t.Fatalf("fire: %v after %d attempts", err, u.Attempts(s))
	}
	ups := c.uploads()
	if len(ups) != 1 || ups[0].Type != gb26875.TypeComponentState {
		t.Fatalf("centre got %+v", ups)
	}
	cs := ups[0].ComponentStates[0]
	if cs.Component != smoke.Component || !cs.State.Has(gb26875.CompFire) || string(gb26875.Text(nil, cs.Desc[:])) != "3号楼2层走廊" {
		t.Fatalf("component %+v", cs)
	}
	for _, f := range []func() (uint16, error){
		func() (uint16, error) { return u.Fault(smoke) },
		func() (uint16, error) { return u.Supervisory(smoke) },
		func() (uint16, error) { return u.Shield(smoke) },
		func() (uint16, error) { return u.Reset(smoke.System, 7) },
		func() (uint16, error) { return u.PowerFault() },
		func() (uint16, error) { return u.Temperature(smoke, 25.3) },
		u.KeepAlive,
	} {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
	ups = c.uploads()
	// fire, fault, supervisory, shield, reset (operation + system state), power, analog, keep-alive
	want := []gb26875.TypeFlag{2, 2, 2, 2, 4, 1, 21, 3, 0}
	if len(ups) != len(want) {
		t.Fatalf("%d uploads, want %d", len(ups), len(want))
	}
	for i, w := range want {
		if ups[i].Type != w {
			t.Errorf("upload %d: type %d, want %d", i, ups[i].Type, w)
		}
	}
	if !ups[5].SystemStates[0].State.Has(gb26875.SysReset) || ups[7].Analogs[0].Raw != 253 {
		t.Errorf("reset %+v, analog %+v", ups[5].SystemStates, ups[7].Analogs)
	}
}

// TestRetransmission: the centre ignores the first try and denies the second; the UITD sends the same
// frame again each time, and the centre evaluates it once.
func TestRetransmission(t *testing.T) {
	c := newCentre(func(n int, f *gb26875.Frame) gb26875.Command {
		switch n {
		case 1:
			return 0
		case 2:
			return gb26875.CmdDeny
		}
		return gb26875.CmdConfirm
	})
	u := dial(t, "tcp", serveTCP(t, c), Config{Timeout: 300 * time.Millisecond})
	s, err := u.Fire(smoke)
	if err != nil || u.Attempts(s) != 3 {
		t.Fatalf("fire: %v after %d attempts", err, u.Attempts(s))
	}
	if n := len(c.uploads()); n != 1 {
		t.Fatalf("evaluated %d times", n)
	}
	// A centre that never answers: the send fails after 1 + Retries tries.
	c2 := newCentre(func(int, *gb26875.Frame) gb26875.Command { return 0 })
	u2 := dial(t, "tcp", serveTCP(t, c2), Config{Timeout: 50 * time.Millisecond, Retries: 2})
	if s, err := u2.Fire(smoke); err != ErrNoConfirm || u2.Attempts(s) != 3 {
		t.Fatalf("silent centre: %v after %d attempts", err, u2.Attempts(s))
	}
}

// TestControls: clock sync, 查岗 (answered by the operator as type 24) and a read of the UITD's state.
func TestControls(t *testing.T) {
	c := newCentre(nil)
	u := dial(t, "tcp", serveTCP(t, c), Config{DutyDelay: 10 * time.Millisecond, Now: func() time.Time { return time.Unix(0, 0) }})
	if _, err := u.KeepAlive(); err != nil { // makes sure the centre holds the connection
		t.Fatal(err)
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	<-c.got
	centreTime := time.Date(2026, 12, 1, 13, 22, 50, 0, time.FixedZone("CST", 8*3600))
	for i, d := range []gb26875.Downlink{
		{Type: gb26875.TypeSyncClock, Start: gb26875.MakeTimeLabel(centreTime)},
		{Type: gb26875.TypeDutyCheck, Minutes: 10},
		{Type: gb26875.TypeReadUITDState},
	} {
		adu, err := d.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		h := gb26875.Header{Serial: uint16(i + 1), Major: 1, Dst: addr, Command: d.Type.Command(), Time: gb26875.MakeTimeLabel(centreTime)}
		if _, err := conn.Write(gb26875.AppendFrame(nil, &h, adu)); err != nil {
			t.Fatal(err)
		}
	}
	// Answers: confirm (90), confirm (91), the duty answer (type 24), the reply (type 21), in some order.
	deadline := time.After(10 * time.Second)
	for len(c.uploads()) < 3 { // keep-alive, duty answer, state reply
		select {
		case <-c.got:
		case <-deadline:
			t.Fatalf("uploads %+v", c.uploads())
		}
	}
	var duty, state bool
	for _, up := range c.uploads() {
		switch up.Type {
		case gb26875.TypeUITDOperation:
			op := up.UITDOperations[0]
			tm, ok := op.Time.Time(time.FixedZone("CST", 8*3600))
			duty = op.Ops&gb26875.UOpDutyAnswer != 0 && ok && tm.Sub(centreTime) < time.Minute && tm.Sub(centreTime) >= 0
		case gb26875.TypeUITDState:
			state = up.UITDStates[0].State == gb26875.UITDNormal
		}
	}
	if !duty || !state {
		t.Fatalf("duty answer %v (clock synced), state reply %v: %+v", duty, state, c.uploads())
	}
	if got := u.Controls(); len(got) != 2 || got[0] != gb26875.TypeSyncClock || got[1] != gb26875.TypeDutyCheck {
		t.Fatalf("controls %v", got)
	}
}

// TestFireOverUDP: the same exchange over datagrams.
func TestFireOverUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := newCentre(nil)
	go func() {
		buf := make([]byte, 2048)
		var f gb26875.Frame
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ferr := gb26875.Parse(buf[:n], &f)
			c.handle(&stream.Event{Raw: buf[:n], Frame: &f, Err: ferr, Aligned: true}, func(b []byte) error {
				_, err := pc.WriteTo(b, from)
				return err
			})
		}
	}()
	u := dial(t, "udp", pc.LocalAddr().String(), Config{Timeout: time.Second})
	if _, err := u.Fire(smoke); err != nil {
		t.Fatal(err)
	}
	if ups := c.uploads(); len(ups) != 1 || !ups[0].ComponentStates[0].State.Has(gb26875.CompFire) {
		t.Fatalf("uploads %+v", ups)
	}
}
