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
	var n int
	var rerr, werr error
	err := c.raw.Read(func(fd uintptr) bool {
		dst := p
		if dst == nil {
			if c.rbuf == nil {
				c.rbuf = getBuf(c.rsize)
			}
			dst = *c.rbuf
		}
		for {
			n, rerr = syscall.Read(int(fd), dst)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			n, rerr = 0, nil
			if p == nil {
				c.releaseRead()
			}
			// Closing the connection here would wait for this read to end.
			werr = c.flushBeforeWaitNoClose()
			return werr != nil
		}
		return true
	})
	if n <= 0 && p == nil && c.rbuf != nil {
		c.releaseRead()
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
