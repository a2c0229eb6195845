package durable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/spool"
)

// recordLines is the first byte of a log record holding line protocol.
const recordLines = 'L'

const (
	// maxRecord bounds one record; a larger commit is cut at a line.
	maxRecord = 4 << 20
	// walMaxBytes bounds the log on disk. It holds what the writer has
	// not yet written or spooled (at most influx.max_pending batches in
	// memory), far less in practice.
	walMaxBytes = 1 << 30
	// walSegment is the size of the log's segment files.
	walSegment = 16 << 20
	// logEvery rate-limits the logs of a failing disk.
	logEvery = 10 * time.Second
)

// Options are what OpenLog needs besides the configuration.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// FS is the log's file system (spool.FS); nil means the OS. Tests
	// inject faults here.
	FS spool.FS
}

// Log is the group-committed write-ahead log of the line protocol the
// pipeline writes (mode wal). Write passes lines to the writer and adds
// them to the pending commit; every commit window the committer appends
// the pending lines as one record and fsyncs it (spool.Append), then calls
// the acks waiting for them. A record is committed out of the log (Spool
// Commit) once the writer reports its batch durable. At Open, records left
// by the last run are written to the writer again.
//
// If the disk fails, acknowledgements are not held back (a stalled
// acknowledgement would stall a device's later alarms): they go out as in
// mode off, and the failure is logged and counted
// (firewatch_durable_wal_errors_total).
type Log struct {
	w      Writer
	sp     *spool.Spool
	window time.Duration
	log    *slog.Logger
	m      walMetrics
	kick   chan struct{} // the first lines of a commit are pending
	full   chan struct{} // the pending lines fill a record

	mu      sync.Mutex
	pend    []byte // pending record: recordLines, then lines
	written uint64 // position: Writes of lines so far
	synced  uint64 // position durable in the log
	waiting queue
	closed  bool

	// spare is the other pending buffer; only the committer uses it.
	spare []byte
	// marks holds, for each record in the log not yet committed out of
	// it, the writer's Mark when it was appended. Committer appends,
	// truncator removes.
	marksMu sync.Mutex
	marks   []uint64
	lastErr time.Time // rate-limits the failure log (committer only)
}

type walMetrics struct {
	commits, bytes, errors, replayed, dropped prometheus.Counter
	wait                                      prometheus.Histogram
}

// OpenLog opens the log in dir, writes what the last run left in it to w
// (without acknowledging anything: those messages were acknowledged then),
// and returns it. Run must run for acks to be called.
func OpenLog(dir string, window time.Duration, w Writer, o Options) (*Log, error) {
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "wal")
	l := &Log{w: w, window: window, log: lg, kick: make(chan struct{}, 1), full: make(chan struct{}, 1)}
	l.m = walMetrics{
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_durable_wal_commits_total",
			Help: "Group commits (one write and one fsync each) of the write-ahead log."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_durable_wal_bytes_total",
			Help: "Bytes of line protocol appended to the write-ahead log."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_durable_wal_errors_total",
			Help: "Failed appends to the write-ahead log: their messages were acknowledged without it."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_durable_wal_replayed_lines_total",
			Help: "Lines written to InfluxDB again from the write-ahead log at start."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_durable_wal_dropped_records_total",
			Help: "Records of the write-ahead log dropped unreplayed: the log was full, or a record was not line protocol."}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "firewatch_durable_wal_commit_seconds",
			Help:    "Time from the first pending line of a group commit to its fsync's end.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5}}),
	}
	if o.Registerer != nil {
		if err := registerAll(o.Registerer, l.m.commits, l.m.bytes, l.m.errors, l.m.replayed, l.m.dropped, l.m.wait); err != nil {
			return nil, err
		}
	}
	sp, err := spool.Open(dir, spool.Options{
		MaxBytes: walMaxBytes, SegmentBytes: walSegment,
		SyncEvery: 0,           // every Append is fsynced: the group commit
		AckEvery:  time.Second, // a crash replays up to a second more: harmless
		Logger:    lg, FS: o.FS,
		// The full log drops its oldest records, and their marks with
		// them (OnDrop runs within the committer's Append).
		OnDrop: func([]byte) {
			l.m.dropped.Inc()
			l.marksMu.Lock()
			if len(l.marks) > 0 {
				l.marks = l.marks[1:]
			}
			l.marksMu.Unlock()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l.sp = sp
	if err := l.replay(); err != nil {
		sp.Close()
		return nil, err
	}
	l.pend = append(make([]byte, 0, 256<<10), recordLines)
	l.spare = make([]byte, 0, 256<<10)
	return l, nil
}

func registerAll(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// replay writes the records the last run left to the writer. They stay in
// the log, marked with the writer's batch, until it reports them durable.
func (l *Log) replay() error {
	n := l.sp.Len()
	if n == 0 {
		return nil
	}
	recs, err := l.sp.Peek(n, math.MaxInt)
	if err != nil {
		return fmt.Errorf("wal: read the log for replay: %w", err)
	}
	lines, bad := 0, 0
	for _, rec := range recs {
		body, k, err := DecodeRecord(rec)
		if err != nil {
			bad++
			continue
		}
		l.w.WriteSeq(body)
		lines += k
	}
	l.m.replayed.Add(float64(lines))
	l.m.dropped.Add(float64(bad))
	mark := l.w.Mark()
	l.marks = make([]uint64, len(recs))
	for i := range l.marks {
		l.marks[i] = mark
	}
	st := l.sp.Stats()
	l.log.Info("write-ahead log: lines of the last run written again (InfluxDB stores a repeated point once)",
		"records", len(recs), "lines", lines, "bad_records", bad, "corrupt_regions", st.Corrupt)
	return nil
}

// DecodeRecord checks one log record and returns its line protocol (whole
// lines, each ending in '\n') and the number of lines.
func DecodeRecord(rec []byte) (lines []byte, n int, err error) {
	if len(rec) == 0 {
		return nil, 0, errors.New("wal record: empty")
	}
	if rec[0] != recordLines {
		return nil, 0, fmt.Errorf("wal record: unknown kind %#x", rec[0])
	}
	lines = rec[1:]
	if len(lines) == 0 || lines[len(lines)-1] != '\n' {
		return nil, 0, errors.New("wal record: not whole lines")
	}
	if bytes.IndexByte(lines, 0) >= 0 {
		return nil, 0, errors.New("wal record: NUL byte")
	}
	return lines, bytes.Count(lines, []byte{'\n'}), nil
}

// Write passes lines to the writer and adds them to the pending commit.
// Each call must hold whole lines (the pipeline's do).
func (l *Log) Write(lines []byte) {
	if len(lines) == 0 {
		return
	}
	l.w.WriteSeq(lines)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	first := len(l.pend) == 1
	l.pend = append(l.pend, lines...)
	if lines[len(lines)-1] != '\n' {
		l.pend = append(l.pend, '\n')
	}
	l.written++
	full := len(l.pend) >= maxRecord
	l.mu.Unlock()
	if first {
		signal(l.kick)
	}
	if full {
		signal(l.full)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Await calls ack once every line written before the call is in the log
// and fsynced.
func (l *Log) Await(ack func()) {
	l.mu.Lock()
	if l.written <= l.synced || l.closed {
		l.mu.Unlock()
		ack()
		return
	}
	l.waiting.push(l.written, ack)
	l.mu.Unlock()
}

// Run commits pending lines every window and calls the acks waiting for
// them, and commits records out of the log as the writer makes their
// batches durable, until ctx ends. Then it commits what is pending, calls
// every waiting ack, and closes the log. Stop it after the writer, so that
// the writer's shutdown flush is committed out of the log too.
func (l *Log) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.truncator(ctx)
	}()
	t := time.NewTimer(time.Hour)
	t.Stop()
	var acks []func()
	for {
		select {
		case <-ctx.Done():
			// From now on Write passes lines to the writer only and Await
			// acks at once (the sources stopped before); what is pending
			// is committed and its waiters acked.
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
			acks = l.commit(acks)
			<-done
			l.truncate()
			l.mu.Lock()
			acks = l.waiting.pop(math.MaxUint64, acks)
			l.mu.Unlock()
			fire(acks)
			return l.sp.Close()
		case <-l.kick:
		}
		start := time.Now()
		t.Reset(l.window)
		select {
		case <-t.C:
		case <-l.full:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
		}
		acks = l.commit(acks)
		l.m.wait.Observe(time.Since(start).Seconds())
	}
}

// commit appends the pending lines as a record, fsyncs it, and calls the
// acks waiting for them.
func (l *Log) commit(acks []func()) []func() {
	l.mu.Lock()
	rec, pos := l.pend, l.written
	l.pend = append(l.spare[:0], recordLines)
	l.mu.Unlock()
	if len(rec) > 1 {
		// Every line of rec went to the writer before it went to rec.
		mark := l.w.Mark()
		if len(rec) <= maxRecord+1 {
			l.append(rec, mark)
		} else {
			for _, chunk := range split(rec[1:]) {
				l.append(append([]byte{recordLines}, chunk...), mark)
			}
		}
	}
	l.spare = rec[:0]
	l.mu.Lock()
	l.synced = pos
	acks = l.waiting.pop(pos, acks)
	l.mu.Unlock()
	return fire(acks)
}

// split cuts whole lines into runs of at most maxRecord bytes (a longer
// line is a run of its own).
func split(body []byte) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		n := len(body)
		if n > maxRecord {
			n = bytes.LastIndexByte(body[:maxRecord], '\n') + 1
			if n == 0 {
				n = bytes.IndexByte(body, '\n') + 1
			}
		}
		out = append(out, body[:n])
		body = body[n:]
	}
	return out
}

func (l *Log) append(rec []byte, mark uint64) {
	if err := l.sp.Append(rec); err != nil {
		l.m.errors.Inc()
		if now := time.Now(); now.Sub(l.lastErr) >= logEvery {
			l.lastErr = now
			l.log.Error("write-ahead log append failed: messages are acknowledged without it until it works again", "err", err)
		}
		return
	}
	l.m.commits.Inc()
	l.m.bytes.Add(float64(len(rec) - 1))
	l.marksMu.Lock()
	l.marks = append(l.marks, mark)
	l.marksMu.Unlock()
}

// truncator commits records out of the log as the writer reports their
// batches durable, until ctx ends.
func (l *Log) truncator(ctx context.Context) {
	for {
		changed := l.truncate()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// truncate commits the records whose batches are durable out of the log.
func (l *Log) truncate() <-chan struct{} {
	d, changed := l.w.Durable()
	l.marksMu.Lock()
	k := 0
	for k < len(l.marks) && l.marks[k] <= d {
		k++
	}
	l.marksMu.Unlock()
	if k == 0 {
		return changed
	}
	recs, err := l.sp.Peek(k, math.MaxInt)
	if err == nil {
		err = l.sp.Commit(len(recs))
	}
	if err != nil {
		l.log.Error("write-ahead log: commit of written records failed; they are replayed after a restart", "err", err)
		return changed
	}
	l.marksMu.Lock()
	l.marks = append(l.marks[:0], l.marks[len(recs):]...)
	l.marksMu.Unlock()
	return changed
}
