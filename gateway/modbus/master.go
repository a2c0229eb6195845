package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a Master. Zero values take the defaults.
type Config struct {
	// Timeout bounds one attempt: from the end of the request to the last
	// byte of the response. Default 500 ms.
	Timeout time.Duration
	// Retries is how many more attempts follow a timeout or a bad frame
	// (not an exception: the slave answered). Default 0.
	Retries int
	// Baud is the line speed, for the 3.5-character inter-frame silence.
	// Default 9600.
	Baud int
	// CharBits is the bits on the wire per character: start, 8 data,
	// parity or a second stop bit, stop. Default 11.
	CharBits int
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Baud <= 0 {
		c.Baud = 9600
	}
	if c.CharBits <= 0 {
		c.CharBits = 11
	}
}

// Silence is the inter-frame gap of Modbus RTU: 3.5 character times, and
// a fixed 1.75 ms above 19200 baud as the specification recommends.
func (c Config) Silence() time.Duration {
	c.setDefaults()
	if c.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(float64(time.Second) * 3.5 * float64(c.CharBits) / float64(c.Baud))
}

// Stats counts what happened on a bus. Every frame fault has a counter;
// the fields are safe to read while the master runs.
type Stats struct {
	Requests   atomic.Uint64 // attempts sent, retries included
	Responses  atomic.Uint64 // good responses (exceptions included)
	Timeouts   atomic.Uint64 // no byte within the timeout
	CRCErrors  atomic.Uint64 // complete frames with a bad CRC
	BadFrames  atomic.Uint64 // short, long, wrong address, wrong function, bad echo
	Exceptions atomic.Uint64 // exception responses
	Retries    atomic.Uint64 // attempts after the first
	Stale      atomic.Uint64 // bytes of earlier answers discarded before a request
	Echoes     atomic.Uint64 // requests that came back as their own echo
}

// Master is a Modbus RTU master on one bus. Its methods are safe for
// concurrent use: requests are serialised, as the half-duplex bus demands.
type Master struct {
	port  io.ReadWriter
	cfg   Config
	stats Stats

	mu     sync.Mutex
	buf    [maxFrame]byte
	out    []byte
	lastIO time.Time
	// echo is set while the port echoes requests, as the last read showed.
	echo bool
}

// NewMaster returns a master speaking on port. port.Read must return within
// a short read timeout when no byte arrives (a serial port opened by
// OpenSerial does: it returns 0 bytes and io.EOF or nil).
func NewMaster(port io.ReadWriter, cfg Config) *Master {
	cfg.setDefaults()
	return &Master{port: port, cfg: cfg, out: make([]byte, 0, requestLen)}
}

// Stats returns the master's counters.
func (m *Master) Stats() *Stats { return &m.stats }

// Do sends r and returns the response data (see Decode), retrying timeouts
// and bad frames up to Config.Retries times. The data is a copy owned by
// the caller. An exception response returns an *Exception.
func (m *Master) Do(ctx context.Context, r Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	for attempt := 0; attempt <= m.cfg.Retries; attempt++ {
		if attempt > 0 {
			m.stats.Retries.Add(1)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var data []byte
		data, err = m.once(r)
		if err == nil {
			return append([]byte(nil), data...), nil
		}
		var ex *Exception
		if errors.As(err, &ex) || !retryable(err) {
			return nil, err
		}
	}
	return nil, err
}

func retryable(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrCRC) || errors.Is(err, ErrLength) ||
		errors.Is(err, ErrAddress) || errors.Is(err, ErrFunction) || errors.Is(err, ErrEcho) ||
		errors.Is(err, ErrNoise)
}

// once is one attempt: a quiet line, request, response, checks.
func (m *Master) once(r Request) ([]byte, error) {
	if err := m.quiet(); err != nil {
		m.count(err)
		return nil, err
	}
	m.out = r.Append(m.out[:0])
	m.stats.Requests.Add(1)
	if _, err := m.port.Write(m.out); err != nil {
		m.lastIO = time.Now()
		return nil, fmt.Errorf("modbus: write: %w", err)
	}
	deadline := time.Now().Add(m.cfg.Timeout + m.wireTime(len(m.out)+r.ResponseLen()))
	var foreign error
	for {
		frame, err := m.read(r, deadline)
		if err == nil {
			var data []byte
			data, err = Decode(r, frame)
			if err == nil {
				m.lastIO = time.Now()
				m.stats.Responses.Add(1)
				return data, nil
			}
			if (errors.Is(err, ErrAddress) || errors.Is(err, ErrFunction)) && time.Now().Before(deadline) {
				// A whole, well-formed frame, but not an answer to this
				// request: a late answer to an earlier one that arrived
				// after the line was quiet. Skip it and wait for ours.
				m.stats.Stale.Add(uint64(len(frame)))
				foreign = err
				continue
			}
		}
		if foreign != nil && errors.Is(err, ErrTimeout) {
			err = foreign
		}
		m.lastIO = time.Now()
		m.count(err)
		if !errors.Is(err, ErrTimeout) && !isException(err) {
			m.drain()
		}
		return nil, err
	}
}

// drain discards the rest of a bad frame until the line has been silent
// for a while, so that the next request does not meet the tail of this
// one's answer (a port without deadlines relies on quiet() alone).
func (m *Master) drain() {
	dl, ok := m.port.(deadliner)
	if !ok {
		return
	}
	gap := min(max(m.cfg.Timeout/4, 4*m.cfg.Silence()), 100*time.Millisecond)
	var scratch [64]byte
	end := time.Now().Add(m.cfg.Timeout)
	for time.Now().Before(end) {
		if dl.SetReadDeadline(time.Now().Add(gap)) != nil {
			return
		}
		k, _ := m.port.Read(scratch[:])
		if k == 0 {
			return
		}
		m.stats.Stale.Add(uint64(k))
	}
}

// deadliner is a port whose reads take a deadline (a Port, an *os.File):
// the master then times responses exactly and can listen for silence.
type deadliner interface{ SetReadDeadline(time.Time) error }

// quiet makes sure that the next byte read belongs to the answer of the
// next request: it reads and discards whatever arrives (a late answer to
// an earlier request, noise) until the line has been silent for 3.5
// characters. Reading rather than flushing the kernel's queue counts what
// is discarded, and also catches bytes still on their way through the
// driver. A line that never falls silent within the timeout is ErrNoise.
func (m *Master) quiet() error {
	silence := m.cfg.Silence()
	dl, ok := m.port.(deadliner)
	if !ok {
		// A port without deadlines cannot listen for a few milliseconds:
		// keep the gap since the last exchange.
		if wait := time.Until(m.lastIO.Add(silence)); wait > 0 {
			time.Sleep(wait) // the protocol's inter-frame gap, not a synchronisation
		}
		return nil
	}
	end := time.Now().Add(m.cfg.Timeout)
	for {
		if err := dl.SetReadDeadline(time.Now().Add(silence)); err != nil {
			return fmt.Errorf("modbus: read deadline: %w", err)
		}
		k, err := m.port.Read(m.buf[:]) // free between requests
		if k > 0 {
			m.stats.Stale.Add(uint64(k))
			if time.Now().After(end) {
				return ErrNoise
			}
			continue
		}
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil // silent for the whole gap
		}
		return fmt.Errorf("modbus: read: %w", err)
	}
}

func isException(err error) bool {
	var ex *Exception
	return errors.As(err, &ex)
}

func (m *Master) count(err error) {
	switch {
	case isException(err):
		m.stats.Responses.Add(1)
		m.stats.Exceptions.Add(1)
	case errors.Is(err, ErrTimeout):
		m.stats.Timeouts.Add(1)
	case errors.Is(err, ErrCRC):
		m.stats.CRCErrors.Add(1)
	case retryable(err):
		m.stats.BadFrames.Add(1)
	}
}

// wireTime is how long n characters take on the line.
func (m *Master) wireTime(n int) time.Duration {
	return time.Duration(int64(n) * int64(m.cfg.CharBits) * int64(time.Second) / int64(m.cfg.Baud))
}

// read reads the response frame to r, using its header to know its
// length. A copy of the request read back first is the adapter's echo
// (an RS-485 adapter that hears its own transmitter): it is skipped, and
// once seen on a read, expected before every response. Whatever the
// outcome, the rest of the line is left to quiet() before the next
// request.
func (m *Master) read(r Request, deadline time.Time) ([]byte, error) {
	dl, hasDeadline := m.port.(deadliner)
	if hasDeadline {
		if err := dl.SetReadDeadline(deadline); err != nil {
			return nil, fmt.Errorf("modbus: read deadline: %w", err)
		}
	}
	// An echo can be told from an answer for reads (an answer starts with
	// a byte count); for writes, whose answer is itself an echo, only
	// once a read has shown that the port echoes.
	maybeEcho := m.echo || isRead(r.Function)
	n, want := 0, 0
	for {
		if maybeEcho && n > 0 {
			k := min(n, len(m.out))
			if string(m.buf[:k]) != string(m.out[:k]) {
				maybeEcho = false
				if isRead(r.Function) {
					m.echo = false // a read answered without echo
				}
			} else if n >= len(m.out) {
				m.stats.Echoes.Add(1)
				m.echo, maybeEcho = true, false
				n = copy(m.buf[:], m.buf[len(m.out):n])
			}
		}
		if want == 0 && !maybeEcho {
			want = FrameLen(m.buf[:n])
			if want > maxFrame {
				return nil, fmt.Errorf("%w: header announces %d bytes", ErrLength, want)
			}
		}
		if want > 0 && n >= want {
			return m.buf[:want], nil
		}
		if !time.Now().Before(deadline) {
			if n == 0 {
				return nil, ErrTimeout
			}
			if maybeEcho && n >= len(m.out) {
				return nil, ErrTimeout // our echo, and no answer
			}
			return nil, fmt.Errorf("%w: %d bytes, then silence", ErrLength, n)
		}
		lim := want
		switch {
		case maybeEcho:
			lim = len(m.out)
		case lim == 0:
			lim = 3 // enough to learn the length
		}
		if lim <= n {
			lim = n + 1
		}
		k, err := m.port.Read(m.buf[n:lim])
		n += k
		if err != nil && !errors.Is(err, io.EOF) {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // the loop's check reports it
			}
			return nil, fmt.Errorf("modbus: read: %w", err)
		}
	}
}

// ReadRegisters reads qty holding (function 3) or input (function 4)
// registers starting at addr.
func (m *Master) ReadRegisters(ctx context.Context, slave, function byte, addr, qty uint16) ([]uint16, error) {
	data, err := m.Do(ctx, Request{Slave: slave, Function: function, Address: addr, Value: qty})
	if err != nil {
		return nil, err
	}
	return Registers(make([]uint16, 0, qty), data), nil
}

// ReadBits reads qty coils (function 1) or discrete inputs (function 2)
// starting at addr.
func (m *Master) ReadBits(ctx context.Context, slave, function byte, addr, qty uint16) ([]bool, error) {
	data, err := m.Do(ctx, Request{Slave: slave, Function: function, Address: addr, Value: qty})
	if err != nil {
		return nil, err
	}
	out := make([]bool, qty)
	for i := range out {
		out[i] = Bit(data, i)
	}
	return out, nil
}

// WriteCoil writes one coil (function 5).
func (m *Master) WriteCoil(ctx context.Context, slave byte, addr uint16, on bool) error {
	v := uint16(0)
	if on {
		v = coilOn
	}
	_, err := m.Do(ctx, Request{Slave: slave, Function: FuncWriteSingleCoil, Address: addr, Value: v})
	return err
}

// WriteRegister writes one holding register (function 6).
func (m *Master) WriteRegister(ctx context.Context, slave byte, addr, value uint16) error {
	_, err := m.Do(ctx, Request{Slave: slave, Function: FuncWriteSingleRegister, Address: addr, Value: value})
	return err
}
