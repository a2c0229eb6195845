package broker

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// refusalFilter drops mochi-mqtt's own line for a refused connection
// (msg="" error="bad username or password", one per attempt, saying
// neither who nor why): Auth logs each refusal with the rule and the
// client, rate-limited. Every other line passes.
type refusalFilter struct{ slog.Handler }

func (f refusalFilter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" {
		drop := false
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && a.Key == "error" && errors.Is(err, packets.ErrBadUsernameOrPassword) {
				drop = true
				return false
			}
			return true
		})
		if drop {
			return nil
		}
	}
	return f.Handler.Handle(ctx, r)
}

func (f refusalFilter) WithAttrs(as []slog.Attr) slog.Handler {
	return refusalFilter{f.Handler.WithAttrs(as)}
}

func (f refusalFilter) WithGroup(name string) slog.Handler {
	return refusalFilter{f.Handler.WithGroup(name)}
}
