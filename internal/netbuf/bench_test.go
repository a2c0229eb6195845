package netbuf

import (
	"io"
	"net"
	"testing"
)

// BenchmarkAck writes one 4-byte PUBACK per op to a loopback TCP socket
// whose peer drains it: straight to the socket (one write system call
// each) and through a Conn (coalesced).
func BenchmarkAck(b *testing.B) {
	ack := []byte{0x40, 0x02, 0x00, 0x01}
	for _, name := range []string{"direct", "netbuf"} {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			var w net.Conn = raw
			if name == "netbuf" {
				w = New(raw, Options{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(ack); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
