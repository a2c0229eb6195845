// Package rtu simulates Modbus RTU slaves on an RS-485 bus behind a real
// pseudo-terminal: a gateway opens Bus.Path as it would /dev/ttyS1. Each
// slave implements a firegate register map (gateway/maps), holds physical
// values that tests and firesim set, and can be told to misbehave: stay
// silent, corrupt its CRC, answer with the wrong length or from another
// address, raise exception codes, or answer slowly.
package rtu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/gateway/modbus"
)

// FaultKind is a way a slave misbehaves.
type FaultKind uint8

// Faults a slave can inject.
const (
	FaultNone         FaultKind = iota
	FaultNoAnswer               // stays silent
	FaultBadCRC                 // flips a bit of the CRC
	FaultWrongLength            // drops the last data byte (byte count and CRC consistent)
	FaultTruncated              // stops sending half way through the frame
	FaultWrongAddress           // answers as another slave
	FaultException              // answers with exception Fault.Code
	FaultSlow                   // answers after Fault.Delay
)

var faultNames = map[string]FaultKind{
	"none": FaultNone, "noanswer": FaultNoAnswer, "badcrc": FaultBadCRC, "wronglength": FaultWrongLength,
	"truncated": FaultTruncated, "wrongaddress": FaultWrongAddress, "exception": FaultException, "slow": FaultSlow,
}

// ParseFault parses a fault name as firesim takes it.
func ParseFault(s string) (FaultKind, error) {
	k, ok := faultNames[s]
	if !ok {
		return 0, fmt.Errorf("unknown fault %q (none, noanswer, badcrc, wronglength, truncated, wrongaddress, exception, slow)", s)
	}
	return k, nil
}

// Fault is an injected misbehaviour.
type Fault struct {
	Kind  FaultKind
	Code  byte          // exception code for FaultException
	Delay time.Duration // for FaultSlow
	// Count is how many requests it affects; 0 means until cleared.
	Count int
}

// Slave is one simulated device.
type Slave struct {
	Addr byte
	Map  *gateway.Map

	mu       sync.Mutex
	regs     [5]map[uint16]uint16 // by function 1–4 (coils and inputs hold 0/1)
	fault    Fault
	requests int
	answered int
	writes   []modbus.Request
	// strictGaps makes reads that cover an unmapped register fail with
	// exception 2, as some real devices do.
	strictGaps bool
	// stuck keeps writes from changing the outputs while still echoing
	// them: a welded relay, or a write the firmware ignores.
	stuck bool
}

// Bus is a simulated RS-485 bus on a pseudo-terminal.
type Bus struct {
	// Path is the terminal a master opens, e.g. /dev/pts/7.
	Path string
	// Baud emulates the line: each exchange takes as long as its bytes
	// would at this speed (a pty itself is instant). 0 disables it.
	Baud int

	ptm, tty *os.File
	mu       sync.Mutex
	slaves   map[byte]*Slave
	// echo makes the bus send every byte the master writes straight back,
	// as an RS-485 adapter with its receiver left enabled does.
	echo  bool
	stats struct{ requests, answered, ignored int }
}

// NewBus opens a pseudo-terminal in raw mode.
func NewBus(baud int) (*Bus, error) {
	ptm, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("rtu: open pty: %w", err)
	}
	if err := makeRaw(tty); err != nil {
		ptm.Close()
		tty.Close()
		return nil, err
	}
	// pty.Open leaves the master in blocking mode; a non-blocking copy is
	// under the runtime's poller, so read deadlines work.
	fd, err := unix.Dup(int(ptm.Fd()))
	ptm.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		tty.Close()
		return nil, fmt.Errorf("rtu: pty: %w", err)
	}
	ptm = os.NewFile(uintptr(fd), "/dev/ptmx")
	return &Bus{Path: tty.Name(), Baud: baud, ptm: ptm, tty: tty, slaves: map[byte]*Slave{}}, nil
}

func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ioErr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		ioErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	if ioErr != nil {
		return fmt.Errorf("rtu: raw mode: %w", ioErr)
	}
	return nil
}

// AddSlave puts a device of map m at address addr, with every value zero.
func (b *Bus) AddSlave(addr byte, m *gateway.Map) *Slave {
	s := &Slave{Addr: addr, Map: m}
	for f := 1; f <= 4; f++ {
		s.regs[f] = map[uint16]uint16{}
	}
	for i := range m.Points {
		p := &m.Points[i]
		for w := range p.Type.Words() {
			s.regs[p.Function][p.Address+uint16(w)] = 0
		}
	}
	for _, c := range m.Commands {
		f := 3
		if c.Function == modbus.FuncWriteSingleCoil {
			f = 1
		}
		s.regs[f][c.DeviceAddress] = 0
		for ch := 1; ch <= devices.MaxChannels; ch++ {
			if a, err := c.Target(ch); err == nil {
				s.regs[f][a] = s.regs[f][a] // keep an existing point's value
			}
			if c.Step == 0 {
				break
			}
		}
	}
	b.mu.Lock()
	b.slaves[addr] = s
	b.mu.Unlock()
	return s
}

// Slave returns the slave at addr, or nil.
func (b *Bus) Slave(addr byte) *Slave {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slaves[addr]
}

// Set gives metric (channel ch, 0 when unchannelled) the physical value v.
func (s *Slave) Set(metric string, ch int, v float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Map.Points {
		p := &s.Map.Points[i]
		if p.Metric.String() == metric && p.Ch == ch {
			for w, x := range p.Encode(v) {
				s.regs[p.Function][p.Address+uint16(w)] = x
			}
			return nil
		}
	}
	return fmt.Errorf("rtu: model %s maps no %s ch %d", s.Map.Model, metric, ch)
}

// SetRaw puts the raw value v in register (or bit) addr of function's
// bank: a sentinel, a status word, a value no metric decodes to.
func (s *Slave) SetRaw(function byte, addr, v uint16) {
	s.mu.Lock()
	s.regs[function][addr] = v
	s.mu.Unlock()
}

// Quantize returns the value a gateway reads back after Set(metric, ch, v):
// v rounded to the register's resolution.
func (s *Slave) Quantize(metric string, ch int, v float64) float64 {
	for i := range s.Map.Points {
		p := &s.Map.Points[i]
		if p.Metric.String() == metric && p.Ch == ch {
			regs := p.Encode(v)
			data := make([]byte, 0, 4)
			for _, r := range regs {
				data = append(data, byte(r>>8), byte(r))
			}
			if p.Function <= 2 {
				data = []byte{byte(regs[0] & 1)}
			}
			blk := gateway.Block{Function: p.Function, Address: p.Address}
			return p.Decode(&blk, data)
		}
	}
	return math.NaN()
}

// SetFault makes the slave misbehave (Fault{} clears it).
func (s *Slave) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Requests returns how many requests addressed to the slave arrived.
func (s *Slave) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Writes returns the write requests (functions 5 and 6) the slave executed.
func (s *Slave) Writes() []modbus.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]modbus.Request(nil), s.writes...)
}

// Answered returns how many responses the slave has finished writing to
// the line (late ones included).
func (s *Slave) Answered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered
}

// SetStrictGaps makes reads that cover an unmapped register fail with
// exception 2 (illegal data address) instead of reading it as 0.
func (s *Slave) SetStrictGaps(on bool) {
	s.mu.Lock()
	s.strictGaps = on
	s.mu.Unlock()
}

// SetStuck makes writes echo normally but leave the outputs as they are.
func (s *Slave) SetStuck(on bool) {
	s.mu.Lock()
	s.stuck = on
	s.mu.Unlock()
}

// SetEcho makes the line echo every byte the master sends, with or
// without slaves on it.
func (b *Bus) SetEcho(on bool) {
	b.mu.Lock()
	b.echo = on
	b.mu.Unlock()
}

// Coil returns the state of coil addr.
func (s *Slave) Coil(addr uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regs[1][addr] != 0
}

// Close closes the terminal; Serve returns.
func (b *Bus) Close() error {
	err := b.ptm.Close()
	b.tty.Close()
	return err
}

// gap is the silence after which a partial request is discarded.
const gap = 20 * time.Millisecond

// Serve answers requests until ctx ends or the bus is closed.
func (b *Bus) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { b.ptm.SetReadDeadline(time.Now()) })
	defer stop()
	var buf []byte
	chunk := make([]byte, 256)
	for {
		if len(buf) > 0 {
			b.ptm.SetReadDeadline(time.Now().Add(gap))
		} else {
			b.ptm.SetReadDeadline(time.Time{})
		}
		if ctx.Err() != nil {
			return nil
		}
		n, err := b.ptm.Read(chunk)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if ctx.Err() != nil {
					return nil
				}
				buf = buf[:0] // a partial frame followed by silence: noise
				continue
			}
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("rtu: read: %w", err)
		}
		b.mu.Lock()
		echo := b.echo
		b.mu.Unlock()
		if echo {
			if _, err := b.ptm.Write(chunk[:n]); err != nil && !errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("rtu: echo: %w", err)
			}
		}
		buf = append(buf, chunk[:n]...)
		for len(buf) >= 8 {
			req, err := modbus.ParseRequest(buf[:8])
			if err != nil {
				buf = buf[:0] // not a frame boundary: resynchronise on the next gap
				break
			}
			buf = buf[8:]
			if err := b.handle(req); err != nil {
				return err
			}
		}
	}
}

// handle answers one request as the addressed slave would.
func (b *Bus) handle(req modbus.Request) error {
	b.mu.Lock()
	s := b.slaves[req.Slave]
	b.stats.requests++
	b.mu.Unlock()
	if s == nil {
		return nil // nobody at that address: silence, as on a real bus
	}
	resp, delay := s.answer(req)
	if resp == nil {
		return nil
	}
	if b.Baud > 0 {
		delay += time.Duration(int64(8+len(resp)) * 11 * int64(time.Second) / int64(b.Baud))
	}
	if delay > 0 {
		time.Sleep(delay) // emulated wire and processing time
	}
	if _, err := b.ptm.Write(resp); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		return fmt.Errorf("rtu: write: %w", err)
	}
	s.mu.Lock()
	s.answered++
	s.mu.Unlock()
	return nil
}

func (s *Slave) answer(req modbus.Request) ([]byte, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	f := s.fault
	if f.Count > 0 {
		s.fault.Count--
		if s.fault.Count == 0 {
			s.fault = Fault{}
		}
	}
	if f.Kind == FaultNoAnswer {
		return nil, 0
	}
	if f.Kind == FaultException {
		return modbus.AppendException(nil, req, f.Code), 0
	}
	resp := s.execute(req)
	var delay time.Duration
	switch f.Kind {
	case FaultBadCRC:
		resp[len(resp)-1] ^= 0x01
	case FaultWrongLength:
		if len(resp) > 5 && resp[1]&0x80 == 0 && req.Function <= 4 {
			body := append([]byte(nil), resp[:len(resp)-3]...)
			body[2]--
			resp = modbus.AppendCRC(body)
		} else {
			resp = modbus.AppendCRC(append([]byte(nil), resp[:len(resp)-3]...))
		}
	case FaultTruncated:
		resp = resp[:len(resp)/2]
	case FaultWrongAddress:
		resp = modbus.AppendCRC(append([]byte{req.Slave + 1}, resp[1:len(resp)-2]...))
	case FaultSlow:
		delay = f.Delay
	}
	return resp, delay
}

// execute performs a request on the register banks.
func (s *Slave) execute(req modbus.Request) []byte {
	switch req.Function {
	case modbus.FuncReadCoils, modbus.FuncReadDiscreteInputs:
		if req.Value < 1 || req.Value > 2000 {
			return modbus.AppendException(nil, req, 3)
		}
		data := make([]byte, (int(req.Value)+7)/8)
		for i := range int(req.Value) {
			v, ok := s.regs[req.Function][req.Address+uint16(i)]
			if !ok && (i == 0 || s.strictGaps) {
				return modbus.AppendException(nil, req, 2)
			}
			if v != 0 {
				data[i/8] |= 1 << (i % 8)
			}
		}
		return modbus.AppendReadResponse(nil, req, data)
	case modbus.FuncReadHoldingRegisters, modbus.FuncReadInputRegisters:
		if req.Value < 1 || req.Value > 125 {
			return modbus.AppendException(nil, req, 3)
		}
		data := make([]byte, 0, 2*int(req.Value))
		for i := range int(req.Value) {
			// A real device reads gaps between mapped registers as 0;
			// only a block that starts unmapped is an illegal address.
			v, ok := s.regs[req.Function][req.Address+uint16(i)]
			if !ok && (i == 0 || s.strictGaps) {
				return modbus.AppendException(nil, req, 2)
			}
			data = append(data, byte(v>>8), byte(v))
		}
		return modbus.AppendReadResponse(nil, req, data)
	case modbus.FuncWriteSingleCoil, modbus.FuncWriteSingleRegister:
		bank := 3
		if req.Function == modbus.FuncWriteSingleCoil {
			bank = 1
		}
		if _, ok := s.regs[bank][req.Address]; !ok {
			return modbus.AppendException(nil, req, 2)
		}
		v := req.Value
		if bank == 1 && v != 0 {
			v = 1
		}
		if !s.stuck {
			s.regs[bank][req.Address] = v
		}
		s.writes = append(s.writes, req)
		return req.Append(nil) // echo
	}
	return modbus.AppendException(nil, req, 1)
}

// Plausible returns a normal value for a metric and channel: what a
// healthy device shows, different per channel, far from alarm levels.
func Plausible(metric string, ch int) float64 {
	c := float64(ch)
	switch metric {
	case "residual_current_ma":
		return 35
	case "cable_temp_c":
		return 25 + c*1.5
	case "phase_current_a":
		return 10 + c*1.25
	case "voltage_v":
		return 220 + c*0.7
	case "pressure_mpa":
		return 0.31
	case "battery_pct":
		return 93
	case "slot_temp_c":
		return 30 + c*0.5
	case "slot_current_a":
		return 1.2 + c*0.05
	case "slot_power_w":
		return 200 + c*10
	}
	return 0 // events inactive
}

// SetPlausible gives every point of the slave its Plausible value.
func (s *Slave) SetPlausible() {
	for i := range s.Map.Points {
		p := &s.Map.Points[i]
		s.Set(p.Metric.String(), p.Ch, Plausible(p.Metric.String(), p.Ch))
	}
}
