//go:build !unix

package netbuf

const rawReadSupported = false

func (c *Conn) rawRead(p []byte) (int, error) { panic("netbuf: no raw reads on this platform") }
