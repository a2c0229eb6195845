package gateway

import (
	"path/filepath"
	"testing"
)

// TestSeqNeverRepeats: after a clean stop numbering continues exactly;
// after a power cut (no save) it jumps ahead but never repeats.
func TestSeqNeverRepeats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq")
	s, err := openSeqs(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if n := s.next("el-1"); n != uint32(i) {
			t.Fatalf("seq %d, want %d", n, i)
		}
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	s, _ = openSeqs(path)
	if n := s.next("el-1"); n != 5 {
		t.Fatalf("after a clean stop: %d, want 5", n)
	}
	for range 10 {
		s.next("el-1")
	}
	// Power cut: no save.
	s, _ = openSeqs(path)
	n := s.next("el-1")
	if n <= 15 {
		t.Fatalf("after a power cut: %d repeats a number already sent (≤ 15)", n)
	}
	if s.next("hy-1") != 0 {
		t.Error("a new device does not start at 0")
	}
}
