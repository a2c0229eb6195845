package uitd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

// Config of a simulated UITD. Zero values take the defaults noted.
type Config struct {
	Addr    gb26875.Address // the UITD's address
	Centre  gb26875.Address // the destination address (default all zeros)
	User    byte            // 用户版本号 (default 0)
	Timeout time.Duration   // wait for the 确认 (default 10 s, §6.5)
	Retries int             // retransmissions after the first send (default 3, §6.5); -1: none
	// DutyDelay is how long the operator takes to answer a 查岗 (type 91); negative: never answers.
	DutyDelay time.Duration
	Loc       *time.Location   // zone of the time labels (default UTC+8)
	Now       func() time.Time // clock (default time.Now)
	Version   [2]byte          // software version reported for type 85
}

// ErrNoConfirm: the centre did not confirm within the timeout after every retry.
var ErrNoConfirm = errors.New("uitd: no 确认 after all retries")

// ErrDenied: the centre answered the last try with 否认.
var ErrDenied = errors.New("uitd: 否认 after all retries")

// Point is a component of the fire alarm controller.
type Point struct {
	gb26875.Component
	Desc string // 部件说明, encoded as GB 18030
}

// UITD is one simulated device on one connection. Sends are one transaction at a time (stop and wait, as
// the standard's send/confirm mode).
type UITD struct {
	cfg  Config
	conn net.Conn

	send   sync.Mutex // one transaction at a time
	wmu    sync.Mutex // frame writes
	serial uint16     // last serial number used for a transaction the UITD started

	mu       sync.Mutex
	waiting  uint16
	answer   chan gb26875.Command
	offset   time.Duration // clock offset set by type 90
	controls []gb26875.TypeFlag
	attempts map[uint16]int // tries per serial number, for tests

	wg   sync.WaitGroup
	done chan struct{}
}

// Dial connects to a centre at addr over network ("tcp" or "udp") and starts answering it.
func Dial(ctx context.Context, network, addr string, cfg Config) (*UITD, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("uitd: dial %s %s: %w", network, addr, err)
	}
	return New(c, cfg), nil
}

// New runs a simulated UITD on an open connection.
func New(c net.Conn, cfg Config) *UITD {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Loc == nil {
		cfg.Loc = time.FixedZone("CST", 8*3600)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u := &UITD{cfg: cfg, conn: c, answer: make(chan gb26875.Command, 4), attempts: map[uint16]int{}, done: make(chan struct{})}
	u.wg.Add(1)
	go u.read()
	return u
}

// Close closes the connection and waits for the reader.
func (u *UITD) Close() error {
	err := u.conn.Close()
	u.wg.Wait()
	return err
}

// Done is closed when the connection has ended.
func (u *UITD) Done() <-chan struct{} { return u.done }

func (u *UITD) now() time.Time {
	u.mu.Lock()
	off := u.offset
	u.mu.Unlock()
	return u.cfg.Now().Add(off).In(u.cfg.Loc)
}

func (u *UITD) label() gb26875.TimeLabel { return gb26875.MakeTimeLabel(u.now()) }

func (u *UITD) write(b []byte) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	_, err := u.conn.Write(b)
	return err
}

// Attempts is how many times the frame with serial number s was sent.
func (u *UITD) Attempts(s uint16) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.attempts[s]
}

// Controls lists the control commands (types 89–91) received so far.
func (u *UITD) Controls() []gb26875.TypeFlag {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]gb26875.TypeFlag(nil), u.controls...)
}

// Send uploads up with 发送数据 and waits for the 确认, retransmitting the same frame (same serial number
// and content; the packet time label is refreshed) on a timeout or a 否认. It returns the serial number used.
func (u *UITD) Send(up *gb26875.Upload) (uint16, error) {
	adu, err := up.Append(nil)
	if err != nil {
		return 0, err
	}
	u.send.Lock()
	defer u.send.Unlock()
	u.serial++
	h := gb26875.Header{Serial: u.serial, Major: 1, User: u.cfg.User, Src: u.cfg.Addr, Dst: u.cfg.Centre, Command: gb26875.CmdSend}
	u.mu.Lock()
	u.waiting = h.Serial
	u.mu.Unlock()
	drain(u.answer)
	last := ErrNoConfirm
	var buf []byte
	for try := 0; try <= u.cfg.Retries; try++ {
		h.Time = u.label()
		buf = gb26875.AppendFrame(buf[:0], &h, adu)
		u.mu.Lock()
		u.attempts[h.Serial]++
		u.mu.Unlock()
		if err := u.write(buf); err != nil {
			return h.Serial, fmt.Errorf("uitd: send: %w", err)
		}
		t := time.NewTimer(u.cfg.Timeout)
		select {
		case cmd := <-u.answer:
			t.Stop()
			if cmd == gb26875.CmdConfirm {
				return h.Serial, nil
			}
			last = ErrDenied
		case <-t.C:
			last = ErrNoConfirm
		case <-u.done:
			t.Stop()
			return h.Serial, net.ErrClosed
		}
	}
	return h.Serial, last
}

func drain(c chan gb26875.Command) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// Garbage writes bytes that are not a frame (line noise, a modem's AT chatter).
func (u *UITD) Garbage(b []byte) error { return u.write(b) }

// KeepAlive sends 发送数据 with an empty ADU and waits for the 确认.
func (u *UITD) KeepAlive() (uint16, error) { return u.Send(&gb26875.Upload{}) }

// read answers the centre: 确认/否认 go to the waiting Send; control commands and reads are answered.
func (u *UITD) read() {
	defer u.wg.Done()
	defer close(u.done)
	var down gb26875.Downlink
	stream.Read(context.Background(), u.conn, stream.Options{}, func(ev *stream.Event) error {
		f := ev.Frame
		if ev.Err != nil {
			if ev.Aligned && ev.Raw != nil {
				return u.write(gb26875.AppendDeny(nil, &f.Header, u.label()))
			}
			return nil
		}
		switch f.Command {
		case gb26875.CmdConfirm, gb26875.CmdDeny:
			u.mu.Lock()
			mine := f.Serial == u.waiting
			u.mu.Unlock()
			if mine {
				select {
				case u.answer <- f.Command:
				default:
				}
			}
			return nil
		case gb26875.CmdControl, gb26875.CmdRequest:
		default:
			return nil
		}
		if err := down.Unmarshal(f.ADU); err != nil {
			return u.write(gb26875.AppendDeny(nil, &f.Header, u.label()))
		}
		return u.command(&f.Header, &down)
	})
}

func (u *UITD) command(h *gb26875.Header, d *gb26875.Downlink) error {
	switch d.Type {
	case gb26875.TypeSyncClock, gb26875.TypeInitUITD, gb26875.TypeDutyCheck:
		u.mu.Lock()
		u.controls = append(u.controls, d.Type)
		if d.Type == gb26875.TypeSyncClock {
			if t, ok := d.Start.Time(u.cfg.Loc); ok {
				u.offset = t.Sub(u.cfg.Now())
			}
		}
		u.mu.Unlock()
		if err := u.write(gb26875.AppendConfirm(nil, h, u.label())); err != nil {
			return err
		}
		if d.Type == gb26875.TypeDutyCheck && u.cfg.DutyDelay >= 0 {
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				select {
				case <-time.After(u.cfg.DutyDelay):
				case <-u.done:
					return
				}
				u.Send(&gb26875.Upload{Type: gb26875.TypeUITDOperation, UITDOperations: []gb26875.UITDOperation{
					{Ops: gb26875.UOpDutyAnswer, Time: u.label()}}})
			}()
		}
		return nil
	}
	// Reads: answer with the upload type the read names.
	var up gb26875.Upload
	switch d.Type {
	case gb26875.TypeReadUITDState:
		up = gb26875.Upload{Type: gb26875.TypeUITDState, UITDStates: []gb26875.UITDState{{State: gb26875.UITDNormal, Time: u.label()}}}
	case gb26875.TypeReadUITDVersion:
		up = gb26875.Upload{Type: gb26875.TypeUITDVersion, Version: gb26875.Version{Major: u.cfg.Version[0], Minor: u.cfg.Version[1]}}
	case gb26875.TypeReadUITDTime:
		up = gb26875.Upload{Type: gb26875.TypeUITDTime, SystemTime: gb26875.SystemTime{Time: u.label()}}
	default:
		return u.write(gb26875.AppendDeny(nil, h, u.label()))
	}
	adu, err := up.Append(nil)
	if err != nil {
		return err
	}
	r := gb26875.Answer(h, gb26875.CmdReply, u.label())
	return u.write(gb26875.AppendFrame(nil, &r, adu))
}
