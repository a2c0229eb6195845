package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The centre's duties through real TCP sockets: the test is the UITD, writing hand-written frames and
// checking the centre's frames byte by byte against hand-written ones (testdata/centre_*.hex).

var uitd1 = gb26875.Address{1, 2, 3, 4, 5, 6}

// clock is a centre's clock the test steps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 13, 22, 50, 0, cst)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// readFrame reads the next len(want) bytes and compares them with want.
func readFrame(t *testing.T, c net.Conn, want []byte, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, len(want))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("%s: %v (got % X)", what, err, b)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("%s:\n got  % X\n want % X", what, b, want)
	}
}

// connected opens a connection as UITD 01…06 and sends a keep-alive, so that the centre knows it.
func connected(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	testenv.WaitFor(t, 10*time.Second, "the UITD attached", func() bool { return s.Connected(uitd1) })
	return c
}

// metric returns the value of the metric name with the given label values (in order), -1 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i, l := range m.GetLabel() {
				if i < len(labels) && l.GetValue() != labels[i] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return -1
}

// TestClockSyncOnConnect: the centre sends its time (校时, type 90) after the first frame of a connection
// even when the UITD's clock is right, not again on the next frame, and again a day later; the frame is
// the standard's layout byte for byte.
func TestClockSyncOnConnect(t *testing.T) {
	rec := &recorder{}
	s, reg := startServer(t, func(c *Config) { c.ClockSyncEvery = 24 * time.Hour; c.ClockSkew = 1000 * time.Hour }, rec)
	clk := newClock()
	s.Now = clk.now
	c := dial(t, s)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	readFrame(t, c, hexFile(t, "centre_sync_clock.hex"), "校时 on connect")
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	clk.add(time.Hour)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3) // no 校时 within the day: the next bytes are this 确认
	// The connection's frames are handled in order: once a later frame is counted, the keep-alive's 校时
	// decision is made, and the clock may move.
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	testenv.WaitFor(t, 10*time.Second, "the UITD's 确认 counted", func() bool {
		return metric(t, reg, "firewatch_gb26875_answers_total", "confirm") == 2
	})
	clk.add(23 * time.Hour)
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	readFrame(t, c, hexFile(t, "centre_sync_clock_day2.hex"), "校时 a day later")
	if n := metric(t, reg, "firewatch_gb26875_clock_syncs_total"); n != 2 {
		t.Errorf("clock syncs %v, want 2", n)
	}
}

// api serves the duty API of s as cmd/firewatch mounts it (without its authentication).
func api(t *testing.T, s *Server) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/uitds/{uitd}/inspect", func(w http.ResponseWriter, r *http.Request) { s.ServeInspect(w, r, "op-1") })
	mux.HandleFunc("GET /api/v1/uitds/inspections", s.ServeAssessments)
	mux.HandleFunc("GET /api/v1/uitds/{uitd}/inspections", s.ServeAssessment)
	h := httptest.NewServer(mux)
	t.Cleanup(h.Close)
	return h
}

func post(t *testing.T, url string) (int, map[string]any) {
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Error(err)
	}
	return resp.StatusCode, v
}

func assessment(t *testing.T, url string) Assessment {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a Assessment
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestInspectAnswered: a 查岗 from the API reaches the UITD as the standard's type 91 frame; once the UITD
// confirmed it the API answers 202; the fire control room's answer (type 24, 查岗应答, operator 3) 42 s
// later makes the unit's figure 1 of 1 answered, median 42 s, in the API and in the metrics.
func TestInspectAnswered(t *testing.T) {
	rec := &recorder{}
	// The test steps the centre's clock past the frames' time: no 校时 for a clock off.
	s, reg := startServer(t, func(c *Config) { c.ClockSkew = 1000 * time.Hour }, rec)
	clk := newClock()
	s.Now = clk.now
	h := api(t, s)
	c := connected(t, s)

	type result struct {
		code int
		body map[string]any
	}
	done := make(chan result, 1)
	go func() {
		code, body := post(t, h.URL+"/api/v1/uitds/010203040506/inspect")
		done <- result{code, body}
	}()
	readFrame(t, c, hexFile(t, "centre_duty_check.hex"), "查岗")
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	r := <-done
	if r.code != http.StatusAccepted || r.body["state"] != InspectAwaiting || r.body["actor"] != "op-1" || r.body["uitd"] != "uitd-1" {
		t.Fatalf("POST inspect: %d %v", r.code, r.body)
	}
	// A second 查岗 while the first waits for its answer: 409, nothing sent.
	if code, body := post(t, h.URL+"/api/v1/uitds/uitd-1/inspect"); code != http.StatusConflict || body["inspection"] == nil {
		t.Errorf("second 查岗: %d %v", code, body)
	}
	clk.add(42 * time.Second)
	write(t, c, hexFile(t, "frames/type24_uitd_duty.hex"))
	readAnswer(t, c, 11, 3)

	a := assessment(t, h.URL+"/api/v1/uitds/uitd-1/inspections")
	if a.Asked != 1 || a.Answered != 1 || a.AnswerRate == nil || *a.AnswerRate != 1 || a.MedianAnswerSeconds == nil ||
		*a.MedianAnswerSeconds != 42 || a.Pending != nil || len(a.Recent) != 1 || a.Unit != "柳石家园物业" {
		t.Fatalf("assessment %+v", a)
	}
	if p := a.Recent[0]; p.State != InspectAnswered || *p.Operator != 3 || *p.AnswerSeconds != 42 || p.Origin != "api" {
		t.Errorf("inspection %+v", p)
	}
	if n := metric(t, reg, "firewatch_gb26875_inspections_answered_total", "uitd-1", "柳石家园物业"); n != 1 {
		t.Errorf("answered metric %v", n)
	}
	if n := metric(t, reg, "firewatch_gb26875_inspection_answer_median_seconds"); n != 42 {
		t.Errorf("median metric %v", n)
	}
	// The figure of a period (the digests'): the day's 查岗 within the UITD's grid; nothing before it.
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, cst)
	if f := s.PeriodFigures("450204", day, day.AddDate(0, 0, 1)); len(f) != 1 || f[0].UITD != "uitd-1" || f[0].Asked != 1 ||
		f[0].Answered != 1 || f[0].MedianAnswerSeconds == nil || *f[0].MedianAnswerSeconds != 42 || f[0].Partial {
		t.Errorf("period figures %+v", f)
	}
	if f := s.PeriodFigures("", day.AddDate(0, 0, -1), day); len(f) != 1 || f[0].Asked != 0 || f[0].MedianAnswerSeconds != nil {
		t.Errorf("the day before: %+v", f)
	}
	if f := s.PeriodFigures("110000", day, day.AddDate(0, 0, 1)); len(f) != 0 {
		t.Errorf("another county: %+v", f)
	}
	// A late or second answer changes nothing.
	clk.add(time.Minute)
	write(t, c, hexFile(t, "frames/type24_uitd_duty.hex"))
	readAnswer(t, c, 11, 3)
	if a := assessment(t, h.URL+"/api/v1/uitds/010203040506/inspections"); a.Answered != 1 || a.Asked != 1 {
		t.Errorf("after a second answer: %+v", a)
	}
}

// TestInspectUnanswered: confirmed by the UITD but not answered within inspect_answer, the 查岗 fails as
// unanswered; the frame gives the operator 1 minute (whole minutes, rounded up).
func TestInspectUnanswered(t *testing.T) {
	rec := &recorder{}
	s, reg := startServer(t, func(c *Config) { c.InspectAnswer = 300 * time.Millisecond }, rec)
	c := connected(t, s)
	done := make(chan error, 1)
	go func() {
		_, err := s.Inspect(context.Background(), uitd1, "api", "op")
		done <- err
	}()
	readFrame(t, c, hexFile(t, "centre_duty_check_1min.hex"), "查岗")
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the 查岗 unanswered", func() bool {
		a, _ := s.Assessment(uitd1)
		return a.Unanswered == 1 && a.Pending == nil && a.Recent[0].State == InspectUnanswer
	})
	a, _ := s.Assessment(uitd1)
	if a.AnswerRate == nil || *a.AnswerRate != 0 || a.MedianAnswerSeconds != nil {
		t.Errorf("assessment %+v", a)
	}
	if n := metric(t, reg, "firewatch_gb26875_inspections_failed_total", InspectUnanswer, "uitd-1", "柳石家园物业"); n != 1 {
		t.Errorf("failed metric %v", n)
	}
	// No answer yet: the median is NaN, but the series exists (the Grafana panel's).
	if n := metric(t, reg, "firewatch_gb26875_inspection_answer_median_seconds"); !math.IsNaN(n) {
		t.Errorf("median metric without answers %v, want NaN", n)
	}
}

// TestInspectUndelivered: a 查岗 the UITD denies and then ignores is sent 4 times (§6.5: 3 retries after
// the timeout or a 否认), with the same serial number, then fails as undelivered.
func TestInspectUndelivered(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	s.cmdTimeout = 100 * time.Millisecond
	c := connected(t, s)
	done := make(chan error, 1)
	go func() {
		_, err := s.Inspect(context.Background(), uitd1, "schedule", "")
		done <- err
	}()
	want := hexFile(t, "centre_duty_check.hex")
	readFrame(t, c, want, "查岗")
	write(t, c, hexFile(t, "uitd_deny_1.hex"))
	for i := range 3 {
		readFrame(t, c, want, "retry "+string(rune('1'+i)))
	}
	if err := <-done; !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("Inspect: %v, want ErrNoAnswer", err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a fifth send: %d bytes, %v", n, err)
	}
	if a, _ := s.Assessment(uitd1); a.Undelivered != 1 || a.Asked != 1 || a.Recent[0].State != InspectUndeliver {
		t.Errorf("assessment %+v", a)
	}
}

// TestInspectOffline: a UITD without a connection (never connected, or gone) fails its 查岗 as offline.
func TestInspectOffline(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	h := api(t, s)
	if code, body := post(t, h.URL+"/api/v1/uitds/uitd-1/inspect"); code != http.StatusServiceUnavailable || body["inspection"] == nil {
		t.Errorf("offline: %d %v", code, body)
	}
	if code, _ := post(t, h.URL+"/api/v1/uitds/nosuch/inspect"); code != http.StatusNotFound {
		t.Errorf("unknown UITD: %d", code)
	}
	c := connected(t, s)
	c.Close()
	testenv.WaitFor(t, 10*time.Second, "the UITD detached", func() bool { return !s.Connected(uitd1) })
	if _, err := s.Inspect(context.Background(), uitd1, "api", ""); !errors.Is(err, ErrNotConnected) {
		t.Errorf("after close: %v", err)
	}
	if a := assessment(t, h.URL+"/api/v1/uitds/uitd-1/inspections"); a.Offline != 2 || a.Asked != 2 || a.Connected {
		t.Errorf("assessment %+v", a)
	}
	resp, err := http.Get(h.URL + "/api/v1/uitds/inspections")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all struct{ UITDs []Assessment }
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil || len(all.UITDs) != 1 || all.UITDs[0].Offline != 2 {
		t.Errorf("all: %v %+v", err, all)
	}
}

// TestInspectScheduled: with inspect_every set, the centre asks on its own (the first within a period of
// its start, the next ½ to 1½ periods later: 1 s at least after this answer).
func TestInspectScheduled(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, func(c *Config) { c.InspectEvery = 2 * time.Second }, rec)
	c := connected(t, s)
	readFrame(t, c, hexFile(t, "centre_duty_check.hex"), "scheduled 查岗")
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	write(t, c, hexFile(t, "frames/type24_uitd_duty.hex"))
	readAnswer(t, c, 11, 3)
	a, _ := s.Assessment(uitd1)
	if a.Answered < 1 || a.Recent[len(a.Recent)-1].Origin != "schedule" {
		t.Errorf("assessment %+v", a)
	}
}

// TestRead: a read from the API (type 61, the state of system 1 address 1) reaches the UITD as the
// standard's 请求 frame; denied once, it is sent again (same serial number); the UITD's 应答 comes back as
// the API's answer and is evaluated like an upload (the system's fire alarm reaches the pipeline).
func TestRead(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/uitds/{uitd}/read", s.ServeRead)
	h := httptest.NewServer(mux)
	defer h.Close()
	c := connected(t, s)
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(h.URL+"/api/v1/uitds/uitd-1/read", "application/json",
			bytes.NewReader([]byte(`{"type":61,"systems":[{"type":1,"addr":1}]}`)))
		if err != nil {
			t.Error(err)
			done <- result{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, b}
	}()
	want := hexFile(t, "centre_read_system.hex")
	readFrame(t, c, want, "read")
	write(t, c, hexFile(t, "uitd_deny_1.hex"))
	readFrame(t, c, want, "read again after 否认")
	write(t, c, hexFile(t, "uitd_reply_system_fire.hex"))
	r := <-done
	var res ReadResult
	if err := json.Unmarshal(r.body, &res); err != nil || r.code != 200 {
		t.Fatalf("POST read: %d %s", r.code, r.body)
	}
	if o := res.Objects; res.Type != 1 || len(o) != 1 || *o[0].SystemType != 1 || *o[0].SystemAddr != 1 ||
		*o[0].Bits != 3 || !bytes.Contains([]byte(o[0].State), []byte("火警")) || o[0].Time != "2026-12-01T13:22:49+08:00" {
		t.Errorf("read result %s", r.body)
	}
	if got := rec.last("uitd-1"); !bytes.Contains([]byte(got), []byte(`"fire_alarm":1`)) {
		t.Errorf("the 应答 was not evaluated: %q", got)
	}
	// A bad read is refused before anything is sent.
	resp, err := http.Post(h.URL+"/api/v1/uitds/uitd-1/read", "application/json", bytes.NewReader([]byte(`{"type":90}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("type 90 as a read: %d", resp.StatusCode)
	}
}

// TestInspectUDP: a UITD on UDP gets its 查岗 as one datagram to the address it sends from.
func TestInspectUDP(t *testing.T) {
	rec := &recorder{}
	s, _ := startServer(t, nil, rec)
	c, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	write(t, c, hexFile(t, "frames/keepalive.hex"))
	readAnswer(t, c, 15, 3)
	testenv.WaitFor(t, 10*time.Second, "the UITD attached", func() bool { return s.Connected(uitd1) })
	done := make(chan error, 1)
	go func() {
		_, err := s.Inspect(context.Background(), uitd1, "api", "op")
		done <- err
	}()
	readFrame(t, c, hexFile(t, "centre_duty_check.hex"), "查岗 over UDP")
	write(t, c, hexFile(t, "uitd_confirm_1.hex"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	write(t, c, hexFile(t, "frames/type24_uitd_duty.hex"))
	readAnswer(t, c, 11, 3)
	if a, _ := s.Assessment(uitd1); a.Answered != 1 {
		t.Errorf("assessment %+v", a)
	}
}
