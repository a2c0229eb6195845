package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// The centre's duties (GB/T 26875.3 item 4 of issue 13): the centre's own commands to a UITD (校时, 查岗)
// over the UITD's current connection, and the 查岗 record with its 考核 figure per unit.

// §6.5: a command unanswered within the timeout (at most 10 s) or answered with 否认 is sent again, 3 times.
const (
	commandTimeout = 10 * time.Second
	commandRetries = 3
)

// Errors of Server.Command and Server.Inspect.
var (
	ErrUnknownUITD  = errors.New("gb26875: no such UITD in the ledger")
	ErrNotConnected = errors.New("gb26875: the UITD is not connected")
	ErrNoAnswer     = errors.New("gb26875: the UITD did not confirm the command (10 s, 3 retries)")
	ErrDenied       = errors.New("gb26875: the UITD answered the command with 否认 (3 retries)")
	ErrPending      = errors.New("gb26875: a 查岗 of this UITD is still waiting for its answer")
)

// link writes to one connection (TCP) or remote address (UDP): the connection's answers, and the centre's
// own commands from other goroutines, with the centre's serial numbers (§6.4: the initiator's counter) and
// the commands waiting for the UITD's 确认.
type link struct {
	mu      sync.Mutex
	w       io.Writer
	nc      net.Conn // TCP: each write gets a deadline
	wt      time.Duration
	serial  uint16
	hdr     gb26875.Header // the centre's frames: version, the centre's address as the UITD names it, the UITD's
	pending map[uint16]chan gb26875.Command
	reads   map[uint16]chan *ReadResult // reads waiting for their 应答 (read.go)
	buf     []byte
	closed  chan struct{}

	attached, detached bool // the connection's own goroutine only
}

func newLink() link {
	return link{pending: map[uint16]chan gb26875.Command{}, reads: map[uint16]chan *ReadResult{}, closed: make(chan struct{})}
}

// setWriter sets where the link writes; a net.Conn gets a write deadline of wt per write.
func (l *link) setWriter(w io.Writer, wt time.Duration) {
	l.w, l.wt = w, wt
	if nc, ok := w.(net.Conn); ok && wt > 0 {
		l.nc = nc
	}
}

// Write writes one frame.
func (l *link) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.nc != nil {
		l.nc.SetWriteDeadline(time.Now().Add(l.wt))
	}
	return l.w.Write(b)
}

// send writes a centre's command (ADU adu) that answers nothing to the UITD of header h, with a new serial
// number, without waiting for its 确认.
func (l *link) send(h *gb26875.Header, t gb26875.TimeLabel, adu []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serial++
	out := gb26875.Header{Serial: l.serial, Major: h.Major, User: h.User, Time: t, Src: h.Dst, Dst: h.Src,
		Command: gb26875.TypeFlag(adu[0]).Command()}
	l.buf = gb26875.AppendFrame(l.buf[:0], &out, adu)
	if l.nc != nil {
		l.nc.SetWriteDeadline(time.Now().Add(l.wt))
	}
	_, err := l.w.Write(l.buf)
	return err
}

// answered hands the UITD's 确认 or 否认 to the command waiting for it.
func (l *link) answered(f *gb26875.Frame) {
	l.mu.Lock()
	ch := l.pending[f.Serial]
	l.mu.Unlock()
	if ch != nil {
		select {
		case ch <- f.Command:
		default:
		}
	}
}

// duties is the Server's part for its own commands and 查岗.
type duties struct {
	linksMu    sync.Mutex
	links      map[gb26875.Address]*conn // the UITD's current connection (the newest wins)
	cmdTimeout time.Duration

	dutyMu sync.Mutex
	duty   map[gb26875.Address]*duty
	byID   map[string]gb26875.Address
	seq    uint64
}

func (s *Server) initDuties(reg prometheus.Registerer) {
	s.links = map[gb26875.Address]*conn{}
	s.cmdTimeout = commandTimeout
	s.duty = map[gb26875.Address]*duty{}
	s.byID = map[string]gb26875.Address{}
	for _, u := range s.ledger.UITDs() {
		d := s.ledger.Device(u.Device)
		s.duty[u.Address] = &duty{id: d.ID, unit: d.Unit, addr: u.Address}
		s.byID[d.ID] = u.Address
	}
	if reg != nil {
		reg.MustRegister(dutyCollector{s})
	}
}

// attach makes c the UITD's link for the centre's commands, on the first valid frame of a known UITD.
func (s *Server) attach(c *conn, h *gb26875.Header) {
	if c.attached {
		return
	}
	c.attached = true
	c.mu.Lock()
	c.hdr = gb26875.Header{Major: h.Major, User: h.User, Src: h.Dst, Dst: h.Src}
	c.mu.Unlock()
	s.linksMu.Lock()
	s.links[c.st.u.Address] = c
	s.linksMu.Unlock()
}

// detach ends c as a link: commands waiting on it fail.
func (s *Server) detach(c *conn) {
	if c.detached {
		return
	}
	c.detached = true
	close(c.closed)
	if c.st == nil {
		return
	}
	s.linksMu.Lock()
	if s.links[c.st.u.Address] == c {
		delete(s.links, c.st.u.Address)
	}
	s.linksMu.Unlock()
}

// Connected reports whether UITD a has a connection the centre can send on.
func (s *Server) Connected(a gb26875.Address) bool {
	s.linksMu.Lock()
	defer s.linksMu.Unlock()
	return s.links[a] != nil
}

// Command sends a control command (types 89–91) to UITD a over its current connection and waits for its
// 确认, sending the same frame again (same serial number) after commandTimeout without an answer or after
// a 否认, commandRetries times (§6.5).
func (s *Server) Command(ctx context.Context, a gb26875.Address, d *gb26875.Downlink) error {
	if d.Type.Command() != gb26875.CmdControl {
		return fmt.Errorf("gb26875: type %d is not a control command", d.Type)
	}
	adu, err := d.Append(nil)
	if err != nil {
		return err
	}
	s.linksMu.Lock()
	c := s.links[a]
	s.linksMu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	l := &c.link
	ch := make(chan gb26875.Command, 1)
	l.mu.Lock()
	l.serial++
	h := l.hdr
	h.Serial, h.Command = l.serial, d.Type.Command()
	l.pending[h.Serial] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, h.Serial)
		l.mu.Unlock()
	}()
	last := ErrNoAnswer
	var frame []byte
	for range commandRetries + 1 {
		h.Time = gb26875.MakeTimeLabel(s.now().In(cst))
		frame = gb26875.AppendFrame(frame[:0], &h, adu)
		if _, err := l.Write(frame); err != nil {
			return fmt.Errorf("%w: %w", ErrNotConnected, err)
		}
		t := time.NewTimer(s.cmdTimeout)
		select {
		case cmd := <-ch:
			t.Stop()
			if cmd == gb26875.CmdConfirm {
				return nil
			}
			last = ErrDenied
		case <-t.C:
			last = ErrNoAnswer
		case <-l.closed:
			t.Stop()
			return ErrNotConnected
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return last
}

// States of an Inspection.
const (
	InspectSending   = "sending"         // sent, the UITD's 确认 not yet in
	InspectAwaiting  = "awaiting_answer" // confirmed by the UITD, the operator's answer not yet in
	InspectAnswered  = "answered"        // the fire control room answered (查岗应答) in time
	InspectUnanswer  = "unanswered"      // no answer within inspect_answer
	InspectUndeliver = "undelivered"     // the UITD did not confirm the 查岗 (10 s, 3 retries)
	InspectOffline   = "offline"         // the UITD was not connected
)

// Inspection is one 查岗 (type 91) of a UITD's fire control room.
type Inspection struct {
	ID            uint64     `json:"id"`
	UITD          string     `json:"uitd"`
	Address       string     `json:"address"`
	Unit          string     `json:"unit,omitempty"`
	Origin        string     `json:"origin"` // schedule or api
	Actor         string     `json:"actor,omitempty"`
	AskedAt       time.Time  `json:"asked_at"`
	Deadline      *time.Time `json:"deadline,omitempty"` // once delivered
	State         string     `json:"state"`
	AnsweredAt    *time.Time `json:"answered_at,omitempty"`
	AnswerSeconds *float64   `json:"answer_seconds,omitempty"`
	Operator      *int       `json:"operator,omitempty"` // 操作员编号 of the answer
}

// Assessment is the 考核 figure of one UITD's unit: how many 查岗 were asked and how they ended.
type Assessment struct {
	UITD                string       `json:"uitd"`
	Address             string       `json:"address"`
	Unit                string       `json:"unit,omitempty"`
	Connected           bool         `json:"connected"`
	Asked               uint64       `json:"asked"`
	Answered            uint64       `json:"answered"`
	Unanswered          uint64       `json:"unanswered"`
	Undelivered         uint64       `json:"undelivered"`
	Offline             uint64       `json:"offline"`
	AnswerRate          *float64     `json:"answer_rate"`           // answered / (asked − pending); null before the first ends
	MedianAnswerSeconds *float64     `json:"median_answer_seconds"` // over the last answerSamples answers
	Pending             *Inspection  `json:"pending"`
	Recent              []Inspection `json:"recent"` // the last recentInspections that ended, newest first
}

const (
	answerSamples     = 64
	recentInspections = 20
)

// duty is the 查岗 record of one UITD (under duties.dutyMu).
type duty struct {
	id, unit string
	addr     gb26875.Address
	pending  *Inspection
	timer    *time.Timer
	next     time.Time // the next scheduled 查岗

	asked, answered, unanswered, undelivered, offline uint64
	times                                             []float64 // ring of answer times (s)
	ti                                                int
	recent                                            []Inspection // oldest first
	history                                           history      // for the digests' figures (duty_period.go)
}

// Resolve finds a UITD by its 12-hex-digit address or its device id.
func (s *Server) Resolve(key string) (gb26875.Address, bool) {
	if a, err := gb26875.ParseAddress(key); err == nil {
		_, ok := s.duty[a]
		return a, ok
	}
	a, ok := s.byID[key]
	return a, ok
}

// answerMinutes is inspect_answer in the frame's whole minutes (rounded up, 1–255).
func (s *Server) answerMinutes() byte {
	m := (s.cfg.InspectAnswer + time.Minute - 1) / time.Minute
	return byte(min(max(m, 1), 255))
}

// Inspect asks UITD a's fire control room to answer (查岗, type 91), on behalf of actor (empty for the
// schedule). It returns once the UITD confirmed the 查岗 (state awaiting_answer, or answered when the
// answer came first) or the 查岗 failed (offline: ErrNotConnected; undelivered: ErrNoAnswer, ErrDenied);
// either way the 查岗 counts in the unit's figure. A 查岗 still waiting for its answer: ErrPending and
// that 查岗. ctx ending before the UITD confirmed withdraws the 查岗 uncounted.
func (s *Server) Inspect(ctx context.Context, a gb26875.Address, origin, actor string) (Inspection, error) {
	d := s.duty[a]
	if d == nil {
		return Inspection{}, ErrUnknownUITD
	}
	s.dutyMu.Lock()
	if d.pending != nil {
		p := *d.pending
		s.dutyMu.Unlock()
		return p, ErrPending
	}
	s.seq++
	p := &Inspection{ID: s.seq, UITD: d.id, Address: a.String(), Unit: d.unit, Origin: origin, Actor: actor,
		AskedAt: s.now(), State: InspectSending}
	d.pending = p
	d.asked++
	s.dutyMu.Unlock()

	err := s.Command(ctx, a, &gb26875.Downlink{Type: gb26875.TypeDutyCheck, Minutes: s.answerMinutes()})

	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	if d.pending != p { // answered before the 确认 was taken
		return *p, nil
	}
	switch {
	case err == nil:
		p.State = InspectAwaiting
		dl := s.now().Add(s.cfg.InspectAnswer)
		p.Deadline = &dl
		d.timer = time.AfterFunc(s.cfg.InspectAnswer, func() { s.expire(d, p) })
		return *p, nil
	case errors.Is(err, ErrNotConnected):
		p.State = InspectOffline
		d.offline++
	case errors.Is(err, ErrNoAnswer), errors.Is(err, ErrDenied):
		p.State = InspectUndeliver
		d.undelivered++
	default: // cancelled: firewatch stops or the client went away before the UITD confirmed
		d.pending = nil
		d.asked--
		return *p, err
	}
	s.log.Warn("查岗 failed: the UITD did not take it", "uitd", d.id, "state", p.State, "err", err)
	s.finish(d)
	return *p, err
}

// expire ends p unanswered when its time is up.
func (s *Server) expire(d *duty, p *Inspection) {
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	if d.pending != p {
		return
	}
	p.State = InspectUnanswer
	d.unanswered++
	s.log.Warn("查岗 unanswered: the fire control room did not answer in time", "uitd", d.id, "unit", d.unit,
		"asked_at", p.AskedAt.Format(time.DateTime))
	s.finish(d)
}

// finish moves the pending 查岗 of d to its recent list (dutyMu held).
func (s *Server) finish(d *duty) {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if len(d.recent) == recentInspections {
		d.recent = append(d.recent[:0], d.recent[1:]...)
	}
	d.recent = append(d.recent, *d.pending)
	d.history.add(d.pending)
	d.pending = nil
}

// dutyAnswer records the fire control room's answer to a 查岗 (UITD operation 查岗应答, type 24 bit 5),
// received at now. An answer with no 查岗 waiting is logged only.
func (s *Server) dutyAnswer(a gb26875.Address, operator byte, now time.Time) {
	d := s.duty[a]
	if d == nil {
		return
	}
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	p := d.pending
	if p == nil {
		s.log.Info("查岗 answer with no 查岗 waiting (late, or asked by another centre)", "uitd", d.id)
		return
	}
	p.State = InspectAnswered
	p.AnsweredAt = &now
	secs := max(now.Sub(p.AskedAt).Seconds(), 0)
	p.AnswerSeconds = &secs
	op := int(operator)
	p.Operator = &op
	d.answered++
	if len(d.times) < answerSamples {
		d.times = append(d.times, secs)
	} else {
		d.times[d.ti] = secs
		d.ti = (d.ti + 1) % answerSamples
	}
	s.log.Info("查岗 answered", "uitd", d.id, "unit", d.unit, "seconds", secs, "operator", op)
	s.finish(d)
}

// assessment builds d's figure (dutyMu held).
func (s *Server) assessment(d *duty) Assessment {
	as := Assessment{UITD: d.id, Address: d.addr.String(), Unit: d.unit, Connected: s.Connected(d.addr),
		Asked: d.asked, Answered: d.answered, Unanswered: d.unanswered, Undelivered: d.undelivered,
		Offline: d.offline, Recent: make([]Inspection, 0, len(d.recent))}
	if ended := d.answered + d.unanswered + d.undelivered + d.offline; ended > 0 {
		r := float64(d.answered) / float64(ended)
		as.AnswerRate = &r
	}
	if m, ok := median(d.times); ok {
		as.MedianAnswerSeconds = &m
	}
	if d.pending != nil {
		p := *d.pending
		as.Pending = &p
	}
	for i := len(d.recent) - 1; i >= 0; i-- {
		as.Recent = append(as.Recent, d.recent[i])
	}
	return as
}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2], true
	} else {
		return (s[n/2-1] + s[n/2]) / 2, true
	}
}

// Assessment returns the 考核 figure of UITD a.
func (s *Server) Assessment(a gb26875.Address) (Assessment, bool) {
	d := s.duty[a]
	if d == nil {
		return Assessment{}, false
	}
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	return s.assessment(d), true
}

// Assessments returns the figures of every UITD, in ledger order.
func (s *Server) Assessments() []Assessment {
	out := make([]Assessment, 0, len(s.duty))
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	for _, u := range s.ledger.UITDs() {
		out = append(out, s.assessment(s.duty[u.Address]))
	}
	return out
}

// schedule asks every UITD's fire control room about once every inspect_every, at random times (the
// operator must not know when; the first within one period of the start), until ctx ends. A UITD whose 查岗 is still pending is skipped.
func (s *Server) schedule(ctx context.Context) {
	every := s.cfg.InspectEvery
	if every <= 0 || len(s.duty) == 0 {
		return
	}
	tick := min(max(every/8, 10*time.Millisecond), time.Minute)
	start := time.Now()
	s.dutyMu.Lock()
	for _, d := range s.duty {
		d.next = start.Add(rand.N(every))
	}
	s.dutyMu.Unlock()
	t := time.NewTicker(tick)
	defer t.Stop()
	var due []gb26875.Address
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		due = due[:0]
		s.dutyMu.Lock()
		for a, d := range s.duty {
			if d.pending == nil && !now.Before(d.next) {
				// The next one at a random time: gaps of ½ to 1½ periods, one on average.
				d.next = now.Add(every/2 + rand.N(every))
				due = append(due, a)
			}
		}
		s.dutyMu.Unlock()
		for _, a := range due {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.Inspect(ctx, a, "schedule", "")
			}()
		}
	}
}

// dutyCollector exports the 考核 figures per UITD.
type dutyCollector struct{ s *Server }

var (
	descAsked    = prometheus.NewDesc("firewatch_gb26875_inspections_total", "查岗 (type 91) asked of the UITD's fire control room.", []string{"uitd", "unit"}, nil)
	descAnswered = prometheus.NewDesc("firewatch_gb26875_inspections_answered_total", "查岗 answered (查岗应答) within gb26875.inspect_answer.", []string{"uitd", "unit"}, nil)
	descFailed   = prometheus.NewDesc("firewatch_gb26875_inspections_failed_total", "查岗 that failed, by reason: unanswered, undelivered (no 确认 from the UITD), offline (not connected).", []string{"uitd", "unit", "reason"}, nil)
	descMedian   = prometheus.NewDesc("firewatch_gb26875_inspection_answer_median_seconds", "Median time from a 查岗 to its answer over the UITD's last 64 answers; NaN before the first.", []string{"uitd", "unit"}, nil)
)

func (c dutyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAsked, descAnswered, descFailed, descMedian} {
		ch <- d
	}
}

func (c dutyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	for _, d := range s.duty {
		ch <- prometheus.MustNewConstMetric(descAsked, prometheus.CounterValue, float64(d.asked), d.id, d.unit)
		ch <- prometheus.MustNewConstMetric(descAnswered, prometheus.CounterValue, float64(d.answered), d.id, d.unit)
		for _, r := range []struct {
			n string
			v uint64
		}{{InspectUnanswer, d.unanswered}, {InspectUndeliver, d.undelivered}, {InspectOffline, d.offline}} {
			ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(r.v), d.id, d.unit, r.n)
		}
		m, ok := median(d.times)
		if !ok {
			m = math.NaN() // no answer yet: NaN, as a summary's quantile without observations
		}
		ch <- prometheus.MustNewConstMetric(descMedian, prometheus.GaugeValue, m, d.id, d.unit)
	}
}
