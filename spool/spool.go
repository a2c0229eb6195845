package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
}

// MaxRecord is the largest record the spool takes.
const MaxRecord = 16 << 20

const headerLen = 8

var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge is returned for a record larger than MaxRecord or the
	// segment size.
	ErrTooLarge = errors.New("spool: record too large")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	id      uint64
	size    int64
	records int // records at or after the ack position
}

// Spool is a durable FIFO of records. It is safe for concurrent use by one
// producer and one consumer (and more).
type Spool struct {
	dir string
	opt Options

	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first; the last one is written
	w        *os.File
	ackSeg   uint64
	ackOff   int64
	records  int
	bytes    int64
	dropped  uint64
	dirty    bool // appended since the last fsync
	lastSync time.Time
	lastAck  time.Time
	ackDirty bool
	peekEnds []pos // end positions of the records the last Peek returned
	ready    chan struct{}
}

type pos struct {
	seg uint64
	off int64
}

// Open opens (or creates) the spool in dir, recovering from a crash: a
// torn record at the end of a segment is cut off.
func Open(dir string, opt Options) (*Spool, error) {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = 64 << 20
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = max(opt.MaxBytes/16, 64<<10)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := checkFormat(dir); err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, opt: opt, ready: make(chan struct{}, 1)}
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

func (s *Spool) recover() error {
	s.ackSeg, s.ackOff = s.readAck()
	names, err := filepath.Glob(filepath.Join(s.dir, "*.seg"))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var ids []uint64
	for _, n := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), ".seg"), 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if id < s.ackSeg {
			os.Remove(s.segPath(id)) // fully acknowledged before the crash
			continue
		}
		size, recs, err := s.scan(id)
		if err != nil {
			return err
		}
		if id == s.ackSeg {
			if s.ackOff > size {
				s.ackOff = size
			}
			recs, err = s.count(id, s.ackOff, size)
			if err != nil {
				return err
			}
		}
		s.segs = append(s.segs, &segment{id: id, size: size, records: recs})
		s.bytes += size
		s.records += recs
	}
	if len(s.segs) == 0 {
		next := s.ackSeg
		if next == 0 {
			next = 1
		}
		s.segs = append(s.segs, &segment{id: next})
		s.ackSeg, s.ackOff = next, 0
	} else if s.segs[0].id > s.ackSeg {
		s.ackSeg, s.ackOff = s.segs[0].id, 0
	}
	tail := s.segs[len(s.segs)-1]
	w, err := os.OpenFile(s.segPath(tail.id), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := w.Seek(tail.size, io.SeekStart); err != nil {
		w.Close()
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	return nil
}

// scan validates a segment, truncates a torn or corrupt tail, and returns
// its size and record count.
func (s *Spool) scan(id uint64) (int64, int, error) {
	f, err := os.OpenFile(s.segPath(id), os.O_RDWR, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	var off int64
	n := 0
	var hdr [headerLen]byte
	buf := []byte{}
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			break
		}
		l := int64(binary.LittleEndian.Uint32(hdr[:]))
		if l > MaxRecord || off+headerLen+l > fi.Size() {
			break
		}
		if int64(cap(buf)) < l {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := f.ReadAt(buf, off+headerLen); err != nil {
			break
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		off += headerLen + l
		n++
	}
	if off < fi.Size() {
		if err := f.Truncate(off); err != nil {
			return 0, 0, fmt.Errorf("spool: truncate torn tail of %s: %w", f.Name(), err)
		}
		f.Sync()
	}
	return off, n, nil
}

// count counts the records of a valid segment between from and to.
func (s *Spool) count(id uint64, from, to int64) (int, error) {
	n := 0
	err := s.each(id, from, to, func([]byte, int64) bool { n++; return true })
	return n, err
}

// each calls fn with every record of segment id in [from, to) and the
// offset after it, until fn returns false. It reads through a buffer, so a
// Peek of one record costs that record, not the segment; rec is valid only
// during fn.
func (s *Spool) each(id uint64, from, to int64, fn func(rec []byte, end int64) bool) error {
	if from >= to {
		return nil
	}
	f, err := os.Open(s.segPath(id))
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 64<<10)
	var hdr [headerLen]byte
	var rec []byte
	off := from
	for off+headerLen <= to {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("spool: read %s: %w", f.Name(), err)
		}
		l := int64(binary.LittleEndian.Uint32(hdr[:]))
		if off+headerLen+l > to {
			return fmt.Errorf("spool: %s: record at %d runs past the end", f.Name(), off)
		}
		if int64(cap(rec)) < l {
			rec = make([]byte, l)
		}
		rec = rec[:l]
		if _, err := io.ReadFull(r, rec); err != nil {
			return fmt.Errorf("spool: read %s: %w", f.Name(), err)
		}
		off += headerLen + l
		if !fn(rec, off) {
			return nil
		}
	}
	return nil
}

func (s *Spool) readAck() (uint64, int64) {
	b, err := os.ReadFile(filepath.Join(s.dir, "ack"))
	if err != nil {
		return 0, 0
	}
	var seg uint64
	var off int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err != nil {
		return 0, 0 // unreadable: deliver everything again
	}
	return seg, off
}

func (s *Spool) writeAck() error {
	tmp := filepath.Join(s.dir, "ack.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	fmt.Fprintf(f, "%d %d\n", s.ackSeg, s.ackOff)
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(s.dir, "ack")); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.ackDirty = false
	s.lastAck = time.Now()
	return nil
}

// Append adds one record at the tail.
func (s *Spool) Append(rec []byte) error { return s.AppendBatch([][]byte{rec}) }

// AppendBatch adds records at the tail with one fsync.
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
	if tail.size > 0 && tail.size+need > s.opt.SegmentBytes {
		if err := s.rotate(); err != nil {
			return err
		}
		tail = s.segs[len(s.segs)-1]
	}
	var hdr [headerLen]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(r)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(r, castagnoli))
	if _, err := s.w.Write(hdr[:]); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	if _, err := s.w.Write(r); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	tail.size += need
	tail.records++
	s.bytes += need
	s.records++
	s.dirty = true
	return nil
}

func (s *Spool) rotate() error {
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w.Close()
	id := s.segs[len(s.segs)-1].id + 1
	w, err := os.OpenFile(s.segPath(id), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.w = w
	s.segs = append(s.segs, &segment{id: id})
	if d, err := os.Open(s.dir); err == nil {
		d.Sync() // the new file's directory entry
		d.Close()
	}
	return nil
}

// dropOldest removes the oldest segment not being read or written,
// copying its kept records to the tail. It reports whether it freed space.
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
	seg := s.segs[i]
	from := int64(0)
	if seg.id == s.ackSeg {
		from = s.ackOff
	}
	var kept [][]byte
	var keptBytes int64
	s.each(seg.id, from, seg.size, func(rec []byte, _ int64) bool {
		if s.opt.Keep != nil && s.opt.Keep(rec) {
			kept = append(kept, append([]byte(nil), rec...))
			keptBytes += int64(len(rec) + headerLen)
		} else if s.opt.OnDrop != nil {
			s.opt.OnDrop(rec)
		}
		return true
	})
	if keptBytes >= seg.size-from {
		// Only kept records: the bound on disk wins, drop them too.
		if s.opt.OnDrop != nil {
			for _, r := range kept {
				s.opt.OnDrop(r)
			}
		}
		kept = nil
	}
	os.Remove(s.segPath(seg.id))
	s.segs = slices.Delete(s.segs, i, i+1)
	s.bytes -= seg.size
	s.records -= seg.records
	s.dropped += uint64(seg.records - len(kept))
	if seg.id == s.ackSeg {
		s.ackSeg, s.ackOff = s.segs[0].id, 0
		s.writeAck()
	}
	for _, r := range kept {
		if err := s.append(r); err != nil {
			return true
		}
	}
	return true
}

func (s *Spool) maybeSync() error {
	if !s.dirty || (s.opt.SyncEvery > 0 && time.Since(s.lastSync) < s.opt.SyncEvery) {
		return nil
	}
	return s.sync()
}

func (s *Spool) sync() error {
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.dirty = false
	s.lastSync = time.Now()
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
// Commit returns the same records again.
func (s *Spool) Peek(max int, maxBytes int) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.maybeSync(); err != nil {
		// The forwarder peeks often: a deferred fsync (SyncEvery > 0)
		// happens here at the latest once appends stop.
		return nil, err
	}
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
			return nil, err
		}
		if full {
			break
		}
	}
	return out, nil
}

// Commit removes the first n records of the last Peek: they have been
// delivered.
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
	s.peekEnds = s.peekEnds[:0]
	// Count and remove what lies before end.
	for len(s.segs) > 0 {
		seg := s.segs[0]
		if seg.id < end.seg {
			s.records -= seg.records
			s.bytes -= seg.size
			os.Remove(s.segPath(seg.id))
			s.segs = s.segs[1:]
			continue
		}
		break
	}
	from := int64(0)
	if s.ackSeg == end.seg {
		from = s.ackOff
	}
	head := s.segs[0]
	c, err := s.count(head.id, from, end.off)
	if err != nil {
		return err
	}
	head.records -= c
	s.records -= c
	s.ackSeg, s.ackOff = end.seg, end.off
	if end.off == head.size && len(s.segs) > 1 {
		// The sealed head is done: remove it.
		os.Remove(s.segPath(head.id))
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

// Close syncs and closes the spool.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.w.Sync()
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
