package broker

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// BenchmarkInlinePublish: one device publishes QoS 1 readings through the
// embedded broker to an InlineSource (a handler that does nothing), as
// fast as the PUBACKs come back, pipelined; per message (issue 19: the
// broker's throughput with its per-client settings).
func BenchmarkInlinePublish(b *testing.B) {
	benchInline(b, NewInlineSource(func(string, []byte) {}))
}

// BenchmarkAckInlinePublish is BenchmarkInlinePublish through an
// AckInlineSource (issue 19) whose handler acknowledges at once: the broker
// sends the PUBACK from ack, not from its own publish path.
func BenchmarkAckInlinePublish(b *testing.B) {
	benchInline(b, NewAckInlineSource(func(_ string, _ []byte, ack func()) error { ack(); return nil }))
}

func benchInline(b *testing.B, src *InlineSource) {
	_, addr := startInline(b, src)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	id := "el-1"
	connect := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(connect))}, connect...)); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(c)
	var ack [4]byte
	if _, err := io.ReadFull(r, ack[:]); err != nil || ack[0] != 0x20 {
		b.Fatalf("CONNACK % x: %v", ack, err)
	}
	topic := "fw/v1/up/el-1/telemetry"
	payload := `{"ts":1796118000000,"temp_c":[41.5,40.2,39.8,38.1]}`
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(append(body, topic...), 0, 1)
	body = append(body, payload...)
	pub := append([]byte{0x32, byte(len(body))}, body...)
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		w := bufio.NewWriter(c)
		for i := range b.N {
			binary.BigEndian.PutUint16(pub[len(pub)-len(payload)-2:], uint16(i%65535+1))
			if _, err := w.Write(pub); err != nil {
				done <- err
				return
			}
			if i%64 == 63 {
				w.Flush()
			}
		}
		done <- w.Flush()
	}()
	for range b.N {
		if _, err := io.ReadFull(r, ack[:]); err != nil || ack[0] != 0x40 {
			b.Fatalf("PUBACK % x: %v", ack, err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
