package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// Reads (请求, types 61–68 and 81–88): the centre asks, the UITD answers with 应答 carrying the matching
// upload type (§6.3). The answer is evaluated like an upload (a state read updates the alarms) and handed
// to the caller as a ReadResult.

// ErrNoReply is a read without 应答 after the retries.
var ErrNoReply = errors.New("gb26875: the UITD did not answer the read (10 s, 3 retries)")

// ReadResult is a UITD's 应答 in a form for people and the API.
type ReadResult struct {
	Type    int          `json:"type"` // the upload type flag (1–8, 21, 24–26, 28)
	Objects []ReadObject `json:"objects"`
}

// ReadObject is one information object of a 应答; the fields its type has are set.
type ReadObject struct {
	SystemType    *int     `json:"system_type,omitempty"`
	SystemAddr    *int     `json:"system_addr,omitempty"`
	System        string   `json:"system,omitempty"` // e.g. 火灾报警系统1
	ComponentType *int     `json:"component_type,omitempty"`
	ComponentAddr *uint32  `json:"component_addr,omitempty"`
	Component     string   `json:"component,omitempty"` // e.g. 点型光电感烟火灾探测器 0x00000105
	State         string   `json:"state,omitempty"`     // the state or operation bits in words
	Bits          *int     `json:"bits,omitempty"`      // the raw state or operation bits
	Text          string   `json:"text,omitempty"`      // description or configuration (GB 18030 decoded)
	Analog        string   `json:"analog,omitempty"`    // the Table 6 metric
	Value         *float64 `json:"value,omitempty"`
	Unit          string   `json:"unit,omitempty"`
	Operator      *int     `json:"operator,omitempty"`
	Version       string   `json:"version,omitempty"` // major.minor
	Time          string   `json:"time,omitempty"`    // the object's time label, RFC 3339 (UTC+8); empty when not a valid time
}

func ptr[T any](v T) *T { return &v }

func labelText(l gb26875.TimeLabel) string {
	if t, ok := l.Time(cst); ok {
		return t.Format(time.RFC3339)
	}
	return ""
}

func sysObject(s gb26875.System) ReadObject {
	return ReadObject{SystemType: ptr(int(s.Type)), SystemAddr: ptr(int(s.Addr)), System: string(s.AppendText(nil))}
}

func compObject(c gb26875.Component) ReadObject {
	o := sysObject(c.System)
	o.ComponentType, o.ComponentAddr, o.Component = ptr(int(c.Type)), ptr(c.Addr), string(c.AppendText(nil))
	return o
}

// readResult copies up (whose buffers are reused) into a ReadResult.
func readResult(up *gb26875.Upload) *ReadResult {
	r := &ReadResult{Type: int(up.Type), Objects: []ReadObject{}}
	add := func(o ReadObject) { r.Objects = append(r.Objects, o) }
	switch up.Type {
	case gb26875.TypeSystemState:
		for _, s := range up.SystemStates {
			o := sysObject(s.System)
			o.State, o.Bits, o.Time = string(s.State.AppendText(nil)), ptr(int(s.State)), labelText(s.Time)
			add(o)
		}
	case gb26875.TypeComponentState:
		for _, c := range up.ComponentStates {
			o := compObject(c.Component)
			o.State, o.Bits, o.Text, o.Time = string(c.State.AppendText(nil)), ptr(int(c.State)), string(gb26875.Text(nil, c.Desc[:])), labelText(c.Time)
			add(o)
		}
	case gb26875.TypeAnalog:
		for _, a := range up.Analogs {
			o := compObject(a.Component)
			if info, ok := a.Kind.Info(); ok {
				o.Analog, o.Unit = info.Metric, info.Unit
			}
			if v, _, ok := a.Value(); ok {
				o.Value = &v
			}
			o.Time = labelText(a.Time)
			add(o)
		}
	case gb26875.TypeOperation:
		for _, p := range up.Operations {
			o := sysObject(p.System)
			o.State, o.Bits, o.Operator, o.Time = string(p.Ops.AppendText(nil)), ptr(int(p.Ops)), ptr(int(p.Operator)), labelText(p.Time)
			add(o)
		}
	case gb26875.TypeSoftwareVersion, gb26875.TypeUITDVersion:
		o := ReadObject{Version: fmt.Sprintf("%d.%d", up.Version.Major, up.Version.Minor)}
		if up.Type == gb26875.TypeSoftwareVersion {
			o = sysObject(up.Version.System)
			o.Version = fmt.Sprintf("%d.%d", up.Version.Major, up.Version.Minor)
		}
		add(o)
	case gb26875.TypeSystemConfig:
		for _, c := range up.SystemConfigs {
			o := sysObject(c.System)
			o.Text = string(gb26875.Text(nil, c.Text))
			add(o)
		}
	case gb26875.TypeComponentConfig:
		for _, c := range up.ComponentConfigs {
			o := compObject(c.Component)
			o.Text = string(gb26875.Text(nil, c.Desc[:]))
			add(o)
		}
	case gb26875.TypeSystemTime, gb26875.TypeUITDTime:
		o := ReadObject{}
		if up.Type == gb26875.TypeSystemTime {
			o = sysObject(up.SystemTime.System)
		}
		o.Time = labelText(up.SystemTime.Time)
		add(o)
	case gb26875.TypeUITDState:
		for _, s := range up.UITDStates {
			add(ReadObject{State: string(s.State.AppendText(nil)), Bits: ptr(int(s.State)), Time: labelText(s.Time)})
		}
	case gb26875.TypeUITDOperation:
		for _, p := range up.UITDOperations {
			add(ReadObject{State: string(p.Ops.AppendText(nil)), Bits: ptr(int(p.Ops)), Operator: ptr(int(p.Operator)), Time: labelText(p.Time)})
		}
	case gb26875.TypeUITDConfig:
		add(ReadObject{Text: string(gb26875.Text(nil, up.UITDConfig))})
	}
	return r
}

// replied hands a 应答 to the read waiting for it (the upload is copied).
func (l *link) replied(f *gb26875.Frame, up *gb26875.Upload) {
	l.mu.Lock()
	ch := l.reads[f.Serial]
	l.mu.Unlock()
	if ch != nil {
		select {
		case ch <- readResult(up):
		default:
		}
	}
}

// Read sends a read (请求) to UITD a over its current connection and returns its 应答, sending the same
// frame again (same serial number) after commandTimeout without an answer or after a 否认, commandRetries
// times (§6.5).
func (s *Server) Read(ctx context.Context, a gb26875.Address, d *gb26875.Downlink) (*ReadResult, error) {
	if d.Type.Reply() == 0 {
		return nil, fmt.Errorf("%w: type %d is not a read", gb26875.ErrType, d.Type)
	}
	adu, err := d.Append(nil)
	if err != nil {
		return nil, err
	}
	s.linksMu.Lock()
	c := s.links[a]
	s.linksMu.Unlock()
	if c == nil {
		return nil, ErrNotConnected
	}
	l := &c.link
	denied := make(chan gb26875.Command, 1)
	reply := make(chan *ReadResult, 1)
	l.mu.Lock()
	l.serial++
	h := l.hdr
	h.Serial, h.Command = l.serial, gb26875.CmdRequest
	l.pending[h.Serial] = denied
	l.reads[h.Serial] = reply
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, h.Serial)
		delete(l.reads, h.Serial)
		l.mu.Unlock()
	}()
	last := ErrNoReply
	var frame []byte
	for range commandRetries + 1 {
		h.Time = gb26875.MakeTimeLabel(s.now().In(cst))
		frame = gb26875.AppendFrame(frame[:0], &h, adu)
		if _, err := l.Write(frame); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
		}
		t := time.NewTimer(s.cmdTimeout)
		select {
		case r := <-reply:
			t.Stop()
			return r, nil
		case <-denied: // a 否认 (or a 确认, which is no answer to a read): send again
			t.Stop()
			last = ErrDenied
		case <-t.C:
			last = ErrNoReply
		case <-l.closed:
			t.Stop()
			return nil, ErrNotConnected
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return nil, last
}

// ReadRequest is the body of POST /api/v1/uitds/{uitd}/read.
type ReadRequest struct {
	Type    int `json:"type"` // 61–68, 81, 84–86, 88
	Systems []struct {
		Type int `json:"type"`
		Addr int `json:"addr"`
	} `json:"systems"` // 61, 64 (one), 65, 66, 68
	Components []struct {
		SystemType int    `json:"system_type"`
		SystemAddr int    `json:"system_addr"`
		Addr       uint32 `json:"addr"`
	} `json:"components"` // 62, 63, 67
	Records int       `json:"records"` // 64, 84: how many operation records (1–102)
	Start   time.Time `json:"start"`   // 64, 84: records from this time
}

func (q *ReadRequest) downlink() (gb26875.Downlink, error) {
	if q.Type < 0 || q.Type > 255 || gb26875.TypeFlag(q.Type).Reply() == 0 {
		return gb26875.Downlink{}, fmt.Errorf("type %d is not a read (61–68, 81, 84–86, 88)", q.Type)
	}
	d := gb26875.Downlink{Type: gb26875.TypeFlag(q.Type)}
	for _, s := range q.Systems {
		if s.Type < 0 || s.Type > 255 || s.Addr < 0 || s.Addr > 255 {
			return d, errors.New("a system's type and addr are bytes (0–255)")
		}
		d.Systems = append(d.Systems, gb26875.System{Type: byte(s.Type), Addr: byte(s.Addr)})
	}
	for _, c := range q.Components {
		if c.SystemType < 0 || c.SystemType > 255 || c.SystemAddr < 0 || c.SystemAddr > 255 {
			return d, errors.New("a component's system_type and system_addr are bytes (0–255)")
		}
		d.Components = append(d.Components, gb26875.Component{System: gb26875.System{Type: byte(c.SystemType), Addr: byte(c.SystemAddr)}, Addr: c.Addr})
	}
	if q.Records < 0 || q.Records > 102 {
		return d, errors.New("records: 0–102")
	}
	d.Records = byte(q.Records)
	if !q.Start.IsZero() {
		d.Start = gb26875.MakeTimeLabel(q.Start.In(cst))
	}
	if _, err := d.Append(nil); err != nil {
		return d, err
	}
	return d, nil
}

// ServeRead is POST /api/v1/uitds/{uitd}/read: a read of the UITD (body ReadRequest); 200 with the
// ReadResult, 400 a bad read, 404 unknown UITD, 503 not connected, 504 no 应答 after the retries.
func (s *Server) ServeRead(w http.ResponseWriter, r *http.Request) {
	a, ok := s.Resolve(r.PathValue("uitd"))
	if !ok {
		writeError(w, http.StatusNotFound, ErrUnknownUITD, nil)
		return
	}
	var q ReadRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		writeError(w, http.StatusBadRequest, err, nil)
		return
	}
	d, err := q.downlink()
	if err != nil {
		writeError(w, http.StatusBadRequest, err, nil)
		return
	}
	res, err := s.Read(r.Context(), a, &d)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case errors.Is(err, ErrNoReply), errors.Is(err, ErrDenied):
		writeError(w, http.StatusGatewayTimeout, err, nil)
	default:
		writeError(w, http.StatusServiceUnavailable, err, nil)
	}
}
