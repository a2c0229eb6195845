package durable

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

// FuzzReplay opens a log whose segment holds arbitrary bytes, after a
// record written by the log itself: Open never fails or panics on them,
// and replays only whole line protocol (DecodeRecord), starting with the
// good record.
func FuzzReplay(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x0a\x00\x00\x00\x00\x00\x00\x00Lm f=1 1\n"))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\xff\xff\xff\xff\x01\x02\x03\x04L"))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, tail []byte) {
		fs := spooltest.New()
		w := newFakeWriter()
		l, err := OpenLog("wal", time.Millisecond, w, Options{FS: fs, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		l.Write(line(1))
		l.commit(nil)
		l.sp.Close()
		// Append the fuzzed bytes to the segment.
		h, err := fs.OpenFile("wal/00000000000000000001.seg", 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		size, _ := h.Size()
		h.WriteAt(tail, size)
		h.Sync()
		h.Close()
		w2 := newFakeWriter()
		l2, err := OpenLog("wal", time.Millisecond, w2, Options{FS: fs, Logger: quiet})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l2.sp.Close()
		got := w2.got()
		if len(got) == 0 || got[0] != string(line(1)) {
			t.Fatalf("replayed %q, want the good record first", got)
		}
		for _, g := range got {
			if !strings.HasSuffix(g, "\n") || strings.IndexByte(g, 0) >= 0 {
				t.Fatalf("replayed a broken line %q", g)
			}
		}
	})
}

// FuzzDecodeRecord: DecodeRecord never panics, and what it accepts is
// whole lines it counts right.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("Lm f=1 1\n"))
	f.Add([]byte("L"))
	f.Add([]byte("X\n"))
	f.Fuzz(func(t *testing.T, rec []byte) {
		lines, n, err := DecodeRecord(rec)
		if err != nil {
			return
		}
		if n != strings.Count(string(lines), "\n") || n == 0 || lines[len(lines)-1] != '\n' {
			t.Fatalf("DecodeRecord(%q) = %q, %d", rec, lines, n)
		}
	})
}
