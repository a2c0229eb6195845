package netbuf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// countingConn counts the writes and reads that reach the socket, and
// keeps the socket's file descriptor reachable (syscall.Conn) so that the
// wrapper takes its raw read path.
type countingConn struct {
	*net.TCPConn
	writes, reads atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) { c.writes.Add(1); return c.TCPConn.Write(p) }
func (c *countingConn) Read(p []byte) (int, error)  { c.reads.Add(1); return c.TCPConn.Read(p) }

// A burst of small writes leaves the process as far fewer writes, all
// bytes in order, without any Flush or Close.
func TestCoalescesBurst(t *testing.T) {
	a, b := tcpPair(t)
	cc := &countingConn{TCPConn: a}
	c := New(cc, Options{})
	var want bytes.Buffer
	for i := range 1000 {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		want.Write(p)
		if n, err := c.Write(p); n != 4 || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	got := make([]byte, want.Len())
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes differ")
	}
	if w := cc.writes.Load(); w > 10 {
		t.Errorf("1000 writes of 4 bytes reached the socket as %d writes, want a few", w)
	}
	t.Logf("1000 writes -> %d socket writes", cc.writes.Load())
}

// A lone write is sent by the timer: the peer gets it with nothing else
// happening on the connection.
func TestLoneWriteIsSent(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{})
	if _, err := c.Write([]byte("alarm")); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "alarm" {
		t.Fatalf("peer got %q, %v", got, err)
	}
}

// A request written just before the writer waits for the answer goes out
// when the read waits, not after the delay: with the timer set to an hour a
// request/response exchange still completes.
func TestFlushBeforeReadWaits(t *testing.T) {
	for _, name := range []string{"raw", "fallback"} {
		t.Run(name, func(t *testing.T) {
			a, b := tcpPair(t)
			var inner net.Conn = a
			if name == "fallback" {
				inner = struct{ net.Conn }{a} // hides the file descriptor
			}
			c := New(inner, Options{ReadBuffer: 64})
			c.delay = time.Hour
			if (c.raw != nil) != (name == "raw") {
				t.Fatalf("raw path %v", c.raw != nil)
			}
			go func() { // echo
				buf := make([]byte, 1024)
				for {
					n, err := b.Read(buf)
					if err != nil {
						return
					}
					b.Write(buf[:n])
				}
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i := range 50 {
				msg := []byte{byte(i), 1, 2, 3}
				c.Write(msg)
				got := make([]byte, 4)
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("round %d: %v %v", i, got, err)
				}
			}
		})
	}
}

// Many goroutines write framed records of random sizes (some larger than
// the buffer) while the timer flushes; the peer sees every record of every
// writer, whole and in each writer's order.
func TestConcurrentWriters(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	a, b := tcpPair(t)
	c := New(a, Options{WriteBuffer: 512})
	const writers, records = 8, 300
	errc := make(chan error, 1)
	go func() { errc <- checkRecords(b, writers, records) }()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range records {
				if _, err := c.Write(record(w, i, r.IntN(2000))); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if r.IntN(20) == 0 {
					c.Flush()
				}
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
}

// record is writer w's i-th record: length, writer, index, filler.
func record(w, i, size int) []byte {
	p := make([]byte, 12+size)
	binary.BigEndian.PutUint32(p, uint32(size))
	binary.BigEndian.PutUint32(p[4:], uint32(w))
	binary.BigEndian.PutUint32(p[8:], uint32(i))
	for j := range size {
		p[12+j] = byte(w + i + j)
	}
	return p
}

func checkRecords(r io.Reader, writers, records int) error {
	next := make([]int, writers)
	hdr := make([]byte, 12)
	for total := 0; total < writers*records; total++ {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
		size := int(binary.BigEndian.Uint32(hdr))
		w, i := int(binary.BigEndian.Uint32(hdr[4:])), int(binary.BigEndian.Uint32(hdr[8:]))
		if w >= writers || i != next[w] {
			return errors.New("record out of order or from nowhere")
		}
		next[w]++
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		for j := range body {
			if body[j] != byte(w+i+j) {
				return errors.New("record corrupted")
			}
		}
	}
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || err != io.EOF {
		return errors.New("bytes after the last record")
	}
	return nil
}

// Close right after writes, racing the timer: what was written before
// Close reaches the peer, then EOF; nothing is written after Close.
func TestCloseRacesTimer(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range 200 {
		a, b := tcpPair(t)
		c := New(a, Options{FlushDelay: time.Duration(1+r.IntN(1000)) * time.Microsecond})
		var want []byte
		for range r.IntN(20) {
			p := make([]byte, 1+r.IntN(300))
			for j := range p {
				p[j] = byte(r.Uint32())
			}
			c.Write(p)
			want = append(want, p...)
		}
		if r.IntN(2) == 0 {
			time.Sleep(time.Duration(r.IntN(1500)) * time.Microsecond) // let the timer fire, or not
		}
		if err := c.Close(); err != nil {
			t.Fatalf("seed %d round %d: close: %v", seed, round, err)
		}
		if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(b)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("seed %d round %d: peer got %d of %d bytes, %v", seed, round, len(got), len(want), err)
		}
		a.Close()
		b.Close()
	}
}

// errConn fails its writes once told to, and records what it wrote.
type errConn struct {
	net.Conn
	mu     sync.Mutex
	out    bytes.Buffer
	fail   error
	closed bool
	writes int
}

func (c *errConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.fail != nil {
		return 0, c.fail
	}
	return c.out.Write(p)
}

func (c *errConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *errConn) SetDeadline(time.Time) error      { return nil }
func (c *errConn) SetWriteDeadline(time.Time) error { return nil }
func (c *errConn) LocalAddr() net.Addr              { return nil }
func (c *errConn) RemoteAddr() net.Addr             { return nil }

// A buffered write that fails when the timer sends it is not lost
// silently: the next Write, Flush and Close return the error, and the
// connection is closed so that its reader learns of it.
func TestWriteErrorSurfaces(t *testing.T) {
	boom := errors.New("connection reset")
	for _, how := range []string{"timer", "flush", "large write", "close"} {
		t.Run(how, func(t *testing.T) {
			ec := &errConn{}
			c := New(ec, Options{WriteBuffer: 64})
			if _, err := c.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			ec.mu.Lock()
			ec.fail = boom
			ec.mu.Unlock()
			// Within the delay of the last write, so buffered: the error
			// comes later. (On a machine slow enough to pass the delay in
			// between, the write goes out at once and fails here.)
			_, err := c.Write([]byte("lost?"))
			if err != nil && !errors.Is(err, boom) {
				t.Fatal(err)
			}
			switch {
			case err != nil:
			case how == "timer":
				deadline := time.Now().Add(10 * time.Second)
				for {
					ec.mu.Lock()
					closed := ec.closed
					ec.mu.Unlock()
					if closed || time.Now().After(deadline) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				_, err = c.Write([]byte("more"))
			case how == "flush":
				err = c.Flush()
			case how == "large write":
				_, err = c.Write(make([]byte, 100))
			case how == "close":
				err = c.Close()
			}
			if !errors.Is(err, boom) {
				t.Fatalf("got %v, want the write error", err)
			}
			ec.mu.Lock()
			closed := ec.closed
			ec.mu.Unlock()
			if !closed {
				t.Error("connection not closed after a write error")
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, boom) {
				t.Errorf("later write: %v", err)
			}
			if err := c.Flush(); !errors.Is(err, boom) {
				t.Errorf("later flush: %v", err)
			}
			if err := c.Close(); err != nil && how != "close" && !errors.Is(err, boom) {
				t.Errorf("close: %v", err)
			}
			if got := ec.out.String(); got != "ok" {
				t.Errorf("written %q", got)
			}
		})
	}
}

// A write error on a real socket reaches a blocked reader as the write
// error, not as a puzzling "use of closed connection".
func TestWriteErrorWakesReader(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{ReadBuffer: 4096})
	b.SetLinger(0)
	b.Close() // RST on the next segment
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		readErr <- err
	}()
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ {
		_, werr = c.Write(make([]byte, 32<<10))
	}
	if werr == nil {
		t.Fatal("writes to a reset connection did not fail")
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader still blocked after the write error")
	}
}

// Deadlines work through the wrapper: a read times out as a timeout, a
// write after its deadline fails at once, and clearing them restores both.
func TestDeadlines(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{ReadBuffer: 4096})
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v", err)
	}
	c.SetWriteDeadline(time.Now().Add(-time.Second))
	_, err = c.Write([]byte("x"))
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write past deadline: %v", err)
	}
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("z"))
	got := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || got[0] != 'z' {
		t.Fatalf("read after clearing: %q %v", got, err)
	}
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || got[0] != 'y' {
		t.Fatalf("peer: %q %v", got, err)
	}
}

// Close returns when the peer does not read, within its bound.
func TestCloseBoundedWhenPeerStalls(t *testing.T) {
	old := closeFlushTimeout
	closeFlushTimeout = 200 * time.Millisecond
	defer func() { closeFlushTimeout = old }()
	a, _ := tcpPair(t)
	c := New(a, Options{})
	// Fill the socket buffers until a write would block, in the background.
	go func() {
		for {
			if _, err := c.Write(make([]byte, 64<<10)); err != nil {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the writer blocks on the full socket: what Close must get past
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on a peer that does not read")
	}
}

// Reads through a small caller buffer reach the socket far less often than
// the caller reads, and return the stream unchanged, then EOF.
func TestBufferedReads(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 2))
	a, b := tcpPair(t)
	cc := &countingConn{TCPConn: a}
	c := New(cc, Options{ReadBuffer: 4096})
	want := make([]byte, 200000)
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	go func() { b.Write(want); b.Close() }()
	var got []byte
	calls := 0
	for {
		p := make([]byte, 1+r.IntN(8))
		if r.IntN(50) == 0 {
			p = make([]byte, 5000) // larger than the buffer: read directly
		}
		n, err := c.Read(p)
		calls++
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("seed %d: stream differs (%d of %d bytes)", seed, len(got), len(want))
	}
	if cc.reads.Load() != 0 {
		t.Errorf("reads went through Conn.Read, not the file descriptor")
	}
	if c.rbuf != nil {
		t.Error("read buffer kept after EOF")
	}
	t.Logf("%d caller reads", calls)
}

// An idle connection holds no buffers: after a burst is read and written,
// both go back to the pool.
func TestIdleHoldsNoBuffers(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{ReadBuffer: 4096})
	base := held.Load()
	if base != 0 {
		t.Fatalf("%d buffers held before the test", base)
	}
	b.Write([]byte("hello"))
	got := make([]byte, 2)
	io.ReadFull(c, got)
	c.Write([]byte("ack"))
	readDone := make(chan struct{})
	go func() { // reads the rest, then waits for more, holding nothing
		io.ReadFull(c, make([]byte, 3))
		close(readDone)
		c.Read(make([]byte, 1))
	}()
	<-readDone
	ack := make([]byte, 3)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, ack); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for held.Load() != 0 { // the reader waits in Read meanwhile
		if time.Now().After(deadline) {
			t.Fatalf("%d buffers still held by an idle connection", held.Load())
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
}

// Writes, flushes, reads and pauses interleaved at random, through a fake
// connection that records every write: what reaches it is exactly what was
// written, in order; the same through a real socket.
func TestRandomInterleavings(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for round := range 30 {
		r := rand.New(rand.NewPCG(seed, uint64(round)))
		real := round%2 == 0
		var c *Conn
		var ec *errConn
		var peer *net.TCPConn
		if real {
			a, b := tcpPair(t)
			c, peer = New(a, Options{WriteBuffer: 1 + r.IntN(4096), ReadBuffer: r.IntN(2) * 1024,
				FlushDelay: time.Duration(1+r.IntN(1000)) * time.Microsecond}), b
		} else {
			ec = &errConn{}
			c = New(ec, Options{WriteBuffer: 1 + r.IntN(4096), FlushDelay: time.Duration(1+r.IntN(1000)) * time.Microsecond})
		}
		var want []byte
		var got bytes.Buffer
		peerDone := make(chan struct{})
		if real {
			go func() {
				io.Copy(&got, peer)
				close(peerDone)
			}()
		}
		for range 200 {
			switch op := r.IntN(10); {
			case op < 6:
				p := make([]byte, r.IntN(3000))
				for j := range p {
					p[j] = byte(r.Uint32())
				}
				if n, err := c.Write(p); err != nil || n != len(p) {
					t.Fatalf("seed %d round %d: write %d, %v", seed, round, n, err)
				}
				want = append(want, p...)
			case op == 6:
				if err := c.Flush(); err != nil {
					t.Fatalf("seed %d round %d: flush: %v", seed, round, err)
				}
			case op == 7 && real:
				c.SetReadDeadline(time.Now().Add(time.Duration(r.IntN(300)) * time.Microsecond))
				c.Read(make([]byte, 1)) // flushes before it waits, then times out
				c.SetReadDeadline(time.Time{})
			case op == 8:
				time.Sleep(time.Duration(r.IntN(1500)) * time.Microsecond)
			default:
				c.flushBeforeWait()
			}
		}
		if err := c.Close(); err != nil {
			t.Fatalf("seed %d round %d: close: %v", seed, round, err)
		}
		if real {
			<-peerDone
		} else {
			got.Write(ec.out.Bytes())
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("seed %d round %d: %d bytes arrived, %d written, or order differs", seed, round, got.Len(), len(want))
		}
	}
}

var _ syscall.Conn = (*countingConn)(nil)

// A write from another goroutine while the reader waits for the peer goes
// out by the timer: the waiting reader does not hold it back.
func TestWriteWhileReaderWaits(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{ReadBuffer: 4096})
	// The reader reads once (so it has been busy), then waits.
	b.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	go c.Read(make([]byte, 1))
	deadline := time.Now().Add(10 * time.Second)
	for c.busy.Load() { // wait until it parks
		if time.Now().After(deadline) {
			t.Fatal("reader never waited")
		}
		time.Sleep(time.Millisecond)
	}
	for i := range 20 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1)
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(b, got); err != nil || got[0] != byte(i) {
			t.Fatalf("write %d: peer got %v, %v", i, got, err)
		}
	}
	c.Close()
}

// A reader that stays busy (it always finds data, so it never waits) still
// sends what others wrote once the delay is up, on its next Read.
func TestBusyReaderKeepsTheBound(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a, Options{ReadBuffer: 16})
	stop := make(chan struct{})
	go func() { // the peer keeps the reader supplied
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.Write(make([]byte, 64)); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	go func() {
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !c.busy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("reader never busy")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "ack" {
		t.Fatalf("peer got %q, %v", got, err)
	}
	c.Close()
}

// On a quiet connection a write goes out at once (no timer to arm); one
// that follows within the delay is coalesced.
func TestQuietWriteGoesAtOnce(t *testing.T) {
	ec := &errConn{}
	c := New(ec, Options{})
	c.delay = time.Hour // the second write must wait for Flush
	c.Write([]byte("a"))
	ec.mu.Lock()
	got := ec.out.String()
	ec.mu.Unlock()
	if got != "a" {
		t.Fatalf("after a quiet write the connection has %q", got)
	}
	c.Write([]byte("b"))
	ec.mu.Lock()
	got = ec.out.String()
	ec.mu.Unlock()
	if got != "a" {
		t.Fatalf("a write right after another was not coalesced: %q", got)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if ec.out.String() != "ab" {
		t.Fatalf("after Flush: %q", ec.out.String())
	}
	c.Close()
}
