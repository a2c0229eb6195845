package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateHandler passes at most logsPerSecond records below Error a second to
// the handler it wraps, and then says how many it dropped. The embedded
// broker logs a line per refused connection: without it a flood of bad
// CONNECTs is a flood of log lines.
type rateHandler struct {
	slog.Handler
	s *rateState
}

// logsPerSecond bounds the broker's log lines below Error, and Auth's
// refusal lines, as ingest.Stats bounds its rejection lines.
const logsPerSecond = 5

// truncate shortens a topic a client sent before it is logged.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

type rateState struct {
	mu         sync.Mutex
	windowEnd  time.Time
	logged     int
	suppressed int
}

func newRateHandler(h slog.Handler) *rateHandler { return &rateHandler{Handler: h, s: new(rateState)} }

// Handle passes r on within the budget of the current second.
func (h *rateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		return h.Handler.Handle(ctx, r)
	}
	s := h.s
	s.mu.Lock()
	dropped := 0
	if r.Time.After(s.windowEnd) {
		dropped = s.suppressed
		s.windowEnd, s.logged, s.suppressed = r.Time.Add(time.Second), 0, 0
	}
	ok := s.logged < logsPerSecond
	if ok {
		s.logged++
	} else {
		s.suppressed++
	}
	s.mu.Unlock()
	if dropped > 0 {
		d := slog.NewRecord(r.Time, slog.LevelWarn, "broker log lines dropped (rate limit)", 0)
		d.AddAttrs(slog.Int("count", dropped))
		h.Handler.Handle(ctx, d)
	}
	if !ok {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the shared budget.
func (h *rateHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateHandler{Handler: h.Handler.WithAttrs(as), s: h.s}
}

// WithGroup keeps the shared budget.
func (h *rateHandler) WithGroup(name string) slog.Handler {
	return &rateHandler{Handler: h.Handler.WithGroup(name), s: h.s}
}
