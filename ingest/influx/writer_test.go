package influx

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// fakeInflux is an InfluxDB write endpoint that records what it receives
// and answers as respond says.
type fakeInflux struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    int
	bodies  []string // accepted (2xx) bodies, in order
	gzipped int      // requests with Content-Encoding: gzip
	respond func(req int, body string) (status int, msg string)
}

func newFakeInflux(t testing.TB, respond func(req int, body string) (int, string)) *fakeInflux {
	f := &fakeInflux{t: t, respond: respond}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeInflux) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/write" || q.Get("bucket") != "firewatch/autogen" ||
		q.Get("precision") != "ms" {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "bad request", http.StatusInternalServerError)
		return
	}
	body := io.Reader(r.Body)
	gz := r.Header.Get("Content-Encoding") == "gzip"
	if gz {
		zr, err := gzip.NewReader(r.Body)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return // cut short before the gzip header was whole (the writer's shutdown deadline)
		}
		if err != nil {
			f.t.Errorf("gzip: %v", err)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return // the writer gave up mid-body (its shutdown deadline): nothing was written
	}
	if err != nil {
		f.t.Errorf("read body: %v", err)
		return
	}
	f.mu.Lock()
	if gz {
		f.gzipped++
	}
	f.reqs++
	n := f.reqs
	f.mu.Unlock()
	status, msg := http.StatusNoContent, ""
	if f.respond != nil {
		status, msg = f.respond(n, string(b))
	}
	if status/100 == 2 {
		f.mu.Lock()
		f.bodies = append(f.bodies, string(b))
		f.mu.Unlock()
		w.WriteHeader(status)
		return
	}
	// As InfluxDB 1.8 answers.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Influxdb-Error", msg)
	w.WriteHeader(status)
	fmt.Fprintf(w, "{%q:%q}\n", "error", msg)
}

func (f *fakeInflux) got() (reqs int, bodies []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs, append([]string(nil), f.bodies...)
}

func (f *fakeInflux) gzippedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gzipped
}

// startWriter runs a writer against url until the test ends.
func startWriter(t *testing.T, cfg Config) (*Writer, *prometheus.Registry, func() error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	w, err := NewWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30 s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return w, reg, stop
}

func lines(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprintf("m,device=d%d v=%d %d\n", i, i, 1795420800000+int64(i)))
	}
	return s
}

func flush(t *testing.T, w *Writer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return w.Flush(ctx)
}

// metricValue returns the value of a counter or gauge, with the label
// reason=reason when reason is not empty.
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason != "" {
				match := false
				for _, lp := range m.GetLabel() {
					match = match || lp.GetName() == "reason" && lp.GetValue() == reason
				}
				if !match {
					continue
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

func TestWriterBatches(t *testing.T) {
	f := newFakeInflux(t, nil)
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 10, FlushInterval: time.Hour})
	all := lines(1, 25)
	for i, l := range all {
		if i == 24 {
			w.Write([]byte(strings.TrimSuffix(l, "\n"))) // a missing final newline is added
			continue
		}
		w.Write([]byte(l))
	}
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	_, bodies := f.got()
	want := []string{strings.Join(all[:10], ""), strings.Join(all[10:20], ""), strings.Join(all[20:], "")}
	if fmt.Sprint(bodies) != fmt.Sprint(want) {
		t.Fatalf("bodies:\n%q\nwant:\n%q", bodies, want)
	}
	if g := f.gzippedCount(); g != 3 {
		t.Errorf("%d of 3 requests gzipped, want all by default", g)
	}
	if v := metricValue(t, reg, "firewatch_influx_lines_written_total", ""); v != 25 {
		t.Errorf("lines written = %v, want 25", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_write_seconds", ""); v != 3 {
		t.Errorf("write_seconds observations = %v, want 3", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_pending_batches", ""); v != 0 {
		t.Errorf("pending = %v after Flush", v)
	}
	// Flush with nothing buffered returns at once.
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
}

func TestWriterIdentityEncoding(t *testing.T) {
	f := newFakeInflux(t, nil)
	w, _, _ := startWriter(t, Config{URL: f.srv.URL, ContentEncoding: "identity"})
	w.Write([]byte(lines(1, 1)[0]))
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	if reqs, bodies := f.got(); reqs != 1 || len(bodies) != 1 || f.gzippedCount() != 0 {
		t.Errorf("%d requests, %d gzipped, want 1 plain", reqs, f.gzippedCount())
	}
}

func TestWriterFlushInterval(t *testing.T) {
	f := newFakeInflux(t, nil)
	w, _, _ := startWriter(t, Config{URL: f.srv.URL, FlushInterval: 20 * time.Millisecond})
	w.Write([]byte(lines(1, 1)[0]))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, bodies := f.got(); len(bodies) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a partial batch was not sent after FlushInterval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriterRetriesInOrder(t *testing.T) {
	f := newFakeInflux(t, func(n int, _ string) (int, string) {
		if n <= 3 {
			return http.StatusServiceUnavailable, "unavailable"
		}
		return http.StatusNoContent, ""
	})
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 2, FlushInterval: time.Hour})
	all := lines(1, 5)
	for _, l := range all {
		w.Write([]byte(l))
	}
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	reqs, bodies := f.got()
	// After probeAfter failures of the head, the next batch is tried
	// once (it goes through), then the head again.
	want := all[2] + all[3] + all[0] + all[1] + all[4]
	if got := strings.Join(bodies, ""); got != want {
		t.Fatalf("delivered:\n%s\nwant:\n%s", got, want)
	}
	if reqs != 6 {
		t.Errorf("%d requests, want 3 failed + 3 batches", reqs)
	}
	if v := metricValue(t, reg, "firewatch_influx_write_errors_total", ""); v != 3 {
		t.Errorf("write errors = %v, want 3", v)
	}
}

// TestWriterRejectedBatchSplit (defect 9): a batch InfluxDB refuses as a
// whole for one bad line is split until the bad line is found; the good
// lines are written, the bad one parked in the dead-letter file.
func TestWriterRejectedBatchSplit(t *testing.T) {
	f := newFakeInflux(t, func(_ int, body string) (int, string) {
		if strings.Contains(body, "d3 ") {
			return http.StatusBadRequest, "unable to parse 'm,device=d3 v=3': invalid number"
		}
		return http.StatusNoContent, ""
	})
	dl := filepath.Join(t.TempDir(), "dead.lp")
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour, DeadLetterPath: dl})
	all := lines(1, 8)
	for _, l := range all {
		w.Write([]byte(l))
	}
	err := flush(t, w)
	_, bodies := f.got()
	got := sortedLines(bodies)
	wantLines := sortedCopy(append(append([]string(nil), all[:2]...), all[3:]...))
	if strings.Join(got, "") != strings.Join(wantLines, "") {
		t.Fatalf("delivered %q, want every line but d3", got)
	}
	if !errors.Is(err, ErrDropped) || !strings.Contains(err.Error(), "1 ") {
		t.Fatalf("Flush = %v, want 1 line dropped", err)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropRejected); v != 1 {
		t.Errorf("dropped{rejected} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_dead_letter_lines_total", DropRejected); v != 1 {
		t.Errorf("dead_letter{rejected} = %v, want 1", v)
	}
	b, err := os.ReadFile(dl)
	if err != nil || !strings.Contains(string(b), all[2]) || !strings.HasPrefix(string(b), "# firewatch dead letter") {
		t.Errorf("dead-letter file = %q, %v; want the d3 line after a comment", b, err)
	}
}

// TestWriterTooLargeSplit (defect 9): a reverse proxy's 413 for large
// bodies makes the writer send halves; nothing is lost.
func TestWriterTooLargeSplit(t *testing.T) {
	f := newFakeInflux(t, func(_ int, body string) (int, string) {
		if len(body) > 200 {
			return http.StatusRequestEntityTooLarge, "request entity too large"
		}
		return http.StatusNoContent, ""
	})
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 40, FlushInterval: time.Hour, ContentEncoding: "identity"})
	all := lines(1, 120)
	for _, l := range all {
		w.Write([]byte(l))
	}
	if err := flush(t, w); err != nil {
		t.Fatalf("Flush = %v, want nothing lost", err)
	}
	_, bodies := f.got()
	if got := sortedLines(bodies); strings.Join(got, "") != strings.Join(sortedCopy(all), "") {
		t.Fatalf("delivered %d lines, want each of %d once", len(got), len(all))
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropRejected); v != 0 {
		t.Errorf("dropped{rejected} = %v, want 0", v)
	}
}

// TestWriterPoisonBatch (defect 8): one batch that always gets a retryable
// error (here a 500 for one line) no longer blocks every write: once other
// batches go through, it is split and its bad line parked; the good lines
// are all delivered and nothing is dropped for lack of room.
func TestWriterPoisonBatch(t *testing.T) {
	f := newFakeInflux(t, func(_ int, body string) (int, string) {
		if strings.Contains(body, "device=d17 ") {
			return http.StatusInternalServerError, "engine: shard write failed"
		}
		return http.StatusNoContent, ""
	})
	dir := t.TempDir()
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 10, MaxPending: 2, FlushInterval: time.Hour,
		SpoolDir: dir, spoolBytes: 1 << 20, spoolSegment: 16 << 10})
	all := lines(1, 3000)
	writePaced(t, w, all, 10)
	err := flush(t, w)
	_, bodies := f.got()
	got := sortedLines(bodies)
	good := append(append([]string(nil), all[:16]...), all[17:]...)
	if strings.Join(got, "") != strings.Join(sortedCopy(good), "") {
		t.Fatalf("delivered %d lines, want the %d good ones (Flush: %v)", len(got), len(good), err)
	}
	if v := metricValue(t, reg, "firewatch_influx_dead_letter_lines_total", DropPoison); v != 1 {
		t.Errorf("dead_letter{poison} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropSpoolFull); v != 0 {
		t.Errorf("dropped{spool_full} = %v, want 0", v)
	}
	b, _ := os.ReadFile(filepath.Join(dir, DeadLetterFile))
	if !strings.Contains(string(b), all[16]) {
		t.Errorf("dead-letter file %q does not hold the poison line %q", b, all[16])
	}
}

func TestWriterPartialWrite(t *testing.T) {
	f := newFakeInflux(t, func(int, string) (int, string) {
		return http.StatusBadRequest, `partial write: field type conflict: input field "v" on measurement "m" is type string, already exists as type float dropped=2`
	})
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour})
	for _, l := range lines(1, 5) {
		w.Write([]byte(l))
	}
	if err := flush(t, w); !errors.Is(err, ErrDropped) {
		t.Fatalf("Flush = %v, want ErrDropped", err)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropRejected); v != 2 {
		t.Errorf("dropped{rejected} = %v, want 2", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_lines_written_total", ""); v != 3 {
		t.Errorf("lines written = %v, want 3", v)
	}
}

func TestRejectedLines(t *testing.T) {
	for _, c := range []struct {
		msg         string
		lines, want int
	}{
		{"unable to parse 'x': invalid number", 10, 10},
		{`partial write: field type conflict: ... dropped=3`, 10, 3},
		{`partial write: unable to parse 'x': invalid number dropped=0`, 10, 1},
		{`partial write: unable to parse 'x': bad timestamp dropped=4`, 10, 5},
		{`partial write: max-series-per-database limit exceeded: (1000000) dropped=99`, 10, 10},
		{`partial write has occurred, errors encountered on line(s): ...`, 10, 1},
		{"request entity too large", 7, 7},
	} {
		if got := rejectedLines(c.msg, c.lines); got != c.want {
			t.Errorf("rejectedLines(%q, %d) = %d, want %d", c.msg, c.lines, got, c.want)
		}
	}
}

// TestWriterDropsOldest fills the queue before the sender runs: the oldest
// batches make room for the newest.
func TestWriterDropsOldest(t *testing.T) {
	f := newFakeInflux(t, nil)
	reg := prometheus.NewRegistry()
	w, err := NewWriter(Config{URL: f.srv.URL, BatchLines: 1, MaxPending: 2, FlushInterval: time.Hour,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(1, 5)
	for _, l := range all {
		w.Write([]byte(l))
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropQueueFull); v != 3 {
		t.Errorf("dropped{queue_full} = %v, want 3", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_pending_batches", ""); v != 2 {
		t.Errorf("pending = %v, want 2", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, bodies := f.got(); strings.Join(bodies, "") != all[3]+all[4] {
		t.Fatalf("delivered %q, want the newest two lines", bodies)
	}
}

// TestWriterRequeueDropsOldest: a batch whose send failed while Write filled
// the queue is the oldest, so it is the one dropped.
func TestWriterRequeueDropsOldest(t *testing.T) {
	w, err := NewWriter(Config{URL: "http://127.0.0.1:1", BatchLines: 1, MaxPending: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	all := lines(1, 3)
	w.Write([]byte(all[0]))
	b, ok := w.nextLive()
	if !ok || string(*b.buf) != all[0] || w.pending() != 1 {
		t.Fatalf("next = %q %v, pending %d", *b.buf, ok, w.pending())
	}
	w.Write([]byte(all[1]))
	w.Write([]byte(all[2]))
	w.requeue(b)
	if w.dropped != 1 || w.n != 2 || string(*w.queue[w.head].buf) != all[1] {
		t.Fatalf("dropped %d, queued %d, head %q", w.dropped, w.n, *w.queue[w.head].buf)
	}
}

func TestWriterShutdownFlushes(t *testing.T) {
	f := newFakeInflux(t, nil)
	w, reg, stop := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour})
	all := lines(1, 3)
	for _, l := range all {
		w.Write([]byte(l))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, bodies := f.got(); strings.Join(bodies, "") != strings.Join(all, "") {
		t.Fatalf("delivered %q at shutdown", bodies)
	}
	w.Write([]byte(all[0]))
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropClosed); v != 1 {
		t.Errorf("dropped{closed} = %v, want 1", v)
	}
	if err := w.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after shutdown = %v, want ErrClosed", err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after shutdown = %v, want ErrClosed", err)
	}
}

func TestWriterShutdownDeadline(t *testing.T) {
	f := newFakeInflux(t, func(int, string) (int, string) { return http.StatusServiceUnavailable, "down" })
	w, reg, stop := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour, ShutdownTimeout: 300 * time.Millisecond})
	for _, l := range lines(1, 3) {
		w.Write([]byte(l))
	}
	start := time.Now()
	err := stop()
	if !errors.Is(err, ErrDropped) {
		t.Fatalf("Run = %v, want ErrDropped", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %v with a 300 ms deadline", d)
	}
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropShutdown); v != 3 {
		t.Errorf("dropped{shutdown} = %v, want 3", v)
	}
}

func TestWriterRetriesUnreachable(t *testing.T) {
	// Nothing listens: connection refused is retried, Flush waits.
	f := newFakeInflux(t, nil)
	url := f.srv.URL
	f.srv.Close()
	w, reg, _ := startWriter(t, Config{URL: url, FlushInterval: time.Hour, ShutdownTimeout: 100 * time.Millisecond})
	w.Write([]byte(lines(1, 1)[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush = %v, want deadline exceeded", err)
	}
	if v := metricValue(t, reg, "firewatch_influx_write_errors_total", ""); v < 1 {
		t.Errorf("write errors = %v", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_pending_batches", ""); v != 1 {
		t.Errorf("pending = %v, want 1", v)
	}
}

func TestConfig(t *testing.T) {
	var file struct {
		Influx Config `yaml:"influx"`
	}
	dec := yaml.NewDecoder(strings.NewReader(SampleConfig))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("sample.yaml: %v", err)
	}
	got := file.Influx
	want := Config{URL: "http://127.0.0.1:8086"}
	want.SetDefaults()
	if got != want {
		t.Errorf("sample.yaml = %+v\nwant the defaults %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
	bad := Config{URL: "127.0.0.1:8086", BatchLines: -1, MaxPending: -1, FlushInterval: -1, Timeout: -1, ShutdownTimeout: -1, ContentEncoding: "br"}
	err := bad.Validate()
	for _, key := range []string{"url", "bucket", "batch_lines", "flush_interval", "max_pending", "timeout", "shutdown_timeout", "content_encoding"} {
		if err == nil || !strings.Contains(err.Error(), "influx."+key+" ") {
			t.Errorf("Validate does not report influx.%s: %v", key, err)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := NewWriter(Config{URL: "http://x", Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(Config{URL: "http://x", Registerer: reg}); err == nil {
		t.Error("a second writer registered the same metrics")
	}
}

// BenchmarkWrite measures the hot path: copying one encoded line into the
// current batch, with batches handed to a sender that recycles them as
// fast as it can.
func BenchmarkWrite(b *testing.B) {
	w, err := NewWriter(Config{URL: "http://127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-w.wake:
			}
			for b, ok := w.nextLive(); ok; b, ok = w.nextLive() {
				w.finish(b, b.lines, 0, "")
			}
		}
	})
	line := []byte("electrical,county=450204,device=el-0001,kind=electrical,town=450204001,village=450204001001 residual_current_ma=132.5,voltage_v=221.4,phase_current_a=18.25,rssi_dbm=-91 1795420800123\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		w.Write(line)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
}

// BenchmarkWriteSend is the whole writer per line: Write, gzip and HTTP to
// a server that accepts everything. Write never waits for the sender, so
// the loop lets the sender catch up after every batch, as it does in
// steady state; otherwise the benchmark would measure a growing queue.
func BenchmarkWriteSend(b *testing.B) {
	for _, enc := range []string{"gzip", "identity"} {
		b.Run(enc, func(b *testing.B) { benchmarkWriteSend(b, enc) })
	}
}

func benchmarkWriteSend(b *testing.B, encoding string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	w, err := NewWriter(Config{URL: srv.URL, ContentEncoding: encoding, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	line := []byte("electrical,county=450204,device=el-0001,kind=electrical,town=450204001,village=450204001001 residual_current_ma=132.5,voltage_v=221.4,phase_current_a=18.25,rssi_dbm=-91 1795420800123\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Write(line)
		if i%DefaultBatchLines == 0 {
			for w.pending() > 2 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
