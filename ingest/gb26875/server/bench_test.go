package server

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

type discard struct{}

func (discard) Handle(string, []byte) {}

// BenchmarkFrame: one frame through the centre's side without the socket: parse, session (确认),
// translation into v1 messages, for a listed point's fire alarm (the worked example) and an unlisted point's.
// The pipeline itself is not part of it (BenchmarkPipeline in cmd/firewatch measures it).
func BenchmarkFrame(b *testing.B) {
	for _, name := range []string{"frames/worked_example.hex", "comp106_fire.hex"} {
		b.Run(name, func(b *testing.B) {
			l, err := devices.LoadLedger("testdata/ledger.yaml")
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(DefaultConfig(), l, discard{}, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})), nil)
			if err != nil {
				b.Fatal(err)
			}
			raw := hexFile(b, name)
			c := s.newConn(netip.MustParseAddr("127.0.0.1"))
			// Without retransmission detection, so that every frame is evaluated (a serial number runs
			// out after 65,536 frames; stream's BenchmarkSession measures Dedup).
			c.sess.Dedup = nil
			var f gb26875.Frame
			ev := stream.Event{Frame: &f, Aligned: true}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ev.Raw, ev.Err = raw, gb26875.Parse(raw, &f)
				if err := c.sess.Handle(&ev, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
