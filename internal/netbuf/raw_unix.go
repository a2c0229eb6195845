//go:build unix

package netbuf

import (
	"io"
	"net"
	"os"
	"syscall"
)

const rawReadSupported = true

// rawRead reads once into p, or into a pooled buffer (c.rbuf) when p is
// nil, through the connection's file descriptor: when nothing is there to
// read it sends what is buffered for writing and gives the read buffer back
// before it waits, so that a waiting connection holds no buffer. Deadlines
// apply as they do to Read.
func (c *Conn) rawRead(p []byte) (int, error) {
	if c.readFn == nil {
		c.readFn = c.readOnce // one closure per connection, not one per read
	}
	c.rp, c.rn, c.rerr, c.rwerr = p, 0, nil, nil
	err := c.raw.Read(c.readFn)
	n, rerr, werr := c.rn, c.rerr, c.rwerr
	c.rp, c.rerr, c.rwerr = nil, nil, nil
	if n <= 0 && p == nil && c.rbuf != nil {
		c.releaseRead()
	}
	if n <= 0 && c.rbusy { // the reader stops here: no later wait sends the writes
		c.rbusy = false
		c.unbusy()
	}
	switch {
	case werr != nil:
		c.Conn.Close()
		return 0, werr
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: c.netName(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is rawRead's callback: it reads into c.rp (or the pooled
// buffer) and reports whether the read is done; on EAGAIN it gives the
// buffer back and flushes before the wait.
func (c *Conn) readOnce(fd uintptr) bool {
	if !c.rbusy {
		c.rbusy = true
		c.busy.Store(true)
	}
	dst := c.rp
	if dst == nil {
		if c.rbuf == nil {
			c.rbuf = getBuf(c.rsize)
		}
		dst = *c.rbuf
	}
	for {
		c.rn, c.rerr = syscall.Read(int(fd), dst)
		if c.rerr != syscall.EINTR {
			break
		}
	}
	if c.rerr == syscall.EAGAIN {
		c.rn, c.rerr = 0, nil
		if c.rp == nil {
			c.releaseRead()
		}
		// Closing the connection here would wait for this read to end.
		c.rbusy = false
		c.rwerr = c.park()
		return c.rwerr != nil
	}
	return true
}
