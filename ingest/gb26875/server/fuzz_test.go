package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// checker is a pipeline that decodes every message as firewatch does and fails on a rejection: whatever a
// UITD uploads, the endpoint only makes messages the pipeline takes.
type checker struct {
	t   *testing.T
	dec *ingest.Decoder
	n   int
}

func (c *checker) Handle(topic string, payload []byte) {
	c.n++
	if _, rejects := c.dec.Decode(topic, payload, 1_800_000_000_000); len(rejects) > 0 {
		c.t.Fatalf("%s %s rejected: %v", topic, payload, rejects)
	}
}

// FuzzCommit feeds arbitrary ADUs (the upload types' test frames as seeds) through the endpoint's
// translation into v1 messages.
func FuzzCommit(f *testing.F) {
	for _, dir := range []string{"../testdata/frames", "testdata"} {
		names, _ := filepath.Glob(filepath.Join(dir, "*.hex"))
		for _, n := range names {
			name := filepath.Base(n)
			if dir != "testdata" {
				name = "frames/" + name
			}
			b := hexFile(f, name)
			var fr gb26875.Frame
			if gb26875.Parse(b, &fr) == nil {
				f.Add(fr.ADU)
			}
		}
	}
	l, err := devices.LoadLedger("testdata/ledger.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, adu []byte) {
		var up gb26875.Upload
		if up.Unmarshal(adu) != nil {
			return
		}
		c := &checker{t: t, dec: ingest.NewDecoder(l)}
		s, err := New(DefaultConfig(), l, c, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		st := s.uitds[gb26875.Address{1, 2, 3, 4, 5, 6}]
		if err := s.commit(st, &gb26875.Frame{}, &up); err != nil {
			t.Fatal(err)
		}
		if c.n == 0 {
			t.Fatal("not even the UITD's heartbeat was sent")
		}
	})
}
