package pipeline

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// The state file written in a stream has the layout the reader expects:
// the magic, then each section as its length (8 bytes, little endian) and
// bytes; a damaged file is refused whole (rule state and liveness start
// afresh), without reading past its end.
func TestCheckpointFileLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewatch.state")
	a := bytes.Repeat([]byte("rule-state"), 100_000) // larger than the writer's buffer
	b := []byte("liveness")
	if err := writeSectionsAtomic(path,
		func(w io.Writer) error { _, err := w.Write(a); return err },
		func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString(checkpointMagic)
	for _, s := range [][]byte{a, b} {
		binary.Write(&want, binary.LittleEndian, uint64(len(s)))
		want.Write(s)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("state file of %d bytes differs from the expected %d", len(got), want.Len())
	}
	if m, _ := filepath.Glob(path + ".tmp*"); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, bad := range map[string][]byte{
		"truncated":    got[:len(got)-3],
		"short header": got[:len(checkpointMagic)+4],
		"not ours":     []byte("NOTSTATE...."),
		"empty":        nil,
	} {
		p := filepath.Join(t.TempDir(), "bad.state")
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		// A damaged file stops before the rule engine is touched (nil here).
		if r := readCheckpoint(p, nil, nil, 0, quiet); r != nil {
			t.Errorf("%s: restored %v", name, r)
		}
	}
}
