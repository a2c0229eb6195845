package influx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/firewatch-iot/firewatch/spool"
)

var (
	// ErrClosed is returned by Flush and Run once Run has shut down.
	ErrClosed = errors.New("influx writer closed")
	// ErrDropped is wrapped by the error of Flush when lines were dropped
	// (queue overflow or rejected by InfluxDB) while it waited.
	ErrDropped = errors.New("lines dropped")
)

const (
	// maxBatchBytes ends a batch early when its lines are long; InfluxDB
	// 1.8 refuses bodies over 25 MB by default.
	maxBatchBytes = 8 << 20
	// initialBatchBytes is the first capacity of a batch buffer; recycled
	// buffers keep what they grew to.
	initialBatchBytes = 64 << 10
	minBackoff        = 100 * time.Millisecond
	maxBackoff        = 5 * time.Second
	// maxRetryAfter caps how long a Retry-After header may pause sending.
	maxRetryAfter = 30 * time.Second
	logEvery      = 10 * time.Second
	// spillRetry is how long the spiller waits after the spool failed to
	// take a batch (disk full, I/O error) before it tries again.
	spillRetry = time.Second
	// probeAfter: after this many failed attempts in a row at the head
	// batch, the sender tries another batch once; if that one goes
	// through, the head is poison and is split.
	probeAfter = 3
	// splitBudget bounds the requests spent splitting one batch; what is
	// left unresolved then is parked in the dead-letter file.
	splitBudget = 64
	// splitGiveUp: this many retryable failures in a row while splitting
	// mean InfluxDB itself is failing: the split stops and the batch is
	// retried whole with backoff.
	splitGiveUp = 4
	// deadLetterMaxBytes bounds the dead-letter file.
	deadLetterMaxBytes = 64 << 20
)

// Writer batches line protocol and sends it to InfluxDB. Write is the hot
// path and does not allocate in steady state; Run owns the sending
// goroutine and, with a spool, the spilling one.
//
// Full batches wait in a bounded queue in memory (Config.MaxPending). With
// an on-disk spool (Config.SpoolDir), batches move to it while InfluxDB
// fails, and the oldest move to it whenever more than half the queue is
// waiting (InfluxDB slower than the input); the sender then alternates live
// batches from memory with spooled ones, oldest first, so dashboards show
// the present at once while the backlog drains. The spool survives
// restarts; beyond Config.SpoolMaxMB its oldest batches are dropped and
// counted. Without a spool, or if the disk fails, a full queue drops its
// oldest batch, counted.
type Writer struct {
	cfg       Config
	log       *slog.Logger
	client    influxdb2.Client
	api       api.WriteAPIBlocking
	transport *http.Transport
	m         *metrics
	wake      chan struct{}
	spool     *spool.Spool // nil without Config.SpoolDir
	spillAt   int          // queued batches above which the oldest are spilled
	spillWake chan struct{}
	spillDone chan struct{} // closed when the spiller has stopped

	mu       sync.Mutex
	cur      *[]byte // batch being filled
	curLines int
	queue    []batch // ring of full batches waiting to be sent, oldest at head
	head, n  int
	free     []*[]byte // recycled batch buffers
	nextSeq  uint64    // sequence number of the next batch; starts at 1
	inflight uint64    // seq of the batch being sent, 0 when none
	probing  uint64    // seq of a live batch sent as a probe, 0 when none
	spilling uint64    // seq of the batch being written to the spool, 0 when none
	failing  bool      // the last attempt to write failed: spill everything
	// spoolUnreadable: the last Peek of the spool failed; the spiller
	// keeps batches in memory unless the queue is full.
	spoolUnreadable bool
	// progress is closed and replaced whenever a batch is finished (sent,
	// rejected or dropped), waking Flush.
	progress chan struct{}
	dropped  uint64 // lines dropped for any reason, for Flush's report
	running  bool
	closed   bool
	// dropLog and rejectLog rate-limit the logs of paths that load or
	// bad input can drive.
	dropLog, rejectLog, parkLog rateLog
	// deadLetter is where lines InfluxDB keeps refusing are parked
	// (Config.DeadLetterPath); "" logs and counts them only.
	deadLetter string
	dlMu       sync.Mutex
	// lostAt, once not 0, freezes Durable at lostAt-1: batches from it on
	// were dropped at shutdown (durable.go).
	lostAt uint64
	// probed is the hash of the second spooled batch when a probe sent it
	// ahead of the head; 0 when none. Only the sender uses it.
	probed uint64
}

var probeSeed = maphash.MakeSeed()

// batch is a run of complete lines handed from Write to the sender.
type batch struct {
	buf   *[]byte
	lines int
	seq   uint64
	// spooled: the batch is the head record of the spool, committed there
	// once InfluxDB answers.
	spooled bool
}

// NewWriter returns a writer for cfg, with defaults applied to its zero
// fields. It does not contact InfluxDB: Run does, and keeps retrying while
// InfluxDB is unreachable.
func NewWriter(cfg Config) (*Writer, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "influx")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	opts := influxdb2.DefaultOptions().
		SetPrecision(time.Millisecond).
		SetUseGZip(cfg.ContentEncoding == "gzip").
		// Each attempt gets a context deadline of cfg.Timeout instead of
		// the client's whole-second request timeout.
		SetHTTPClient(&http.Client{Transport: tr})
	client := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	w := &Writer{
		cfg:       cfg,
		log:       lg,
		client:    client,
		api:       client.WriteAPIBlocking(cfg.Org, cfg.Bucket),
		transport: tr,
		m:         m,
		wake:      make(chan struct{}, 1),
		spillAt:   max(cfg.MaxPending/2, 1),
		spillWake: make(chan struct{}, 1),
		spillDone: make(chan struct{}),
		queue:     make([]batch, cfg.MaxPending),
		free:      make([]*[]byte, 0, cfg.MaxPending+2),
		nextSeq:   1,
		progress:  make(chan struct{}),
	}
	if cfg.SpoolDir != "" {
		limit := int64(cfg.SpoolMaxMB) << 20
		// A segment holds at least one batch of maxBatchBytes.
		segment := max(limit/32, 2*maxBatchBytes)
		if cfg.spoolBytes > 0 {
			limit, segment = cfg.spoolBytes, cfg.spoolSegment
		}
		sp, err := spool.Open(cfg.SpoolDir, spool.Options{
			MaxBytes:     limit,
			SegmentBytes: segment,
			// Each spilled batch (thousands of lines) is synced before it
			// leaves memory.
			SyncEvery: 0,
			Logger:    lg,
			FS:        cfg.spoolFS,
			OnDrop: func(rec []byte) {
				n := countLines(rec)
				m.droppedSpoolFull.Add(float64(n))
				w.mu.Lock()
				w.dropped += uint64(n)
				w.mu.Unlock()
			},
		})
		if err != nil {
			return nil, fmt.Errorf("influx spool: %w", err)
		}
		w.spool = sp
		w.spoolGauges()
		if n := sp.Len(); n > 0 {
			lg.Info("influx spool holds batches from before; replaying them", "dir", cfg.SpoolDir, "batches", n, "bytes", sp.Bytes())
		}
	}
	w.deadLetter = cfg.DeadLetterPath
	if w.deadLetter == "" && cfg.SpoolDir != "" {
		w.deadLetter = filepath.Join(cfg.SpoolDir, DeadLetterFile)
	}
	w.cur = w.newBuf()
	return w, nil
}

// countLines counts the lines of a batch, each ending in '\n'.
func countLines(b []byte) int { return bytes.Count(b, newline) }

// Write adds complete lines of line protocol, each ending in '\n' (one is
// added if the last is missing), to the current batch. A full batch is
// handed to the sender. Write copies lines and never blocks on InfluxDB; it
// is safe for concurrent use.
func (w *Writer) Write(lines []byte) { w.WriteSeq(lines) }

// WriteSeq is Write, and returns the sequence number of the batch the
// lines went into (0 for none): they are durable once Durable reaches it.
func (w *Writer) WriteSeq(lines []byte) uint64 {
	if len(lines) == 0 {
		return 0
	}
	n := bytes.Count(lines, newline)
	noNL := lines[len(lines)-1] != '\n'
	if noNL {
		n++
	}
	w.mu.Lock()
	if w.closed {
		w.dropped += uint64(n)
		w.mu.Unlock()
		w.m.droppedClosed.Add(float64(n))
		return 0
	}
	seq := w.nextSeq // the current batch's, once it is handed on
	b := append(*w.cur, lines...)
	if noNL {
		b = append(b, '\n')
	}
	*w.cur = b
	w.curLines += n
	full := w.curLines >= w.cfg.BatchLines || len(b) >= maxBatchBytes
	if full {
		w.rotateLocked()
	}
	w.mu.Unlock()
	if full {
		w.signal()
	}
	return seq
}

var newline = []byte{'\n'}

// Flush hands the current batch to the sender and waits until it and every
// batch queued before it are sent, rejected or dropped, and the spool is
// empty, or ctx ends. Run must be running. The error wraps ErrDropped when
// lines were lost while Flush waited.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.rotateLocked()
	target := w.nextSeq - 1
	before := w.dropped
	w.mu.Unlock()
	w.signal()
	for {
		w.mu.Lock()
		done := w.unfinishedLocked() > target
		lost := w.dropped - before
		progress := w.progress
		w.mu.Unlock()
		if w.spool != nil && w.spool.Len() > 0 {
			done = false // spilled batches are not written yet
		}
		if done {
			if lost > 0 {
				return fmt.Errorf("influx flush: %d %w", lost, ErrDropped)
			}
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return fmt.Errorf("influx flush: %w", ctx.Err())
		}
	}
}

// Run sends batches until ctx ends, then flushes what is buffered and sends
// everything queued within Config.ShutdownTimeout, and returns. Lines still
// unsent then are dropped and reported in the error; Write drops (and
// counts) lines from then on. A failed write is retried with backoff
// (100 ms doubling to 5 s, or the server's Retry-After), later batches
// waiting behind it in order, except that every probeAfter failures one
// later batch is tried to tell an outage from a poison batch (see
// deliver). InfluxDB refusing a batch as invalid (HTTP 400, 413 or 422) is
// split until the refused lines are found; they are parked in the
// dead-letter file and counted as dropped. A partial write is not retried:
// the lines InfluxDB says it dropped are counted.
func (w *Writer) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return ErrClosed
	case w.running:
		w.mu.Unlock()
		return errors.New("influx writer: Run is already running")
	}
	w.running = true
	w.mu.Unlock()
	defer w.transport.CloseIdleConnections()
	defer w.client.Close()
	spillCtx, stopSpill := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSpill()
	if w.spool != nil {
		go w.spiller(spillCtx)
	} else {
		close(w.spillDone)
	}

	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	var (
		r         retry
		pause     <-chan time.Time
		timer     *time.Timer
		spoolTurn bool
		ready     <-chan struct{}
	)
	if w.spool != nil {
		ready = w.spool.Ready()
	}
	for {
		if ctx.Err() != nil {
			stopSpill()
			return w.shutdown(ctx)
		}
		if pause != nil {
			select {
			case <-ctx.Done():
				stopSpill()
				return w.shutdown(ctx)
			case <-tick.C:
				w.rotate()
				continue
			case <-pause:
				pause = nil
			}
		}
		b, ok := w.next(&spoolTurn)
		if !ok {
			select {
			case <-ctx.Done():
				stopSpill()
				return w.shutdown(ctx)
			case <-tick.C:
				w.rotate()
			case <-w.wake:
			case <-ready:
			}
			continue
		}
		if d, again := w.deliver(ctx, b, &r); again {
			if timer == nil {
				timer = time.NewTimer(d)
				defer timer.Stop()
			} else {
				timer.Reset(d)
			}
			pause = timer.C
		}
	}
}

// shutdown sends what is left in memory within ShutdownTimeout. With a
// spool, what cannot be sent (InfluxDB failing, or the deadline passed) is
// spilled to it instead, to be replayed after the restart; batches already
// spooled stay there.
func (w *Writer) shutdown(parent context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), w.cfg.ShutdownTimeout)
	defer cancel()
	<-w.spillDone
	w.mu.Lock()
	w.closed = true
	w.rotateLocked()
	w.mu.Unlock()
	if w.spool != nil {
		defer w.closeSpool()
	}
	var r retry
	for {
		b, ok := w.nextLive()
		if !ok {
			return nil
		}
		if w.spool != nil && (w.isFailing() || ctx.Err() != nil) {
			w.mu.Lock()
			w.inflight, w.spilling = 0, b.seq
			w.mu.Unlock()
			if err := w.spillOne(b); err != nil {
				w.log.Error("influx spool failed at shutdown; batch lost", "err", err, "lines", b.lines)
				w.mu.Lock()
				w.loseLocked()
				w.inflight, w.spilling = 0, 0
				w.dropped += uint64(b.lines)
				w.m.droppedShutdown.Add(float64(b.lines))
				w.recycleLocked(b.buf)
				w.progressLocked()
				w.mu.Unlock()
			}
			continue
		}
		d, again := w.deliver(ctx, b, &r)
		if !again {
			continue
		}
		if w.spool != nil {
			continue // the batch is back at the head; the next round spills it
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			lost := w.dropAll()
			w.log.Error("influx shutdown deadline passed, lines lost", "lines", lost, "timeout", w.cfg.ShutdownTimeout)
			return fmt.Errorf("influx: %d lines unsent at shutdown deadline: %w", lost, ErrDropped)
		}
	}
}

// retry tracks consecutive failed attempts for backoff and logging.
type retry struct {
	failures int
	// headFails counts retryable failures of the batch at the head.
	headFails int
	since     time.Time
	logged    time.Time
}

// send makes one write request.
func (w *Writer) send(ctx context.Context, body []byte) error {
	actx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	start := time.Now()
	err := w.api.WriteRecord(actx, string(body))
	cancel()
	w.m.writeSeconds.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() == nil {
		w.m.writeErrors.Inc()
	}
	return err
}

// deliver makes one attempt to send b. When the attempt should be repeated
// it puts b back at the head of the queue and returns how long to wait.
//
// A batch InfluxDB refuses as a whole (400, 413, 422 without a partial
// write) is split in halves and the halves sent, down to single lines
// that are parked in the dead-letter file. A batch that fails with a
// retryable error probeAfter times in a row while another batch goes
// through is split the same way: one poison batch never blocks the queue.
func (w *Writer) deliver(ctx context.Context, b batch, r *retry) (wait time.Duration, again bool) {
	err := w.send(ctx, *b.buf)
	if err != nil && ctx.Err() != nil {
		// Shutting down (or the final deadline passed): not a failure of
		// InfluxDB; the caller decides what happens to the batch.
		w.requeue(b)
		return 0, true
	}
	if err == nil {
		if r.failures > 0 {
			w.log.Info("influx writes recovered", "failed_attempts", r.failures, "outage", time.Since(r.since).Round(time.Millisecond),
				"spooled_batches", w.spoolLen())
		}
		*r = retry{}
		w.finish(b, b.lines, 0, "")
		return 0, false
	}
	var herr *influxhttp.Error
	if errors.As(err, &herr) && rejected(herr.StatusCode) {
		if strings.Contains(herr.Message, "partial write") {
			// InfluxDB stored the rest and says how many it dropped.
			lost := rejectedLines(herr.Message, b.lines)
			w.finish(b, b.lines-lost, lost, DropRejected)
			if ok, suppressed := w.rejectLog.allow(time.Now()); ok {
				w.log.Error("influx partial write; the refused lines are lost", "status", herr.StatusCode,
					"err", truncate(err.Error(), 500), "lines", b.lines, "dropped", lost, "suppressed", suppressed)
			}
			r.headFails = 0
			return 0, false
		}
		if w.resolve(ctx, b, err, DropRejected) {
			r.headFails = 0
			return 0, false
		}
	} else if r.headFails++; r.headFails%probeAfter == 0 && w.probeOthers(ctx, b) {
		// Another batch went through while this one keeps failing: try
		// it once more (InfluxDB may just have come back), then split it.
		if err = w.send(ctx, *b.buf); err == nil {
			*r = retry{}
			w.finish(b, b.lines, 0, "")
			return 0, false
		}
		if ctx.Err() == nil && w.resolve(ctx, b, err, DropPoison) {
			r.headFails = 0
			return 0, false
		}
		errors.As(err, &herr)
	}
	r.failures++
	now := time.Now()
	if r.failures == 1 {
		r.since = now
	}
	if r.failures == 1 || now.Sub(r.logged) >= logEvery {
		r.logged = now
		w.log.Warn("influx write failed; retrying", "err", truncate(err.Error(), 500),
			"attempts", r.failures, "pending_batches", w.pending(), "spooled_batches", w.spoolLen())
	}
	w.requeue(b)
	w.mu.Lock()
	w.failing = true
	w.mu.Unlock()
	w.wakeSpiller()
	wait = backoff(r.failures)
	if herr != nil && herr.RetryAfter > 0 {
		wait = max(wait, min(time.Duration(herr.RetryAfter)*time.Second, maxRetryAfter))
	}
	return wait, true
}

// probeOthers sends one other batch than head, which keeps failing, and
// reports whether it went through. A live probe, or the spool's head when
// head is live, that goes through is delivered. When head is the spool's
// head, the probe is the second spooled batch: it stays in the spool and is
// committed without a second send when it reaches the head (w.probed).
func (w *Writer) probeOthers(ctx context.Context, head batch) bool {
	w.mu.Lock()
	var p batch
	live := w.n > 0
	if live {
		p = w.popLocked()
		w.probing = p.seq
	}
	w.mu.Unlock()
	if !live {
		if w.spool == nil {
			return false
		}
		n := 1
		if head.spooled {
			n = 2
		}
		recs, err := w.spool.Peek(n, 2*maxBatchBytes)
		if err != nil || len(recs) < n {
			return false
		}
		err = w.send(ctx, recs[n-1])
		if head.spooled && err == nil {
			// Delivered out of turn: when it reaches the head it is
			// committed without sending it again.
			w.probed = maphash.Bytes(probeSeed, recs[1])
		}
		if !head.spooled {
			// The spool head went through: commit it.
			if err == nil {
				w.m.linesWritten.Add(float64(countLines(recs[0])))
				w.m.replayedLines.Add(float64(countLines(recs[0])))
				if cerr := w.spool.Commit(1); cerr != nil {
					w.log.Error("influx spool commit failed", "err", cerr)
				}
				w.spoolGauges()
			}
		}
		return err == nil
	}
	err := w.send(ctx, *p.buf)
	w.mu.Lock()
	w.probing = 0
	w.mu.Unlock()
	if err == nil {
		w.finish(p, p.lines, 0, "")
		return true
	}
	// Back at the head of memory, behind nothing: head is requeued in
	// front of it by the caller.
	w.mu.Lock()
	w.putBackLocked(p)
	w.mu.Unlock()
	return false
}

// resolve splits b, whose send failed with cause, and sends the halves,
// down to single lines, which are parked in the dead-letter file with
// reason. It reports false, with nothing done, when InfluxDB itself
// appears to fail (splitGiveUp retryable errors in a row) or ctx ends;
// the caller retries b whole.
func (w *Writer) resolve(ctx context.Context, b batch, cause error, reason string) bool {
	body := *b.buf
	stack := [][]byte{body}
	var written int
	var parked []parkedPart
	budget, inARow := splitBudget, 0
	first := true
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var err error
		if first {
			err, first = cause, false // the batch's own failure
		} else {
			if ctx.Err() != nil {
				return false
			}
			if budget == 0 {
				parked = append(parked, parkedPart{p, "split budget exhausted: " + truncate(cause.Error(), 200)})
				continue
			}
			budget--
			if err = w.send(ctx, p); err == nil {
				written += countLines(p)
				inARow = 0
				continue
			}
			if ctx.Err() != nil {
				return false
			}
		}
		var herr *influxhttp.Error
		if errors.As(err, &herr) && rejected(herr.StatusCode) {
			if strings.Contains(herr.Message, "partial write") {
				lost := rejectedLines(herr.Message, countLines(p))
				written += countLines(p) - lost
				w.m.droppedRejected.Add(float64(lost))
				w.mu.Lock()
				w.dropped += uint64(lost)
				w.mu.Unlock()
				continue
			}
		} else if inARow++; inARow >= splitGiveUp {
			return false
		}
		if countLines(p) <= 1 {
			parked = append(parked, parkedPart{p, truncate(err.Error(), 200)})
			continue
		}
		a, c := halves(p)
		stack = append(stack, c, a) // a first
	}
	lost := 0
	for _, pp := range parked {
		lost += countLines(pp.lines)
	}
	w.park(parked, reason)
	w.finish(b, written, lost, reason)
	return true
}

type parkedPart struct {
	lines []byte
	why   string
}

// halves splits complete lines into two runs of about equal line counts.
func halves(p []byte) ([]byte, []byte) {
	n := countLines(p) / 2
	i := 0
	for range n {
		i += bytes.IndexByte(p[i:], '\n') + 1
	}
	return p[:i:i], p[i:]
}

// park appends lines InfluxDB keeps refusing to the dead-letter file, each
// run after a comment with the time, reason and error, and fsyncs it. They
// are counted (firewatch_influx_dead_letter_lines_total) and logged; an
// operator can fix and replay them with `influx write` or curl.
func (w *Writer) park(parts []parkedPart, reason string) {
	if len(parts) == 0 {
		return
	}
	lines := 0
	var buf []byte
	now := time.Now().UTC().Format(time.RFC3339)
	for _, pp := range parts {
		lines += countLines(pp.lines)
		buf = append(buf, "# firewatch dead letter "+now+" reason="+reason+" err="+strings.ReplaceAll(pp.why, "\n", " ")+"\n"...)
		buf = append(buf, pp.lines...)
	}
	err := w.appendDeadLetter(buf)
	if err == nil && w.deadLetter != "" {
		w.m.deadLetter.WithLabelValues(reason).Add(float64(lines))
	}
	if ok, suppressed := w.parkLog.allow(time.Now()); ok {
		args := []any{"reason", reason, "lines", lines, "err", parts[0].why, "suppressed", suppressed}
		switch {
		case err != nil:
			w.log.Error("influx refused lines and the dead-letter file failed; they are lost", append(args, "file", w.deadLetter, "file_err", err)...)
		case w.deadLetter == "":
			w.log.Error("influx refused lines; no dead-letter file (no spool_dir), they are lost",
				append(args, "first", truncate(string(parts[0].lines), 300))...)
		default:
			w.log.Error("influx refused lines; parked in the dead-letter file", append(args, "file", w.deadLetter)...)
		}
	}
}

func (w *Writer) appendDeadLetter(b []byte) error {
	if w.deadLetter == "" {
		return nil
	}
	w.dlMu.Lock()
	defer w.dlMu.Unlock()
	f, err := os.OpenFile(w.deadLetter, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()+int64(len(b)) > deadLetterMaxBytes {
		return fmt.Errorf("dead-letter file %s is full (%d MiB)", w.deadLetter, deadLetterMaxBytes>>20)
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Sync()
}

// rejected reports whether an HTTP status means the batch itself is bad, so
// that sending it again cannot succeed: 400 (line protocol InfluxDB cannot
// parse, field type conflicts, series limits), 413 (too large) and 422
// (2.x: unprocessable, e.g. outside the retention period). 401, 403 and 404
// are operator errors (token, database) that retrying survives once fixed;
// 429 and 5xx are transient.
func rejected(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusUnprocessableEntity
}

// rejectedLines estimates how many of a rejected batch's lines InfluxDB
// dropped. A 1.8 "partial write" stored the rest; its message ends in
// "dropped=N" for points refused after parsing and names only the first
// unparsable line, so the estimate is a lower bound. Any other rejection
// lost every line.
func rejectedLines(msg string, lines int) int {
	if !strings.Contains(msg, "partial write") {
		return lines
	}
	n := 0
	if i := strings.LastIndex(msg, "dropped="); i >= 0 {
		j := i + len("dropped=")
		k := j
		for k < len(msg) && msg[k] >= '0' && msg[k] <= '9' {
			k++
		}
		n, _ = strconv.Atoi(msg[j:k])
	}
	if strings.Contains(msg, "unable to parse") {
		n++
	}
	return min(max(n, 1), lines)
}

// backoff returns 100 ms doubling per failure up to 5 s, with ±25% jitter
// so that several instances do not retry in step.
func backoff(failures int) time.Duration {
	d := minBackoff << min(failures-1, 10)
	d = min(d, maxBackoff)
	return d - d/4 + rand.N(d/2+1)
}

// next takes the next batch to send. While both memory and the spool hold
// batches, they take turns (*spoolTurn says whose it is), so that live
// data keeps flowing while the backlog drains.
func (w *Writer) next(spoolTurn *bool) (batch, bool) {
	if w.spool != nil && w.spool.Len() > 0 && (*spoolTurn || w.queued() == 0) {
		recs, err := w.spool.Peek(1, maxBatchBytes)
		if err == nil && len(recs) == 1 && w.probed != 0 && maphash.Bytes(probeSeed, recs[0]) == w.probed {
			// Sent as a probe already.
			w.probed = 0
			w.finish(batch{buf: &recs[0], lines: countLines(recs[0]), spooled: true}, countLines(recs[0]), 0, "")
			recs, err = w.spool.Peek(1, maxBatchBytes)
		}
		if err == nil && len(recs) == 1 {
			*spoolTurn = false
			return batch{buf: &recs[0], lines: countLines(recs[0]), spooled: true}, true
		}
		w.mu.Lock()
		w.spoolUnreadable = err != nil
		w.mu.Unlock()
		if err != nil {
			if ok, suppressed := w.rejectLog.allow(time.Now()); ok {
				w.log.Error("influx spool unreadable; sending live batches only", "err", err, "suppressed", suppressed)
			}
		}
	}
	b, ok := w.nextLive()
	if ok {
		*spoolTurn = true
	}
	return b, ok
}

func (w *Writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// nextLive takes the oldest batch queued in memory for sending.
func (w *Writer) nextLive() (batch, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return batch{}, false
	}
	b := w.popLocked()
	w.inflight = b.seq
	return b, true
}

// popLocked takes the oldest batch off the memory queue, which must not be
// empty.
func (w *Writer) popLocked() batch {
	b := w.queue[w.head]
	w.queue[w.head] = batch{}
	w.head = (w.head + 1) % len(w.queue)
	w.n--
	return b
}

// requeue puts a batch whose send failed back at the head of the queue. If
// Write filled the queue meanwhile, b is the oldest batch and is dropped. A
// spooled batch stays at the head of the spool instead.
func (w *Writer) requeue(b batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight = 0
	if !b.spooled {
		w.putBackLocked(b)
	}
}

// unspill puts back a batch the spool did not take.
func (w *Writer) unspill(b batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.spilling = 0
	w.putBackLocked(b)
}

func (w *Writer) putBackLocked(b batch) {
	if w.n == len(w.queue) {
		w.dropLocked(b)
		return
	}
	w.head = (w.head - 1 + len(w.queue)) % len(w.queue)
	w.queue[w.head] = b
	w.n++
	w.m.pending.Set(float64(w.n))
}

// finish accounts for a batch InfluxDB answered: written lines stored,
// lost lines refused (counted under reason). A spooled batch is removed
// from the spool.
func (w *Writer) finish(b batch, written, lost int, reason string) {
	w.m.linesWritten.Add(float64(written))
	if lost > 0 {
		w.m.dropped.WithLabelValues(reason).Add(float64(lost))
	}
	if b.spooled {
		w.m.replayedLines.Add(float64(written))
		if err := w.spool.Commit(1); err != nil {
			// The batch will be sent again; InfluxDB overwrites identical
			// points, so a repeat is harmless.
			w.log.Error("influx spool commit failed", "err", err)
		}
		w.spoolGauges()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight = 0
	w.failing = false // InfluxDB answered
	w.dropped += uint64(lost)
	w.recycleLocked(b.buf)
	w.m.pending.Set(float64(w.pending0()))
	w.progressLocked()
}

// rotate hands the current batch to the sender if it holds any line; the
// sender calls it every FlushInterval.
func (w *Writer) rotate() {
	w.mu.Lock()
	w.rotateLocked()
	w.mu.Unlock()
}

func (w *Writer) rotateLocked() {
	if w.curLines == 0 {
		return
	}
	if w.n == len(w.queue) {
		w.dropLocked(w.popLocked())
	}
	w.queue[(w.head+w.n)%len(w.queue)] = batch{buf: w.cur, lines: w.curLines, seq: w.nextSeq}
	w.nextSeq++
	w.n++
	w.cur, w.curLines = w.newBufLocked(), 0
	w.m.pending.Set(float64(w.pending0()))
	if w.spool != nil && (w.failing || w.n > w.spillAt) {
		w.wakeSpiller()
	}
}

// dropLocked discards a batch that no longer fits in the queue.
func (w *Writer) dropLocked(b batch) {
	w.dropped += uint64(b.lines)
	w.m.droppedQueueFull.Add(float64(b.lines))
	w.recycleLocked(b.buf)
	w.progressLocked()
	if ok, suppressed := w.dropLog.allow(time.Now()); ok {
		w.log.Warn("influx queue full: dropped the oldest batch", "lines", b.lines,
			"max_pending", w.cfg.MaxPending, "suppressed", suppressed)
	}
}

// dropAll discards every queued batch and returns how many lines they held.
func (w *Writer) dropAll() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.loseLocked()
	lines := 0
	for w.n > 0 {
		b := w.popLocked()
		lines += b.lines
		w.recycleLocked(b.buf)
	}
	w.dropped += uint64(lines)
	w.m.droppedShutdown.Add(float64(lines))
	w.m.pending.Set(0)
	w.progressLocked()
	return lines
}

// unfinishedLocked returns the sequence number of the oldest batch in
// memory not yet finished (sent, dropped or spilled); batches leave the
// queue at its head, in order.
func (w *Writer) unfinishedLocked() uint64 {
	u := w.nextSeq
	if w.n > 0 {
		u = w.queue[w.head].seq
	}
	for _, s := range [...]uint64{w.inflight, w.spilling, w.probing} {
		if s != 0 && s < u {
			u = s
		}
	}
	return u
}

func (w *Writer) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending0()
}

// pending0 counts the batches in memory: queued, being sent or being
// spilled.
func (w *Writer) pending0() int {
	n := w.n
	if w.inflight != 0 {
		n++
	}
	if w.spilling != 0 {
		n++
	}
	if w.probing != 0 {
		n++
	}
	return n
}

func (w *Writer) progressLocked() {
	close(w.progress)
	w.progress = make(chan struct{})
}

// spiller moves batches from memory to the spool: all of them while
// InfluxDB fails, the oldest while more than spillAt wait. It stops when
// ctx ends.
func (w *Writer) spiller(ctx context.Context) {
	defer close(w.spillDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.spillWake:
		}
		for ctx.Err() == nil {
			w.mu.Lock()
			// While the spool cannot be read, batches stay in memory
			// (and go to InfluxDB as soon as it answers) unless the
			// queue is full: on disk they beat being dropped.
			if w.n == 0 || (!w.failing && w.n <= w.spillAt) || (w.spoolUnreadable && w.n < len(w.queue)) {
				w.mu.Unlock()
				break
			}
			b := w.popLocked()
			w.spilling = b.seq
			w.mu.Unlock()
			if err := w.spillOne(b); err != nil {
				if ok, suppressed := w.dropLog.allow(time.Now()); ok {
					w.log.Error("influx spool cannot take batches; keeping them in memory", "err", err, "suppressed", suppressed)
				}
				w.unspill(b)
				t := time.NewTimer(spillRetry)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
				break
			}
		}
	}
}

// spillOne writes one batch taken from memory to the spool and syncs it.
// On success the batch is finished as far as memory is concerned.
func (w *Writer) spillOne(b batch) error {
	if err := w.spool.Append(*b.buf); err != nil {
		return err
	}
	w.m.spooledLines.Add(float64(b.lines))
	w.spoolGauges()
	w.mu.Lock()
	w.spilling = 0
	w.recycleLocked(b.buf)
	w.m.pending.Set(float64(w.pending0()))
	w.progressLocked()
	w.mu.Unlock()
	w.signal() // the sender may be idle, waiting for live batches
	return nil
}

func (w *Writer) wakeSpiller() {
	select {
	case w.spillWake <- struct{}{}:
	default:
	}
}

func (w *Writer) isFailing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

func (w *Writer) spoolLen() int {
	if w.spool == nil {
		return 0
	}
	return w.spool.Len()
}

func (w *Writer) spoolGauges() {
	if w.spool == nil {
		return
	}
	w.m.spoolBatches.Set(float64(w.spool.Len()))
	w.m.spoolBytes.Set(float64(w.spool.Bytes()))
}

func (w *Writer) closeSpool() {
	w.spoolGauges()
	if n := w.spool.Len(); n > 0 {
		w.log.Info("influx spool keeps batches for the next start", "batches", n, "bytes", w.spool.Bytes())
	}
	if err := w.spool.Close(); err != nil {
		w.log.Error("influx spool close", "err", err)
	}
}

func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Writer) newBuf() *[]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.newBufLocked()
}

func (w *Writer) newBufLocked() *[]byte {
	if k := len(w.free); k > 0 {
		b := w.free[k-1]
		w.free[k-1] = nil
		w.free = w.free[:k-1]
		return b
	}
	b := make([]byte, 0, initialBatchBytes)
	return &b
}

func (w *Writer) recycleLocked(b *[]byte) {
	if b == nil || cap(*b) > 2*maxBatchBytes || len(w.free) == cap(w.free) {
		return
	}
	*b = (*b)[:0]
	w.free = append(w.free, b)
}

// rateLog lets a message through at most every logEvery and counts the
// ones it held back.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *rateLog) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
