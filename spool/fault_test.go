package spool_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/spool"
	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

func rec(i int) []byte { return []byte(fmt.Sprintf("record-%06d", i)) }

func mustOpen(t testing.TB, dir string, opt spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drainAll peeks and commits everything, returning the records.
func drainAll(t testing.TB, s *spool.Spool) []string {
	t.Helper()
	var out []string
	for range 100000 {
		recs, err := s.Peek(37, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			out = append(out, string(r))
		}
		if err := s.Commit(len(recs)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("drain does not end")
	return nil
}

func want(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, string(rec(i)))
	}
	return out
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s:\n got %d records %v\nwant %d records %v", what, len(got), short(got), len(want), short(want))
	}
}

func short(s []string) []string {
	if len(s) > 12 {
		return append(append(s[:6:6], "…"), s[len(s)-6:]...)
	}
	return s
}

// TestAppendFailureCutsPartialRecord (defect 1): an ENOSPC or EIO in the
// middle of a record leaves nothing of it behind; appends after the disk
// has room again are read back and survive a restart.
func TestAppendFailureCutsPartialRecord(t *testing.T) {
	for _, tear := range []int{0, 3, 8, 11} {
		for _, e := range []error{spooltest.ENOSPC, spooltest.EIO} {
			t.Run(fmt.Sprintf("%v/tear%d", e, tear), func(t *testing.T) {
				fs := spooltest.New()
				opt := spool.Options{FS: fs}
				s := mustOpen(t, "/sp", opt)
				for i := range 5 {
					if err := s.Append(rec(i)); err != nil {
						t.Fatal(err)
					}
				}
				// The header and the payload are written separately: tear
				// either.
				fs.Inject(spooltest.Fault{Op: spooltest.OpWrite, Err: e, Tear: tear % 8, After: tear / 8, Times: 1})
				err := s.Append(rec(99))
				if !errors.Is(err, e) {
					t.Fatalf("Append = %v, want %v", err, e)
				}
				for i := 5; i < 10; i++ {
					if err := s.Append(rec(i)); err != nil {
						t.Fatal(err)
					}
				}
				if st := s.Stats(); st.Errors == 0 || st.Records != 10 {
					t.Errorf("Stats = %+v, want 10 records and the error counted", st)
				}
				// Restart first: Open must keep every record.
				s.Close()
				s = mustOpen(t, "/sp", opt)
				defer s.Close()
				eq(t, "after restart", drainAll(t, s), want(0, 10))
			})
		}
	}
}

// TestAppendFailureWithFailedTruncate: when even cutting the partial record
// fails, the segment is sealed and the next record starts a new one.
func TestAppendFailureWithFailedTruncate(t *testing.T) {
	fs := spooltest.New()
	opt := spool.Options{FS: fs}
	s := mustOpen(t, "/sp", opt)
	s.Append(rec(0))
	fs.Inject(spooltest.Fault{Op: spooltest.OpWrite, Err: spooltest.EIO, Tear: 5, Times: 1})
	fs.Inject(spooltest.Fault{Op: spooltest.OpTruncate, Err: spooltest.EIO, Times: 1})
	if err := s.Append(rec(99)); err == nil {
		t.Fatal("Append succeeded through a failed write")
	}
	for i := 1; i < 4; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	eq(t, "live", peekAll(t, s), want(0, 4))
	s.Close()
	s = mustOpen(t, "/sp", opt)
	defer s.Close()
	eq(t, "after restart", drainAll(t, s), want(0, 4))
}

// peekAll returns what one Peek returns, without committing.
func peekAll(t *testing.T, s *spool.Spool) []string {
	t.Helper()
	recs, err := s.Peek(1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r))
	}
	return out
}

// TestFailedRotationKeepsSpoolUsable (defect 2): a new segment that cannot
// be created fails that append only; the old segment stays open and the
// next append rotates.
func TestFailedRotationKeepsSpoolUsable(t *testing.T) {
	fs := spooltest.New()
	opt := spool.Options{FS: fs, MaxBytes: 1 << 20, SegmentBytes: 64}
	s := mustOpen(t, "/sp", opt)
	s.Append(rec(0))
	s.Append(rec(1))
	s.Append(rec(2)) // 3 × 21 bytes: the next needs a new segment
	fs.Inject(spooltest.Fault{Op: spooltest.OpCreate, Err: spooltest.ENOSPC, Times: 1, Match: ".seg"})
	if err := s.Append(rec(99)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append = %v, want ENOSPC", err)
	}
	for i := 3; i < 8; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("Append after the failed rotation: %v", err)
		}
	}
	eq(t, "live", peekAll(t, s), want(0, 8))
	s.Close()
	s = mustOpen(t, "/sp", opt)
	defer s.Close()
	eq(t, "after restart", drainAll(t, s), want(0, 8))
}

// TestFsyncFailureSealsSegment: after a failed fsync new records go to a
// new segment; the unsynced ones stay queued.
func TestFsyncFailureSealsSegment(t *testing.T) {
	fs := spooltest.New()
	opt := spool.Options{FS: fs}
	s := mustOpen(t, "/sp", opt)
	s.Append(rec(0))
	fs.Inject(spooltest.Fault{Op: spooltest.OpSync, Err: spooltest.EIO, Times: 1, Match: ".seg"})
	if err := s.Append(rec(1)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append = %v, want EIO", err)
	}
	if s.Stats().Healthy {
		t.Error("Healthy after a failed fsync")
	}
	if err := s.Append(rec(2)); err != nil {
		t.Fatal(err)
	}
	if !s.Stats().Healthy {
		t.Error("not Healthy after a good append")
	}
	segs := 0
	for _, n := range fs.Files() {
		if strings.HasSuffix(n, ".seg") {
			segs++
		}
	}
	if segs != 2 {
		t.Errorf("%d segments, want 2: the failed one sealed", segs)
	}
	eq(t, "live", drainAll(t, s), want(0, 3))
	s.Close()
}

// TestTransientReadErrorLosesNothing (defect 6): a read error at Open or
// at Peek is retried; nothing is cut.
func TestTransientReadErrorLosesNothing(t *testing.T) {
	fs := spooltest.New()
	opt := spool.Options{FS: fs, SegmentBytes: 64, MaxBytes: 1 << 20}
	s := mustOpen(t, "/sp", opt)
	for i := range 20 {
		s.Append(rec(i))
	}
	s.Close()
	fs.Inject(spooltest.Fault{Op: spooltest.OpRead, Err: spooltest.EIO, Times: 2, Match: ".seg"})
	s = mustOpen(t, "/sp", opt)
	defer s.Close()
	fs.Inject(spooltest.Fault{Op: spooltest.OpRead, Err: spooltest.EIO, Times: 2, Match: ".seg"})
	eq(t, "after read errors", drainAll(t, s), want(0, 20))
	if st := s.Stats(); st.Corrupt != 0 || st.Errors == 0 {
		t.Errorf("Stats = %+v, want errors counted and nothing corrupt", st)
	}
}

// TestFlipInSealedSegmentAtRuntime (defect 6): bit rot in a sealed segment
// after Open costs the record it hits, counted; the records after it
// arrive.
func TestFlipInSealedSegmentAtRuntime(t *testing.T) {
	fs := spooltest.New()
	opt := spool.Options{FS: fs, SegmentBytes: 128, MaxBytes: 1 << 20}
	s := mustOpen(t, "/sp", opt)
	defer s.Close()
	for i := range 30 {
		s.Append(rec(i))
	}
	// Segments of 6 records of 21 bytes: flip the payload of record 8, in
	// the second segment.
	fs.Flip("/sp/00000000000000000002.seg", 2*21+10)
	got := drainAll(t, s)
	w := append(want(0, 8), want(9, 30)...)
	eq(t, "after a flip", got, w)
	if st := s.Stats(); st.Corrupt != 1 || st.CorruptBytes != 21 {
		t.Errorf("Stats = %+v, want 1 corrupt region of 21 bytes", st)
	}
}

// TestAckRewriteFailure: a failed ack write is returned by Commit but the
// records are committed in memory and the spool goes on.
func TestAckRewriteFailure(t *testing.T) {
	fs := spooltest.New()
	s := mustOpen(t, "/sp", spool.Options{FS: fs})
	defer s.Close()
	for i := range 4 {
		s.Append(rec(i))
	}
	recs, _ := s.Peek(2, 1<<20)
	fs.Inject(spooltest.Fault{Op: spooltest.OpRename, Err: spooltest.EIO, Times: 1, Match: "ack"})
	if err := s.Commit(len(recs)); err == nil {
		t.Error("Commit hid a failed ack write")
	}
	eq(t, "after the failed ack", drainAll(t, s), want(2, 4))
}

// The tests below use the real file system, as the old code did, to show
// the defects it had.

// TestStaleAckAfterPowerCut (defect 4): with sync_every > 0, records
// committed before their fsync and then lost to a power cut left the ack
// pointing past the end; after new appends the next Open failed.
func TestStaleAckAfterPowerCut(t *testing.T) {
	dir := t.TempDir()
	opt := spool.Options{SyncEvery: time.Hour, AckEvery: 0}
	s := mustOpen(t, dir, opt)
	s.Append(rec(0))
	s.Sync()
	for i := 1; i < 5; i++ {
		s.Append(rec(i))
	}
	recs, err := s.Peek(10, 1<<20)
	if err != nil || len(recs) != 5 {
		t.Fatalf("Peek = %d, %v", len(recs), err)
	}
	if err := s.Commit(5); err != nil {
		t.Fatal(err)
	}
	// Power cut: only the synced first record reached the disk; the ack
	// did (it is fsynced).
	seg := filepath.Join(dir, "00000000000000000001.seg")
	if err := os.Truncate(seg, 21); err != nil {
		t.Fatal(err)
	}
	s2, err := spool.Open(dir, opt) // s is abandoned, as by the power cut
	if err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 12; i++ {
		s2.Append(rec(i))
	}
	s2.Close()
	s3, err := spool.Open(dir, opt)
	if err != nil {
		t.Fatalf("Open after new appends: %v", err)
	}
	defer s3.Close()
	eq(t, "after the second restart", drainAll(t, s3), want(5, 12))
	_ = s
}

// TestZeroFilledTail (defect 5): a tail of zeros (power cut after the size
// but before the data reached the flash) is not read as empty records.
func TestZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, spool.Options{})
	for i := range 3 {
		s.Append(rec(i))
	}
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, "00000000000000000001.seg"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()
	s = mustOpen(t, dir, spool.Options{})
	defer s.Close()
	if n := s.Len(); n != 3 {
		t.Fatalf("Len = %d after a zero-filled tail, want 3", n)
	}
	for _, r := range drainAll(t, s) {
		if len(r) == 0 {
			t.Fatal("an empty phantom record was delivered")
		}
	}
	if err := s.Append(nil); !errors.Is(err, spool.ErrEmpty) {
		t.Errorf("Append(empty) = %v, want ErrEmpty", err)
	}
}

// TestCorruptMiddleKeepsTheRest (defect 6): one bad byte in a sealed
// segment costs only the record it hits, counted; the rest of the segment
// and the later segments are kept.
func TestCorruptMiddleKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	opt := spool.Options{SegmentBytes: 128, MaxBytes: 1 << 20}
	s := mustOpen(t, dir, opt)
	for i := range 30 {
		s.Append(rec(i))
	}
	s.Close()
	seg := filepath.Join(dir, "00000000000000000002.seg") // records 6..11
	b, _ := os.ReadFile(seg)
	b[2*21+10] ^= 0xFF // the payload of record 8
	os.WriteFile(seg, b, 0o644)
	s = mustOpen(t, dir, opt)
	defer s.Close()
	if s.Len() != 29 {
		t.Fatalf("Len = %d after one bad byte, want 29", s.Len())
	}
	eq(t, "after a bad byte", drainAll(t, s), append(want(0, 8), want(9, 30)...))
	if st := s.Stats(); st.Corrupt != 1 {
		t.Errorf("Corrupt = %d, want 1", st.Corrupt)
	}
}

// TestDropPolicyKeepsOrder (defect 7): the events a full spool keeps stay
// in their place: a clear never overtakes its raise, nor data after it.
func TestDropPolicyKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	keep := func(r []byte) bool { return bytes.HasPrefix(r, []byte("event")) }
	s := mustOpen(t, dir, spool.Options{MaxBytes: 2048, SegmentBytes: 256, Keep: keep})
	const n = 600
	for i := range n {
		r := rec(i)
		if i%50 == 0 {
			r = []byte(fmt.Sprintf("event-%06d", i))
		}
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = mustOpen(t, dir, spool.Options{MaxBytes: 2048, SegmentBytes: 256, Keep: keep})
	defer s.Close()
	got := drainAll(t, s)
	num := func(r string) int {
		var k int
		fmt.Sscanf(r[strings.IndexByte(r, '-')+1:], "%d", &k)
		return k
	}
	events := 0
	for i, r := range got {
		if keep([]byte(r)) {
			events++
		}
		if i > 0 && num(got[i-1]) >= num(r) {
			t.Fatalf("out of order: %s then %s", got[i-1], r)
		}
	}
	if events != n/50 {
		t.Errorf("%d of %d events survived", events, n/50)
	}
}

// TestLastingReadErrorSetsSegmentAside: a segment that stays unreadable
// does not stop the queue for good: after 20 failed Peeks it is set aside
// as .bad, counted, and the later segments are delivered. At Open it is
// set aside at once (after retries), so the spool still opens.
func TestLastingReadErrorSetsSegmentAside(t *testing.T) {
	for _, atOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("open=", atOpen), func(t *testing.T) {
			fs := spooltest.New()
			opt := spool.Options{FS: fs, SegmentBytes: 128, MaxBytes: 1 << 20, UnreadableAfter: time.Nanosecond}
			s := mustOpen(t, "/sp", opt)
			for i := range 18 { // three segments of six
				s.Append(rec(i))
			}
			bad := spooltest.Fault{Op: spooltest.OpRead, Err: spooltest.EIO, Match: "00000000000000000001.seg"}
			if atOpen {
				s.Close()
				fs.Inject(bad)
				s = mustOpen(t, "/sp", opt)
			} else {
				fs.Inject(bad)
			}
			defer s.Close()
			fails := 0
			var got []string
			for range 100 {
				recs, err := s.Peek(100, 1<<20)
				if err != nil {
					fails++
					continue
				}
				for _, r := range recs {
					got = append(got, string(r))
				}
				s.Commit(len(recs))
				if len(recs) == 0 {
					break
				}
			}
			eq(t, "delivered", got, want(6, 18))
			if !atOpen && fails < 19 {
				t.Errorf("set aside after %d failed Peeks, want about 20", fails)
			}
			if st := s.Stats(); st.Corrupt != 1 || st.CorruptBytes != 6*21 {
				t.Errorf("Stats = %+v, want one region of 126 bytes", st)
			}
			if fs.Size("/sp/00000000000000000001.seg.bad") != 6*21 {
				t.Errorf("files %v: the unreadable segment is not kept as .bad", fs.Files())
			}
		})
	}
}
