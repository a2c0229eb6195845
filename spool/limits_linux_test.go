package spool_test

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/spool"
)

// These tests make the real file system fail with the process's resource
// limits, so that they also ran against the spool before it had an FS
// seam: RLIMIT_FSIZE fails a write in the middle of a record (EFBIG, as
// ENOSPC would), RLIMIT_NOFILE fails the creation of a new segment
// (EMFILE). The limits are process-wide: each test sets them only around
// the one call that must fail.

func withLimit(t *testing.T, res int, cur uint64, f func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(res, &old); err != nil {
		testenv.Skip(t, "getrlimit: %v", err)
	}
	lim := old
	lim.Cur = cur
	if err := syscall.Setrlimit(res, &lim); err != nil {
		testenv.Skip(t, "setrlimit: %v", err)
	}
	defer syscall.Setrlimit(res, &old)
	f()
}

func bigRec(i int) []byte {
	return append([]byte(fmt.Sprintf("r%06d.", i)), bytes.Repeat([]byte("x"), 90)...)
}

// TestAppendAtFileSizeLimit (defect 1): a write that fails in the middle of
// a record left the file offset past the torn bytes, so every later record
// was unreadable and a restart cut them all.
func TestAppendAtFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, spool.Options{})
	var failed error
	n := 0
	withLimit(t, syscall.RLIMIT_FSIZE, 1000, func() {
		for ; n < 100; n++ {
			if failed = s.Append(bigRec(n)); failed != nil {
				break
			}
		}
	})
	if failed == nil {
		testenv.Skip(t, "the file size limit did not fail a write")
	}
	t.Logf("append %d failed: %v", n, failed)
	for i := 100; i < 105; i++ {
		if err := s.Append(bigRec(i)); err != nil {
			t.Fatalf("append after the limit is lifted: %v", err)
		}
	}
	var w []string
	for i := range n {
		w = append(w, string(bigRec(i)))
	}
	for i := 100; i < 105; i++ {
		w = append(w, string(bigRec(i)))
	}
	recs, err := s.Peek(1000, 1<<20)
	if err != nil {
		t.Fatalf("Peek after a torn append: %v", err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, string(r))
	}
	eq(t, "live", got, w)
	s.Close()
	s = mustOpen(t, dir, spool.Options{})
	defer s.Close()
	eq(t, "after restart", drainAll(t, s), w)
}

// TestRotationWithoutFileDescriptors (defect 2): a new segment that cannot
// be opened closed the old one first, so every later append failed until
// a restart.
func TestRotationWithoutFileDescriptors(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, spool.Options{MaxBytes: 1 << 20, SegmentBytes: 64 << 10})
	defer s.Close()
	for i := range 618 { // 618 × 106 bytes: the next append rotates
		if err := s.Append(bigRec(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The next open gets the lowest free descriptor: a limit at it fails
	// that open.
	probe, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	next := probe.Fd()
	probe.Close()
	var failed error
	withLimit(t, syscall.RLIMIT_NOFILE, uint64(next), func() {
		failed = s.Append(bigRec(1000))
	})
	if failed == nil {
		testenv.Skip(t, "the descriptor limit did not fail the rotation")
	}
	t.Logf("append at the rotation failed: %v", failed)
	for i := 618; i < 700; i++ {
		if err := s.Append(bigRec(i)); err != nil {
			t.Fatalf("append after a failed rotation: %v", err)
		}
	}
	if s.Len() != 700 {
		t.Errorf("Len = %d, want 700", s.Len())
	}
}
