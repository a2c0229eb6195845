package server

import (
	"time"
)

// historyLen bounds the ended 查岗 each UITD remembers for the figures of a period (the digests): 128 is
// a month at 4 a day in 2 KiB a UITD. Like the rest of the 考核 figure it is kept in memory only.
const historyLen = 128

// ended is an ended 查岗 as the period figures need it.
type ended struct {
	asked int64   // unix ms
	secs  float32 // answer time, answered only
	state uint8
}

const (
	endAnswered uint8 = iota
	endUnanswered
	endUndelivered
	endOffline
)

// history is a ring of a UITD's last historyLen ended 查岗.
type history struct {
	e    []ended
	next int // where the next goes once e is full
}

func (h *history) add(p *Inspection) {
	e := ended{asked: p.AskedAt.UnixMilli()}
	switch p.State {
	case InspectAnswered:
		e.state = endAnswered
		if p.AnswerSeconds != nil {
			e.secs = float32(*p.AnswerSeconds)
		}
	case InspectUnanswer:
		e.state = endUnanswered
	case InspectUndeliver:
		e.state = endUndelivered
	default:
		e.state = endOffline
	}
	if len(h.e) < historyLen {
		h.e = append(h.e, e)
		return
	}
	h.e[h.next] = e
	h.next = (h.next + 1) % historyLen
}

// oldest is the asked time of the oldest remembered 查岗 (unix ms) and whether the ring is full.
func (h *history) oldest() (int64, bool) {
	if len(h.e) < historyLen {
		return 0, false
	}
	return h.e[h.next].asked, true
}

// PeriodFigure is the 考核 figure of one UITD's unit over a period: the 查岗 asked in it that have ended.
type PeriodFigure struct {
	UITD    string
	Address string
	Unit    string
	// Asked counts the ended 查岗 asked in the period, by how they ended.
	Asked, Answered, Unanswered, Undelivered, Offline int
	// MedianAnswerSeconds is the median answer time of those answered (nil: none).
	MedianAnswerSeconds *float64
	// Partial: the period began before the oldest 查岗 the UITD remembers (historyLen); firewatch's restarts
	// also lose what came before them.
	Partial bool
}

// PeriodFigures returns, in ledger order, the figure over [from, to) of every UITD whose own device is
// within grid (a code prefix; "" for all), including those not asked in the period.
func (s *Server) PeriodFigures(grid string, from, to time.Time) []PeriodFigure {
	f, t := from.UnixMilli(), to.UnixMilli()
	var out []PeriodFigure
	s.dutyMu.Lock()
	defer s.dutyMu.Unlock()
	for _, u := range s.ledger.UITDs() {
		if !s.ledger.Device(u.Device).Grid.Within(grid) {
			continue
		}
		d := s.duty[u.Address]
		if d == nil {
			continue
		}
		pf := PeriodFigure{UITD: d.id, Address: d.addr.String(), Unit: d.unit}
		var times []float64
		for _, e := range d.history.e {
			if e.asked < f || e.asked >= t {
				continue
			}
			pf.Asked++
			switch e.state {
			case endAnswered:
				pf.Answered++
				times = append(times, float64(e.secs))
			case endUnanswered:
				pf.Unanswered++
			case endUndelivered:
				pf.Undelivered++
			default:
				pf.Offline++
			}
		}
		if m, ok := median(times); ok {
			pf.MedianAnswerSeconds = &m
		}
		if o, full := d.history.oldest(); full && o > f {
			pf.Partial = true
		}
		out = append(out, pf)
	}
	return out
}
