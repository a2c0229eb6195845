package influx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	influxhttp "github.com/influxdata/influxdb-client-go/v2/api/http"
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
)

// Writer batches line protocol and sends it to InfluxDB. Write is the hot
// path and does not allocate in steady state; Run owns the sending
// goroutine. While InfluxDB is down, full batches wait in memory up to
// Config.MaxPending; beyond that the oldest is dropped. Keeping every
// reading through a long outage needs the on-disk spool, which is the issue
// "lossless time-series path".
type Writer struct {
	cfg       Config
	log       *slog.Logger
	client    influxdb2.Client
	api       api.WriteAPIBlocking
	transport *http.Transport
	m         *metrics
	wake      chan struct{}

	mu       sync.Mutex
	cur      *[]byte // batch being filled
	curLines int
	queue    []batch // ring of full batches waiting to be sent, oldest at head
	head, n  int
	free     []*[]byte // recycled batch buffers
	nextSeq  uint64    // sequence number of the next batch; starts at 1
	inflight uint64    // seq of the batch being sent, 0 when none
	// progress is closed and replaced whenever a batch is finished (sent,
	// rejected or dropped), waking Flush.
	progress chan struct{}
	dropped  uint64 // lines dropped for any reason, for Flush's report
	running  bool
	closed   bool
	// dropLog and rejectLog rate-limit the logs of paths that load or
	// bad input can drive.
	dropLog, rejectLog rateLog
}

// batch is a run of complete lines handed from Write to the sender.
type batch struct {
	buf   *[]byte
	lines int
	seq   uint64
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
		queue:     make([]batch, cfg.MaxPending),
		free:      make([]*[]byte, 0, cfg.MaxPending+2),
		nextSeq:   1,
		progress:  make(chan struct{}),
	}
	w.cur = w.newBuf()
	return w, nil
}

// Write adds complete lines of line protocol, each ending in '\n' (one is
// added if the last is missing), to the current batch. A full batch is
// handed to the sender. Write copies lines and never blocks on InfluxDB; it
// is safe for concurrent use.
func (w *Writer) Write(lines []byte) {
	if len(lines) == 0 {
		return
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
		return
	}
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
}

var newline = []byte{'\n'}

// Flush hands the current batch to the sender and waits until it and every
// batch queued before it are sent, rejected or dropped, or ctx ends. Run
// must be running. The error wraps ErrDropped when lines were lost while
// Flush waited.
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
// waiting behind it in order. InfluxDB rejecting a batch as invalid (HTTP
// 400, 413 or 422) is not retried: its lines are counted as dropped.
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

	tick := time.NewTicker(w.cfg.FlushInterval)
	defer tick.Stop()
	var (
		r     retry
		pause <-chan time.Time
		timer *time.Timer
	)
	for {
		if ctx.Err() != nil {
			return w.shutdown(ctx)
		}
		if pause != nil {
			select {
			case <-ctx.Done():
				return w.shutdown(ctx)
			case <-tick.C:
				w.rotate()
				continue
			case <-pause:
				pause = nil
			}
		}
		b, ok := w.next()
		if !ok {
			select {
			case <-ctx.Done():
				return w.shutdown(ctx)
			case <-tick.C:
				w.rotate()
			case <-w.wake:
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

// shutdown sends what is left within ShutdownTimeout.
func (w *Writer) shutdown(parent context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), w.cfg.ShutdownTimeout)
	defer cancel()
	w.mu.Lock()
	w.closed = true
	w.rotateLocked()
	w.mu.Unlock()
	var r retry
	for {
		b, ok := w.next()
		if !ok {
			return nil
		}
		d, again := w.deliver(ctx, b, &r)
		if !again {
			continue
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
	since    time.Time
	logged   time.Time
}

// deliver makes one attempt to send b. When the attempt should be repeated
// it puts b back at the head of the queue and returns how long to wait.
func (w *Writer) deliver(ctx context.Context, b batch, r *retry) (wait time.Duration, again bool) {
	actx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	start := time.Now()
	err := w.api.WriteRecord(actx, string(*b.buf))
	cancel()
	w.m.writeSeconds.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() != nil {
		// Shutting down (or the final deadline passed): not a failure of
		// InfluxDB; the caller decides what happens to the batch.
		w.requeue(b)
		return 0, true
	}
	if err == nil {
		if r.failures > 0 {
			w.log.Info("influx writes recovered", "failed_attempts", r.failures, "outage", time.Since(r.since).Round(time.Millisecond))
			*r = retry{}
		}
		w.finish(b, b.lines, 0)
		return 0, false
	}
	w.m.writeErrors.Inc()
	var herr *influxhttp.Error
	if errors.As(err, &herr) && rejected(herr.StatusCode) {
		lost := rejectedLines(herr.Message, b.lines)
		w.finish(b, b.lines-lost, lost)
		if ok, suppressed := w.rejectLog.allow(time.Now()); ok {
			w.log.Error("influx rejected a batch; not retrying", "status", herr.StatusCode,
				"err", truncate(err.Error(), 500), "lines", b.lines, "dropped", lost, "suppressed", suppressed)
		}
		return 0, false
	}
	r.failures++
	now := time.Now()
	if r.failures == 1 {
		r.since = now
	}
	if r.failures == 1 || now.Sub(r.logged) >= logEvery {
		r.logged = now
		w.log.Warn("influx write failed; retrying", "err", truncate(err.Error(), 500),
			"attempts", r.failures, "pending_batches", w.pending())
	}
	w.requeue(b)
	wait = backoff(r.failures)
	if herr != nil && herr.RetryAfter > 0 {
		wait = max(wait, min(time.Duration(herr.RetryAfter)*time.Second, maxRetryAfter))
	}
	return wait, true
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

// next takes the oldest queued batch for sending.
func (w *Writer) next() (batch, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return batch{}, false
	}
	b := w.queue[w.head]
	w.queue[w.head] = batch{}
	w.head = (w.head + 1) % len(w.queue)
	w.n--
	w.inflight = b.seq
	return b, true
}

// requeue puts a batch whose send failed back at the head of the queue. If
// Write filled the queue meanwhile, b is the oldest batch and is dropped.
func (w *Writer) requeue(b batch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight = 0
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
// lost lines rejected.
func (w *Writer) finish(b batch, written, lost int) {
	w.m.linesWritten.Add(float64(written))
	if lost > 0 {
		w.m.droppedRejected.Add(float64(lost))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight = 0
	w.dropped += uint64(lost)
	w.recycleLocked(b.buf)
	w.m.pending.Set(float64(w.n))
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
		w.dropLocked(w.queue[w.head])
		w.queue[w.head] = batch{}
		w.head = (w.head + 1) % len(w.queue)
		w.n--
	}
	w.queue[(w.head+w.n)%len(w.queue)] = batch{buf: w.cur, lines: w.curLines, seq: w.nextSeq}
	w.nextSeq++
	w.n++
	w.cur, w.curLines = w.newBufLocked(), 0
	w.m.pending.Set(float64(w.pending0()))
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
	lines := 0
	for w.n > 0 {
		b := w.queue[w.head]
		w.queue[w.head] = batch{}
		w.head = (w.head + 1) % len(w.queue)
		w.n--
		lines += b.lines
		w.recycleLocked(b.buf)
	}
	w.dropped += uint64(lines)
	w.m.droppedShutdown.Add(float64(lines))
	w.m.pending.Set(0)
	w.progressLocked()
	return lines
}

// unfinishedLocked returns the sequence number of the oldest batch not yet
// finished; batches finish in order except for drops, which take the oldest.
func (w *Writer) unfinishedLocked() uint64 {
	switch {
	case w.inflight != 0:
		return w.inflight
	case w.n > 0:
		return w.queue[w.head].seq
	default:
		return w.nextSeq
	}
}

func (w *Writer) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending0()
}

// pending0 counts queued batches and the one being sent.
func (w *Writer) pending0() int {
	if w.inflight != 0 {
		return w.n + 1
	}
	return w.n
}

func (w *Writer) progressLocked() {
	close(w.progress)
	w.progress = make(chan struct{})
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
