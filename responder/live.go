package responder

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
)

// hub fans alarm changes out to the open live-update streams.
type hub struct {
	mu   sync.Mutex
	subs map[*sub]struct{}
}

// sub is one stream: of one alarm (a responder page) or of all (a console).
type sub struct {
	alarm string // "" for all
	ch    chan alarms.Alarm
	// lost is set when an update did not fit: the stream tells its page
	// to reload everything.
	lost chan struct{}
}

func (h *hub) add(alarm string) *sub {
	s := &sub{alarm: alarm, ch: make(chan alarms.Alarm, 64), lost: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) remove(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Notify tells the streams of a's change. It never blocks: give it to
// alarms.Config.OnTransition.
func (s *Server) Notify(a alarms.Alarm) {
	a.History, a.Pushes, a.Commands, a.Response = nil, nil, nil, nil
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if a.State == alarms.StateRaised && a.Open && len(s.hub.subs) > 0 {
		s.followDelivery(a.ID)
	}
	for x := range s.hub.subs {
		if x.alarm != "" && x.alarm != a.ID {
			continue
		}
		select {
		case x.ch <- a:
		default:
			s.met.dropUpdates.Inc()
			select {
			case x.lost <- struct{}{}:
			default:
			}
		}
	}
}

func (s *Server) serveLinkEvents(w http.ResponseWriter, r *http.Request, c Claims) {
	s.stream(w, r, c.Alarm)
}

func (s *Server) serveConsoleEvents(w http.ResponseWriter, r *http.Request, _ string) {
	s.stream(w, r, "")
}

// stream writes Server-Sent Events: "alarm" with an alarm's new state,
// "reload" when updates were lost, a comment every 15 s to keep proxies
// from closing the connection. The pages read it with fetch (an
// EventSource cannot send the token header).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, alarm string) {
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary requests; a stream ends
	// after cfg.Stream and the page reconnects.
	if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.Stream + 30*time.Second)); err != nil {
		writeError(w, http.StatusInternalServerError, "不支持实时更新")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	x := s.hub.add(alarm)
	defer s.hub.remove(x)
	s.met.streams.Inc()
	defer s.met.streams.Dec()
	w.Write([]byte("event: hello\ndata: {}\n\n"))
	rc.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	end := time.NewTimer(s.cfg.Stream)
	defer end.Stop()
	for {
		var err error
		select {
		case a := <-x.ch:
			b, _ := json.Marshal(a)
			_, err = w.Write(append(append([]byte("event: alarm\ndata: "), b...), '\n', '\n'))
		case <-x.lost:
			_, err = w.Write([]byte("event: reload\ndata: {}\n\n"))
		case <-ping.C:
			_, err = w.Write([]byte(": ping\n\n"))
		case <-end.C:
			return
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// followDelivery watches a raised alarm until its push is delivered and
// tells the streams of it: the outbox records the delivery (raised →
// pushed) without calling OnTransition, and a duty officer must see
// whether the station was reached. It reads the alarm a few times over
// about 30 s; shutdown (Close) ends it. The hub's lock is held.
func (s *Server) followDelivery(id string) {
	select {
	case <-s.done:
		return
	default:
	}
	s.follow.Add(1)
	go func() {
		defer s.follow.Done()
		for _, d := range []time.Duration{300 * time.Millisecond, time.Second, 3 * time.Second, 10 * time.Second, 15 * time.Second} {
			t := time.NewTimer(d)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			a, err := s.cfg.Alarms.Alarm(ctx, id)
			cancel()
			if err != nil || !a.Open {
				return
			}
			if a.State != alarms.StateRaised {
				s.Notify(a)
				return
			}
		}
	}()
}
