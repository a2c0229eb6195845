package netbuf

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits and defaults of a Conn.
const (
	// MaxFlushDelay is the longest a written byte may wait in the buffer:
	// an alarm's own path (a PUBLISH, its PUBACK) waits no longer.
	MaxFlushDelay = time.Millisecond
	// DefaultFlushDelay is the delay when Options.FlushDelay is 0.
	DefaultFlushDelay = MaxFlushDelay
	// DefaultWriteBuffer is the write buffer when Options.WriteBuffer is 0:
	// a write that would take the buffer past it is sent at once, together
	// with what is buffered.
	DefaultWriteBuffer = 16 << 10
	// DefaultReadBuffer is a good Options.ReadBuffer for a client that reads
	// packets with small unbuffered reads (paho).
	DefaultReadBuffer = 16 << 10
	// CloseFlushTimeout bounds how long Close waits to send what is
	// buffered to a peer that does not read.
	CloseFlushTimeout = 2 * time.Second
)

// Options configure a Conn.
type Options struct {
	// ReadBuffer is the size of the read buffer, taken from a pool while it
	// holds data. 0: no read buffering; each Read goes to the connection
	// with the caller's buffer (for a caller with its own bufio.Reader, as
	// mochi has).
	ReadBuffer int
	// WriteBuffer is how many bytes are coalesced before they are sent
	// without waiting for the delay; 0 means DefaultWriteBuffer.
	WriteBuffer int
	// FlushDelay is how long the first byte of a burst may wait before it
	// is sent; 0 means DefaultFlushDelay, larger than MaxFlushDelay means
	// MaxFlushDelay.
	FlushDelay time.Duration
}

// Conn is a net.Conn with buffered reads and coalesced writes. It is safe
// for concurrent use as a net.Conn is: one reader and any number of writers
// at once, Close from anywhere.
//
// A write on a quiet connection (nothing written for the flush delay, the
// reader waiting or absent) goes out at once. Otherwise a write waits at
// most the flush delay while the connection's reader
// waits for the peer (the timer sends it), or while the reader keeps
// reading (it sends what is buffered before it waits, or on its next Read
// once the delay is up). A reader that stops for longer inside its own
// handling of what it read — between two Reads — holds the writes of its
// connection back that long: MQTT clients and brokers read continuously,
// and a connection that is never read always has the timer.
type Conn struct {
	net.Conn
	raw   syscall.RawConn // nil when the connection has no file descriptor
	rsize int
	wsize int
	delay time.Duration

	rmu        sync.Mutex
	rbuf       *[]byte // pooled; nil while empty
	rpos, rend int
	// The state of one raw read (raw_unix.go), under rmu.
	readFn      func(fd uintptr) bool
	rp          []byte
	rn          int
	rerr, rwerr error
	rbusy       bool // the reader is between a wake-up and its next wait (mirrors busy)

	wmu    sync.Mutex
	wbuf   *[]byte // pooled; nil while empty
	timer  *time.Timer
	armed  bool
	closed bool
	werr   error // sticky: the first write error, or net.ErrClosed after Close
	// lastSend is when the connection was last written to (unix
	// nanoseconds): a write more than the delay after it goes out at once.
	lastSend int64

	wdeadline atomic.Int64 // unix nanoseconds of the write deadline, 0 for none
	// busy is set while the reader (raw path) is handling what it read and
	// will come back to wait, when it sends what is buffered: a write then
	// needs no timer. pending is when the oldest buffered byte was written
	// (unix nanoseconds, 0 for none), for the reader's check of the bound.
	busy    atomic.Bool
	pending atomic.Int64
}

// New wraps c.
func New(c net.Conn, o Options) *Conn {
	b := &Conn{Conn: c, rsize: o.ReadBuffer, wsize: o.WriteBuffer, delay: o.FlushDelay}
	if b.wsize <= 0 {
		b.wsize = DefaultWriteBuffer
	}
	if b.delay <= 0 {
		b.delay = DefaultFlushDelay
	}
	b.delay = min(b.delay, MaxFlushDelay)
	if sc, ok := c.(syscall.Conn); ok && rawReadSupported {
		if raw, err := sc.SyscallConn(); err == nil {
			b.raw = raw
		}
	}
	return b
}

// Unwrap returns the wrapped connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// Read reads from the buffer, or from the connection when the buffer is
// empty. Before it waits for the peer it sends what is buffered for
// writing: a peer waiting for an acknowledgement gets it without the delay.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if since := c.pending.Load(); since != 0 && c.raw != nil && time.Now().UnixNano()-since >= int64(c.delay) {
		// A reader busy for longer than the delay sends what waits.
		c.Flush()
	}
	if c.rbuf != nil {
		n := copy(p, (*c.rbuf)[c.rpos:c.rend])
		c.rpos += n
		if c.rpos == c.rend {
			c.releaseRead()
		}
		return n, nil
	}
	if c.rsize <= 0 || len(p) >= c.rsize {
		return c.fill(p)
	}
	n, err := c.fill(nil)
	if n == 0 {
		return 0, err
	}
	m := copy(p, (*c.rbuf)[:n])
	c.rpos, c.rend = m, n
	if m == n {
		c.releaseRead()
	}
	return m, nil
}

func (c *Conn) releaseRead() {
	putBuf(c.rsize, c.rbuf)
	c.rbuf, c.rpos, c.rend = nil, 0, 0
}

// fill reads once from the connection into p, or into a pooled read
// buffer (c.rbuf) when p is nil.
func (c *Conn) fill(p []byte) (int, error) {
	if c.raw != nil {
		n, err := c.rawRead(p)
		return n, c.readErr(err)
	}
	c.flushBeforeWait()
	pooled := p == nil
	if pooled {
		c.rbuf = getBuf(c.rsize)
		p = *c.rbuf
	}
	n, err := c.Conn.Read(p)
	if pooled && n == 0 {
		c.releaseRead()
	}
	return n, c.readErr(err)
}

// readErr prefers a write error that closed the connection to the read
// error it caused.
func (c *Conn) readErr(err error) error {
	if err == nil {
		return nil
	}
	c.wmu.Lock()
	werr := c.werr
	c.wmu.Unlock()
	if werr != nil && !errors.Is(werr, net.ErrClosed) {
		return werr
	}
	return err
}

// flushBeforeWait sends what is buffered for writing before a read waits
// (the fallback path, without the file descriptor), and closes the
// connection on a write error.
func (c *Conn) flushBeforeWait() {
	if !c.wmu.TryLock() {
		return // that writer, or the timer, sends it within the delay
	}
	var err error
	if c.wbuf != nil && c.werr == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		c.Conn.Close()
	}
}

// park is the raw reader's step before it waits: it is no longer busy, so
// later writes arm the timer, and what is buffered goes out now. It returns
// a write error; the caller closes the connection.
func (c *Conn) park() error {
	c.wmu.Lock()
	c.busy.Store(false)
	var err error
	if c.wbuf != nil && c.werr == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	return err
}

// unbusy is the raw reader's step when it stops reading (an error): writes
// buffered meanwhile get the timer.
func (c *Conn) unbusy() {
	c.wmu.Lock()
	c.busy.Store(false)
	if c.wbuf != nil && c.werr == nil && !c.closed {
		c.armLocked()
	}
	c.wmu.Unlock()
}

func (c *Conn) armLocked() {
	if c.armed {
		return
	}
	c.armed = true
	if c.timer == nil {
		c.timer = time.AfterFunc(c.delay, c.onTimer)
	} else {
		c.timer.Reset(c.delay)
	}
}

// Write buffers p and makes sure it is sent within the flush delay. A write
// that would take the buffer past its size is sent at once with what is
// buffered, in one system call. Errors of earlier buffered writes are
// returned here.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return 0, err
	}
	if d := c.wdeadline.Load(); d != 0 && time.Now().UnixNano() >= d {
		c.wmu.Unlock()
		return 0, &net.OpError{Op: "write", Net: c.netName(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	var buffered int
	if c.wbuf != nil {
		buffered = len(*c.wbuf)
	}
	if buffered+len(p) > c.wsize {
		err := c.sendLocked(p)
		c.wmu.Unlock()
		if err != nil {
			c.Conn.Close()
			return 0, err
		}
		return len(p), nil
	}
	busy := c.busy.Load()
	if c.wbuf == nil {
		now := time.Now().UnixNano()
		if !busy && !c.armed && now-c.lastSend >= int64(c.delay) {
			// A quiet connection: nothing to coalesce with, and a timer
			// would cost more than the write (arming it wakes the Go
			// network poller). Send now.
			err := c.sendLocked(p)
			c.wmu.Unlock()
			if err != nil {
				c.Conn.Close()
				return 0, err
			}
			return len(p), nil
		}
		c.wbuf = getBuf(c.wsize)
		*c.wbuf = (*c.wbuf)[:0]
		c.pending.Store(now)
	}
	*c.wbuf = append(*c.wbuf, p...)
	// A busy reader sends it when it next waits, or on its next Read once
	// the delay is up; otherwise the timer does. The timer is not stopped
	// when something else sends first: arming it costs more than its
	// firing in vain.
	if !busy {
		c.armLocked()
	}
	c.wmu.Unlock()
	return len(p), nil
}

func (c *Conn) netName() string {
	if a := c.LocalAddr(); a != nil {
		return a.Network()
	}
	return ""
}

// onTimer sends what is buffered when the delay is up.
func (c *Conn) onTimer() {
	c.wmu.Lock()
	c.armed = false
	var err error
	if c.wbuf != nil && c.werr == nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		c.Conn.Close()
	}
}

// Flush sends what is buffered now.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	var err error
	if c.wbuf != nil {
		err = c.flushLocked()
	}
	c.wmu.Unlock()
	if err != nil {
		c.Conn.Close()
	}
	return err
}

// flushLocked writes the buffer out; on an error it makes the error sticky
// (the caller closes the connection after unlocking).
func (c *Conn) flushLocked() error {
	return c.sendLocked(nil)
}

// sendLocked writes the buffer and then p, in one system call where the
// connection can (writev), and gives the buffer back.
func (c *Conn) sendLocked(p []byte) error {
	c.lastSend = time.Now().UnixNano()
	var err error
	switch {
	case c.wbuf == nil:
		_, err = c.Conn.Write(p)
	case len(p) == 0:
		_, err = c.Conn.Write(*c.wbuf)
	default:
		bufs := net.Buffers{*c.wbuf, p}
		_, err = bufs.WriteTo(c.Conn)
	}
	if c.wbuf != nil {
		putBuf(c.wsize, c.wbuf)
		c.wbuf = nil
		c.pending.Store(0)
	}
	if err != nil {
		c.werr = err
	}
	return err
}

// Close sends what is buffered (waiting at most CloseFlushTimeout for a
// peer that does not read, or less if the write deadline is nearer), then
// closes the connection. It returns the write error, if any, else the
// error of closing.
func (c *Conn) Close() error {
	// A writer stuck on a peer that does not read holds the lock: bound it
	// first, so that Close returns.
	limit := time.Now().Add(closeFlushTimeout)
	if d := c.wdeadline.Load(); d == 0 || d > limit.UnixNano() {
		c.Conn.SetWriteDeadline(limit)
	}
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return c.Conn.Close()
	}
	c.closed = true
	werr := c.werr // a buffered write that failed before
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
	if c.wbuf != nil && c.werr == nil {
		werr = c.flushLocked()
	}
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.wmu.Unlock()
	err := c.Conn.Close()
	if werr != nil {
		return werr
	}
	return err
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.wdeadline.Store(unixNano(t))
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline: a Write after it fails at once,
// and a buffered write sent after it fails (and closes the connection).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdeadline.Store(unixNano(t))
	return c.Conn.SetWriteDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Buffers of each size in use, pooled.
var pools sync.Map // int -> *sync.Pool

func getBuf(size int) *[]byte {
	p, ok := pools.Load(size)
	if !ok {
		p, _ = pools.LoadOrStore(size, &sync.Pool{New: func() any { b := make([]byte, size); return &b }})
	}
	b := p.(*sync.Pool).Get().(*[]byte)
	*b = (*b)[:size]
	held.Add(1)
	return b
}

// held counts the buffers taken and not given back (tests).
var held atomic.Int64

func putBuf(size int, b *[]byte) {
	held.Add(-1)
	if p, ok := pools.Load(size); ok {
		p.(*sync.Pool).Put(b)
	}
}

// closeFlushTimeout is CloseFlushTimeout; tests shorten it.
var closeFlushTimeout = CloseFlushTimeout
