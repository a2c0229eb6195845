package broker

import (
	"context"
	"log/slog"

	"github.com/firewatch-iot/firewatch/internal/logbudget"
)

// rateHandler passes at most logbudget.PerSecond records below Error a
// second to the handler it wraps, and then says how many it dropped. The
// embedded broker logs a line per refused connection: without it a flood of
// bad CONNECTs is a flood of log lines.
type rateHandler struct {
	slog.Handler
	b *logbudget.Budget
}

// truncate shortens a topic a client sent before it is logged.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func newRateHandler(h slog.Handler) *rateHandler {
	return &rateHandler{Handler: h, b: new(logbudget.Budget)}
}

// Handle passes r on within the budget of the current second.
func (h *rateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		return h.Handler.Handle(ctx, r)
	}
	ok, dropped := h.b.Take(r.Time)
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
	return &rateHandler{Handler: h.Handler.WithAttrs(as), b: h.b}
}

// WithGroup keeps the shared budget.
func (h *rateHandler) WithGroup(name string) slog.Handler {
	return &rateHandler{Handler: h.Handler.WithGroup(name), b: h.b}
}
