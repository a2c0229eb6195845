package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options tune a spool. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds the segment files on disk. Default 64 MiB.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is sealed and a new one
	// started. Default MaxBytes/16, at least 64 KiB.
	SegmentBytes int64
	// SyncEvery is the fsync policy of appends: 0 syncs every append
	// before it returns; a positive duration syncs at most that often.
	SyncEvery time.Duration
	// AckEvery is how often Commit rewrites the ack file; 0: every Commit.
	AckEvery time.Duration
	// Keep marks priority records (alarms, events) that the drop policy
	// keeps when the spool is full. nil keeps nothing.
	Keep func(rec []byte) bool
	// OnDrop, when set, is called with every record the drop policy
	// removes, before it is gone, so the owner can count what it held. It
	// runs under the spool's lock and must not call the spool.
	OnDrop func(rec []byte)
	// UnreadableAfter is how long a segment may fail to read (and at
	// least 20 Peeks in a row) before its unreadable part is set aside,
	// counted, so that the records behind it flow again. Default 1 minute.
	UnreadableAfter time.Duration
	// FS is the file system; nil means OS. Tests inject faults here.
	FS FS
	// Logger receives the spool's reports of corrupt segments and failed
	// file operations; nil means slog.Default().
	Logger *slog.Logger
}

// MaxRecord is the largest record the spool takes.
const MaxRecord = 16 << 20

const headerLen = 8

// readRetries is how often a failed read is tried again before the
// segment is treated as damaged: a transient EIO must not cost records.
// maxReadFails is how many Peeks in a row (over Options.UnreadableAfter)
// may fail to read a segment before it is repaired (its unreadable part set
// aside and counted).
const (
	readRetries  = 3
	maxReadFails = 20
)

var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge is returned for a record larger than MaxRecord or the
	// segment size.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrEmpty is returned for an empty record: a zero-filled tail after a
	// power cut reads as length 0 with CRC 0, so length 0 marks garbage.
	ErrEmpty = errors.New("spool: empty record")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	id      uint64
	size    int64
	records int // records at or after the ack position
	// sealed: a write or fsync of this segment failed and could not be
	// undone; the next append starts a new segment.
	sealed bool
	// suspect: an fsync of this segment failed, so its unsynced records
	// may never reach the disk even if a later fsync succeeds (the kernel
	// may have dropped the pages). The next sync rewrites it.
	suspect bool
	// kept: the drop policy compacted it to its kept records only.
	kept bool
}

// Stats describe a spool's contents and health.
type Stats struct {
	// Records and Bytes are Len and Bytes.
	Records int
	Bytes   int64
	// Dropped counts records the drop policy removed since Open.
	Dropped uint64
	// Corrupt counts regions of segment files that were cut off or skipped
	// since Open because they were torn (a power cut during a write),
	// failed their checksum or could not be read; each held at least part
	// of one record. CorruptBytes is their size.
	Corrupt, CorruptBytes uint64
	// Errors counts failed file operations (write, fsync, read, create,
	// rename) since Open; LastError is the latest.
	Errors    uint64
	LastError string
	// Healthy is false while the latest file operation failed.
	Healthy bool
}

// Spool is a durable FIFO of records. It is safe for concurrent use by one
// producer and one consumer (and more).
type Spool struct {
	dir string
	opt Options
	fs  FS
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first; the last one is written
	w        File
	ackSeg   uint64
	ackOff   int64
	records  int
	bytes    int64
	dropped  uint64
	corrupt  uint64
	corruptB uint64
	errs     uint64
	lastErr  string
	failing  bool
	// ackStale: the ack file points where new records could land (Open
	// could not correct it); appends wait until it is rewritten.
	ackStale bool
	// readFails counts Peeks in a row that failed to read, since
	// readFailSince.
	readFails     int
	readFailSince time.Time
	dirty         bool // appended since the last fsync
	lastSync      time.Time
	lastAck       time.Time
	ackDirty      bool
	peekEnds      []pos // end positions of the records the last Peek returned
	ready         chan struct{}
	hdr           [headerLen]byte // scratch of append
}

type pos struct {
	seg uint64
	off int64
}

// Open opens (or creates) the spool in dir, recovering from a crash: a
// torn record at the end of a segment is cut off, a corrupt one in the
// middle is skipped, both counted in Stats.
func Open(dir string, opt Options) (*Spool, error) {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 64 << 20
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = max(opt.MaxBytes/16, 64<<10)
	}
	if opt.UnreadableAfter <= 0 {
		opt.UnreadableAfter = time.Minute
	}
	s := &Spool{dir: dir, opt: opt, fs: opt.FS, log: opt.Logger, ready: make(chan struct{}, 1)}
	if s.fs == nil {
		s.fs = OS
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("spool", dir)
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := checkFormat(s.fs, dir, s.log); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	if s.records > 0 {
		s.ready <- struct{}{}
	}
	return s, nil
}

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", id))
}

// fail records a failed file operation for Stats.
func (s *Spool) fail(err error) {
	s.errs++
	s.lastErr = err.Error()
	s.failing = true
}

func (s *Spool) ok() { s.failing = false }

func (s *Spool) recover() error {
	ackSeg, ackOff, ackOK := s.readAck()
	s.ackSeg, s.ackOff = ackSeg, ackOff
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var ids []uint64
	for _, n := range names {
		if strings.HasSuffix(n, ".tmp") {
			s.fs.Remove(filepath.Join(s.dir, n)) // an unfinished rewrite
			continue
		}
		if !strings.HasSuffix(n, ".seg") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(n, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if id < s.ackSeg {
			s.fs.Remove(s.segPath(id)) // fully acknowledged before the crash
			continue
		}
		ack := int64(-1)
		if id == s.ackSeg {
			ack = s.ackOff
		}
		seg, newAck, err := s.check(id, ack, func() bool { return true })
		if err != nil {
			return err
		}
		if seg == nil {
			continue // unreadable: set aside
		}
		if id == s.ackSeg {
			s.ackOff = newAck
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.records += seg.records
	}
	if len(s.segs) == 0 {
		next := max(s.ackSeg, 1)
		if len(ids) > 0 {
			next = max(next, ids[len(ids)-1]+1)
		}
		s.segs = append(s.segs, &segment{id: next})
		s.ackSeg, s.ackOff = next, 0
	} else if s.segs[0].id > s.ackSeg {
		s.ackSeg, s.ackOff = s.segs[0].id, 0
	}
	// An ack that pointed past the durable end of its segment (records
	// committed before their fsync, then a power cut) or between records
	// is rewritten now, before new appends land where it points.
	if !ackOK || s.ackSeg != ackSeg || s.ackOff != ackOff {
		if err := s.writeAck(); err != nil {
			// Open anyway (a full disk must not keep the uplink down:
			// what is spooled can still be sent), but take no append
			// until the ack is rewritten.
			s.ackStale = true
			s.log.Error("spool: cannot correct the ack file; appends wait for it", "err", err)
		}
	}
	tail := s.segs[len(s.segs)-1]
	w, err := s.fs.OpenFile(s.segPath(tail.id), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	return nil
}

// readSegment reads a whole segment file, retrying failed reads.
func (s *Spool) readSegment(id uint64) ([]byte, error) {
	var err error
	for range readRetries {
		var b []byte
		if b, err = s.readFile(s.segPath(id)); err == nil {
			return b, nil
		}
		s.fail(err)
	}
	return nil, err
}

func (s *Spool) readFile(name string) ([]byte, error) {
	f, err := s.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if k, err := f.ReadAt(b, 0); err != nil && int64(k) != n {
		return nil, err
	}
	return b, nil
}

// recordAt returns the length of the valid record at off in data, or -1.
func recordAt(data []byte, off int) int {
	if off+headerLen > len(data) {
		return -1
	}
	l := int(binary.LittleEndian.Uint32(data[off:]))
	if l == 0 || l > MaxRecord || off+headerLen+l > len(data) {
		return -1
	}
	if crc32.Checksum(data[off+headerLen:off+headerLen+l], castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
		return -1
	}
	return l
}

// check validates segment id. Records that fail their checksum are
// skipped up to the next valid record (found by its length and CRC); a
// torn tail is cut off. A segment with holes is rewritten without them.
// ack is the ack offset when id is the ack segment, else -1; check returns
// it moved to a record boundary (never past a record it has not seen
// whole, so a doubt means a record is delivered again) in the rewritten
// file. A segment that cannot be read is renamed to .bad and nil returned
// when giveUp says its failures have lasted long enough (at Open: at once);
// otherwise the read error is returned and the segment kept for a later try.
func (s *Spool) check(id uint64, ack int64, giveUp func() bool) (*segment, int64, error) {
	data, err := s.readSegment(id)
	if err != nil {
		if !giveUp() {
			return nil, 0, err
		}
		s.quarantine(id, err)
		return nil, 0, nil
	}
	type span struct{ off, n int }
	var good []span
	holes := false
	off := 0
	for off < len(data) {
		if l := recordAt(data, off); l > 0 {
			good = append(good, span{off, headerLen + l})
			off += headerLen + l
			continue
		}
		next := -1
		for o := off + 1; o+headerLen < len(data); o++ {
			if recordAt(data, o) > 0 {
				next = o
				break
			}
		}
		end := len(data)
		if next >= 0 {
			end, holes = next, true
		}
		s.corrupt++
		s.corruptB += uint64(end - off)
		s.log.Warn("spool: corrupt or torn region skipped", "segment", id, "offset", off, "bytes", end-off, "tail", next < 0)
		if next < 0 {
			break
		}
		off = next
	}
	seg := &segment{id: id}
	newAck := int64(0)
	for _, g := range good {
		if ack >= 0 && int64(g.off+g.n) <= ack {
			newAck += int64(g.n)
		} else {
			seg.records++
		}
		seg.size += int64(g.n)
	}
	if !holes {
		// At most a torn tail: cut it, and fsync what is read, which a
		// clean stop after a failed fsync may have left unsynced.
		f, err := s.fs.OpenFile(s.segPath(id), os.O_RDWR, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("spool: %w", err)
		}
		if seg.size < int64(len(data)) {
			err = f.Truncate(seg.size)
		}
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			s.fail(err)
			if seg.size < int64(len(data)) {
				return nil, 0, fmt.Errorf("spool: truncate torn tail of %s: %w", s.segPath(id), err)
			}
			seg.suspect, seg.sealed = true, true
		}
		return seg, newAck, nil
	}
	out := make([]byte, 0, seg.size)
	for _, g := range good {
		out = append(out, data[g.off:g.off+g.n]...)
	}
	if err := s.replace(id, out); err != nil {
		return nil, 0, err
	}
	return seg, newAck, nil
}

// quarantine sets an unreadable segment aside as .bad and counts it.
func (s *Spool) quarantine(id uint64, err error) {
	s.corrupt++
	if f, e := s.fs.OpenFile(s.segPath(id), os.O_RDONLY, 0); e == nil {
		if n, e := f.Size(); e == nil {
			s.corruptB += uint64(n)
		}
		f.Close()
	}
	s.log.Error("spool: segment unreadable; set aside, its records are lost", "segment", id, "err", err)
	if e := s.fs.Rename(s.segPath(id), s.segPath(id)+".bad"); e != nil {
		s.fail(e)
	}
}

// replace atomically replaces segment id with data: write, fsync, rename.
func (s *Spool) replace(id uint64, data []byte) error {
	tmp := s.segPath(id) + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		s.fail(err)
		return fmt.Errorf("spool: rewrite segment: %w", err)
	}
	if _, err = f.WriteAt(data, 0); err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = s.fs.Rename(tmp, s.segPath(id))
	}
	if err != nil {
		s.fs.Remove(tmp)
		s.fail(err)
		return fmt.Errorf("spool: rewrite segment: %w", err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.fail(err)
	}
	return nil
}

// errCorrupt is returned by each for a record that fails its checksum or
// cannot be read.
type errCorrupt struct {
	seg uint64
	err error
}

func (e *errCorrupt) Error() string { return fmt.Sprintf("spool: segment %d: %v", e.seg, e.err) }
func (e *errCorrupt) Unwrap() error { return e.err }

// errChecksum is a record whose length or checksum is wrong: reading it
// again gives the same answer.
type errChecksum string

func (e errChecksum) Error() string { return string(e) }

// each calls fn with every record of segment id in [from, to) and the
// offset after it, until fn returns false. It reads in chunks, so a Peek
// of one record costs that record, not the segment; rec is valid only
// during fn. A record that fails its checksum ends it with *errCorrupt.
func (s *Spool) each(id uint64, from, to int64, fn func(rec []byte, end int64) bool) error {
	if from >= to {
		return nil
	}
	f, err := s.fs.OpenFile(s.segPath(id), os.O_RDONLY, 0)
	if err != nil {
		return &errCorrupt{id, err}
	}
	defer f.Close()
	const chunk = 64 << 10
	var buf []byte // bytes of the file from bufOff
	var bufOff int64
	read := func(off, n int64) ([]byte, error) {
		if off >= bufOff && off+n <= bufOff+int64(len(buf)) {
			return buf[off-bufOff : off-bufOff+n], nil
		}
		want := min(max(n, chunk), to-off)
		if int64(cap(buf)) < want {
			buf = make([]byte, want)
		}
		buf = buf[:want]
		if k, err := f.ReadAt(buf, off); int64(k) < want {
			if err == nil {
				err = errors.New("short read")
			}
			return nil, err
		}
		bufOff = off
		return buf[:n], nil
	}
	off := from
	for off+headerLen <= to {
		hdr, err := read(off, headerLen)
		if err != nil {
			return &errCorrupt{id, err}
		}
		l := int64(binary.LittleEndian.Uint32(hdr))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if l == 0 || off+headerLen+l > to {
			return &errCorrupt{id, errChecksum(fmt.Sprintf("bad record length %d at %d", l, off))}
		}
		rec, err := read(off+headerLen, l)
		if err != nil {
			return &errCorrupt{id, err}
		}
		if crc32.Checksum(rec, castagnoli) != sum {
			return &errCorrupt{id, errChecksum(fmt.Sprintf("checksum mismatch at %d", off))}
		}
		off += headerLen + l
		if !fn(rec, off) {
			return nil
		}
	}
	return nil
}

// readAck returns the ack position and whether the ack file was read.
func (s *Spool) readAck() (uint64, int64, bool) {
	b, err := s.readFile(filepath.Join(s.dir, "ack"))
	if err != nil {
		return 0, 0, errors.Is(err, os.ErrNotExist)
	}
	var seg uint64
	var off int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err != nil || off < 0 {
		return 0, 0, false // unreadable: deliver everything again
	}
	return seg, off, true
}

func (s *Spool) writeAck() error {
	tmp := filepath.Join(s.dir, "ack.tmp")
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		s.fail(err)
		return fmt.Errorf("spool: write ack: %w", err)
	}
	_, err = f.WriteAt(fmt.Appendf(nil, "%d %d\n", s.ackSeg, s.ackOff), 0)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = s.fs.Rename(tmp, filepath.Join(s.dir, "ack"))
	}
	if err != nil {
		s.fail(err)
		return fmt.Errorf("spool: write ack: %w", err)
	}
	s.ackDirty = false
	s.ackStale = false
	s.lastAck = time.Now()
	return nil
}

// Append adds one record at the tail.
func (s *Spool) Append(rec []byte) error { return s.AppendBatch([][]byte{rec}) }

// AppendBatch adds records at the tail with one fsync. On an error the
// records before the failed one are appended (not necessarily durable),
// the rest are not; a failed write leaves no partial record behind.
func (s *Spool) AppendBatch(recs [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, r := range recs {
		if len(r) > MaxRecord || int64(len(r)+headerLen) > s.opt.SegmentBytes {
			return ErrTooLarge
		}
		if len(r) == 0 {
			return ErrEmpty
		}
	}
	if s.ackStale {
		if err := s.writeAck(); err != nil {
			return err
		}
		s.ackStale = false
	}
	for _, r := range recs {
		if err := s.append(r); err != nil {
			return err
		}
	}
	if err := s.maybeSync(); err != nil {
		return err
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) append(r []byte) error {
	need := int64(len(r) + headerLen)
	for s.bytes+need > s.opt.MaxBytes {
		if !s.dropOldest() {
			break // nothing droppable: one segment of slack
		}
	}
	tail := s.segs[len(s.segs)-1]
	if tail.sealed || (tail.size > 0 && tail.size+need > s.opt.SegmentBytes) {
		if err := s.rotate(); err != nil {
			return err
		}
		tail = s.segs[len(s.segs)-1]
	}
	// s.hdr, not a local: a slice passed through the File interface
	// escapes, and the append path allocates nothing.
	hdr := s.hdr[:]
	binary.LittleEndian.PutUint32(hdr, uint32(len(r)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(r, castagnoli))
	_, err := s.w.WriteAt(hdr, tail.size)
	if err == nil {
		_, err = s.w.WriteAt(r, tail.size+headerLen)
	}
	if err != nil {
		// Cut what part of the record reached the file; if even that
		// fails, seal the segment at its last whole record (Open cuts the
		// torn tail) and write the next record to a new one.
		s.fail(err)
		if terr := s.w.Truncate(tail.size); terr != nil {
			tail.sealed = true
		}
		return fmt.Errorf("spool: append: %w", err)
	}
	tail.size += need
	tail.records++
	s.bytes += need
	s.records++
	s.dirty = true
	return nil
}

// rotate starts a new segment. The old one stays the writer until the new
// one exists, so a failure leaves the spool as it was.
func (s *Spool) rotate() error {
	old := s.segs[len(s.segs)-1]
	id := old.id + 1
	w, err := s.fs.OpenFile(s.segPath(id), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		s.fail(err)
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if s.dirty && !old.suspect {
		if err := s.w.Sync(); err != nil {
			// The old segment's unsynced records may not survive a power
			// cut; they are still readable now and stay queued.
			s.fail(err)
			s.log.Error("spool: fsync of a sealed segment failed; rewriting it at the next sync", "segment", old.id, "err", err)
			old.suspect = true
		}
	}
	s.w.Close()
	s.w = w
	s.dirty = false
	s.segs = append(s.segs, &segment{id: id})
	if err := s.fs.SyncDir(s.dir); err != nil {
		s.fail(err)
	}
	return nil
}

// dropOldest frees space in the oldest segments not being read or written:
// it compacts the oldest segment that holds data records to its kept
// records (same position, so kept records stay in order), or, when only
// kept records are left, removes the oldest segment. It reports whether it
// freed space.
func (s *Spool) dropOldest() bool {
	i := 0
	if n := len(s.peekEnds); n > 0 {
		// Segments holding peeked records are being sent: skip them.
		for i < len(s.segs) && s.segs[i].id <= s.peekEnds[n-1].seg {
			i++
		}
	}
	if i >= len(s.segs)-1 {
		return false
	}
	for j := i; j < len(s.segs)-1; j++ {
		if s.segs[j].kept {
			continue
		}
		if freed, done := s.compact(j); done {
			return freed
		}
	}
	// Only kept records are left: the bound on disk wins.
	seg := s.segs[i]
	from := int64(0)
	if seg.id == s.ackSeg {
		from = s.ackOff
	}
	if s.opt.OnDrop != nil {
		var recs [][]byte
		err := s.each(seg.id, from, seg.size, func(rec []byte, _ int64) bool {
			recs = append(recs, append([]byte(nil), rec...))
			return true
		})
		if err != nil {
			// Unreadable: over the bound rather than losing records
			// nobody can count.
			s.fail(err)
			return false
		}
		for _, r := range recs {
			s.opt.OnDrop(r)
		}
	}
	s.removeSeg(i, uint64(seg.records))
	return true
}

// removeSeg removes segment i, counting dropped of its records.
func (s *Spool) removeSeg(i int, dropped uint64) {
	seg := s.segs[i]
	if err := s.fs.Remove(s.segPath(seg.id)); err != nil {
		s.fail(err)
	}
	s.segs = slices.Delete(s.segs, i, i+1)
	s.bytes -= seg.size
	s.records -= seg.records
	s.dropped += dropped
	if seg.id == s.ackSeg {
		s.ackSeg, s.ackOff = s.segs[0].id, 0
		s.writeAck()
	}
}

// compact rewrites segment j with its kept records only. done is false
// when the segment held no data record (it is marked kept and skipped).
func (s *Spool) compact(j int) (freed, done bool) {
	seg := s.segs[j]
	from := int64(0)
	if seg.id == s.ackSeg {
		from = s.ackOff
	}
	// The acknowledged records before from stay as they are, so that the
	// ack offset stays valid and the rewrite is one atomic rename.
	var kept []byte
	var keptN, data int
	var dataRecs [][]byte
	err := s.each(seg.id, 0, seg.size, func(rec []byte, end int64) bool {
		start := end - int64(len(rec)) - headerLen
		if start < from || (s.opt.Keep != nil && s.opt.Keep(rec)) {
			var hdr [headerLen]byte
			binary.LittleEndian.PutUint32(hdr[:], uint32(len(rec)))
			binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(rec, castagnoli))
			kept = append(append(kept, hdr[:]...), rec...)
			if start >= from {
				keptN++
			}
		} else {
			data++
			if s.opt.OnDrop != nil {
				dataRecs = append(dataRecs, append([]byte(nil), rec...))
			}
		}
		return true
	})
	if err != nil {
		// Unreadable now: try the next segment; Peek repairs this one
		// when it gets there.
		s.fail(err)
		return false, false
	}
	if data == 0 {
		seg.kept = true
		return false, false
	}
	if keptN == 0 && from == 0 {
		for _, r := range dataRecs {
			s.opt.OnDrop(r)
		}
		s.removeSeg(j, uint64(data))
		return true, true
	}
	if err := s.replace(seg.id, kept); err != nil {
		s.log.Error("spool: compaction failed; over the bound until it succeeds", "segment", seg.id, "err", err)
		return false, true
	}
	for _, r := range dataRecs {
		s.opt.OnDrop(r)
	}
	s.bytes -= seg.size - int64(len(kept))
	seg.size = int64(len(kept))
	seg.records = keptN
	seg.kept = true
	s.records -= data
	s.dropped += uint64(data)
	return true, true
}

func (s *Spool) maybeSync() error {
	if (!s.dirty && !s.hasSuspect()) || (s.opt.SyncEvery > 0 && time.Since(s.lastSync) < s.opt.SyncEvery) {
		return nil
	}
	return s.sync()
}

func (s *Spool) sync() error {
	if s.hasSuspect() {
		if err := s.rewriteSuspects(); err != nil {
			return err
		}
	}
	if !s.dirty {
		return nil
	}
	if err := s.w.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the pages; a
		// second fsync can succeed without writing them. Seal the segment
		// so that new records go to a fresh file, and rewrite it at the
		// next sync from what is still readable; until then its unsynced
		// records stay queued but would not survive a power cut.
		s.fail(err)
		tail := s.segs[len(s.segs)-1]
		tail.sealed, tail.suspect = true, true
		s.dirty = false
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.ok()
	s.dirty = false
	s.lastSync = time.Now()
	return nil
}

func (s *Spool) hasSuspect() bool {
	return slices.ContainsFunc(s.segs, func(g *segment) bool { return g.suspect })
}

// rewriteSuspects rewrites the segments whose fsync failed (write to a new
// file, fsync, rename), so that their records are durable again.
func (s *Spool) rewriteSuspects() error {
	for _, seg := range s.segs {
		if !seg.suspect {
			continue
		}
		data, err := s.readSegment(seg.id)
		if err == nil && int64(len(data)) < seg.size {
			err = fmt.Errorf("segment %d is %d bytes, want %d", seg.id, len(data), seg.size)
		}
		if err == nil {
			err = s.replace(seg.id, data[:seg.size])
		}
		if err != nil {
			s.fail(err)
			return fmt.Errorf("spool: fsync: %w", err)
		}
		seg.suspect = false
	}
	return nil
}

// Sync flushes appended records to stable storage.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.sync()
}

// Ready returns a channel that receives when records may be waiting.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

// Peek returns up to max records (and about maxBytes, at least one record)
// from the head, oldest first, without removing them. The records are
// copies. Commit removes them once they are delivered; a new Peek without
// Commit returns the same records again. A record that fails its checksum
// or cannot be read is retried, then its segment is repaired (the bad
// region skipped and counted in Stats) and the Peek goes on: one bad byte
// never stops the queue.
func (s *Spool) Peek(max int, maxBytes int) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var syncErr error
	if err := s.maybeSync(); err != nil {
		// The forwarder peeks often: a deferred fsync (SyncEvery > 0)
		// happens here at the latest once appends stop. Its failure is
		// counted in Stats; the records are still readable.
		syncErr = err
	}
	repairs := 0
	for attempt := 0; ; attempt++ {
		out, bad := s.peek(max, maxBytes)
		if bad == nil {
			s.readFails = 0
			s.ok()
			if syncErr != nil {
				s.failing = true
			}
			return out, nil
		}
		s.fail(bad)
		if attempt < readRetries {
			continue
		}
		// A segment that fails its checksum is repaired; if reading it for
		// the repair fails, that read error counts like any other.
		giveUp := s.readFailedLongEnough
		if _, sum := bad.err.(errChecksum); !sum {
			// A read error may pass (an SD card's hiccup): the caller
			// retries; only one that lasts costs the segment.
			if !s.readFailedLongEnough() {
				return nil, bad
			}
			giveUp = func() bool { return true }
		}
		s.readFails = 0
		if repairs++; repairs > readRetries {
			return nil, bad
		}
		attempt = 0
		if err := s.repair(bad.seg, giveUp); err != nil {
			return nil, err
		}
	}
}

func (s *Spool) peek(max, maxBytes int) ([][]byte, *errCorrupt) {
	s.peekEnds = s.peekEnds[:0]
	var out [][]byte
	size := 0
	for _, seg := range s.segs {
		from := int64(0)
		if seg.id == s.ackSeg {
			from = s.ackOff
		} else if seg.id < s.ackSeg {
			continue
		}
		full := false
		err := s.each(seg.id, from, seg.size, func(rec []byte, end int64) bool {
			if len(out) >= max || (len(out) > 0 && size+len(rec) > maxBytes) {
				full = true
				return false
			}
			out = append(out, append([]byte(nil), rec...))
			size += len(rec)
			s.peekEnds = append(s.peekEnds, pos{seg.id, end})
			return true
		})
		if err != nil {
			if len(out) > 0 {
				// Deliver what comes before the bad record first.
				return out, nil
			}
			s.peekEnds = s.peekEnds[:0]
			return nil, err.(*errCorrupt)
		}
		if full {
			break
		}
	}
	return out, nil
}

// readFailedLongEnough counts a failed read of a segment and reports
// whether reads have failed long enough (maxReadFails Peeks in a row over
// Options.UnreadableAfter) to set the segment aside, its records lost.
func (s *Spool) readFailedLongEnough() bool {
	if s.readFails == 0 {
		s.readFailSince = time.Now()
	}
	s.readFails++
	return s.readFails >= maxReadFails && time.Since(s.readFailSince) >= s.opt.UnreadableAfter
}

// repair checks segment id again as Open does, after sealing it if it is
// being written, and takes its counts from the result.
func (s *Spool) repair(id uint64, giveUp func() bool) error {
	i := slices.IndexFunc(s.segs, func(g *segment) bool { return g.id == id })
	if i < 0 {
		return fmt.Errorf("spool: repair of unknown segment %d", id)
	}
	if i == len(s.segs)-1 {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	seg := s.segs[i]
	ack := int64(-1)
	if id == s.ackSeg {
		ack = s.ackOff
	}
	fixed, newAck, err := s.check(id, ack, giveUp)
	if err != nil {
		return err
	}
	s.bytes -= seg.size
	s.records -= seg.records
	if fixed == nil {
		s.segs = slices.Delete(s.segs, i, i+1)
		if id == s.ackSeg {
			s.ackSeg, s.ackOff = s.segs[0].id, 0
		}
	} else {
		s.segs[i] = fixed
		s.bytes += fixed.size
		s.records += fixed.records
		if id == s.ackSeg {
			s.ackOff = newAck
		}
	}
	if id == s.ackSeg || fixed == nil {
		s.writeAck()
	}
	return nil
}

// Commit removes the first n records of the last Peek: they have been
// delivered. An error writing the ack file is returned after the records
// are removed in memory; they may be delivered again after a restart.
func (s *Spool) Commit(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n <= 0 {
		return nil
	}
	if n > len(s.peekEnds) {
		return fmt.Errorf("spool: commit of %d records, only %d peeked", n, len(s.peekEnds))
	}
	end := s.peekEnds[n-1]
	c := 0
	for _, p := range s.peekEnds[:n] {
		if p.seg == end.seg {
			c++
		}
	}
	s.peekEnds = s.peekEnds[:0]
	// Remove the segments before end.
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg.id < end.seg {
			s.records -= seg.records
			s.bytes -= seg.size
			if err := s.fs.Remove(s.segPath(seg.id)); err != nil {
				s.fail(err)
			}
			s.segs = s.segs[1:]
			continue
		}
		break
	}
	head := s.segs[0]
	head.records -= c
	s.records -= c
	s.ackSeg, s.ackOff = end.seg, end.off
	if end.off == head.size && len(s.segs) > 1 {
		// The sealed head is done: remove it.
		if err := s.fs.Remove(s.segPath(head.id)); err != nil {
			s.fail(err)
		}
		s.bytes -= head.size
		s.segs = s.segs[1:]
		s.ackSeg, s.ackOff = s.segs[0].id, 0
	}
	s.ackDirty = true
	if s.opt.AckEvery <= 0 || time.Since(s.lastAck) >= s.opt.AckEvery {
		return s.writeAck()
	}
	return nil
}

// Len returns the number of records not yet committed.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// Bytes returns the size of the segment files.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Dropped returns how many records the drop policy removed since Open.
func (s *Spool) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Stats returns the spool's counters and health.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Records: s.records, Bytes: s.bytes, Dropped: s.dropped, Corrupt: s.corrupt, CorruptBytes: s.corruptB,
		Errors: s.errs, LastError: s.lastErr, Healthy: !s.failing}
}

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.dirty = true
	err := s.sync()
	if s.ackDirty {
		if e := s.writeAck(); err == nil {
			err = e
		}
	}
	if e := s.w.Close(); err == nil {
		err = e
	}
	return err
}
