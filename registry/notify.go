package registry

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notified commits (issue 15, PostgreSQL only). Polling the store's
// version every second leaves every other instance up to a second behind a
// commit: a device just added through instance A is refused by B's broker
// authentication or auth callout (it retries), and the readings a known
// gateway forwards for it are rejected as unknown_device by B's pipeline,
// which no registry catch-up covers (cluster/catchup.go looks at topics
// only). So each commit also notifies (pg_notify on notifyChannel, in the
// commit's transaction: delivered when, and only if, it commits), and each
// follower LISTENs on a connection of its own and looks at the store's
// version as soon as it hears one — a few milliseconds after the commit
// instead of up to a second. The poll stays: notifications are not
// queued for a listener that is not connected, so after a lost connection
// the follower looks once when it is listening again, and polls meanwhile.
// SQLite has no notifications: two processes on one file (an import beside
// a running firewatch) keep the poll.

// notifyChannel is the PostgreSQL notification channel of registry commits;
// the payload is the version committed.
const notifyChannel = "firewatch_registry"

// listenRetryMax bounds the wait between two attempts to listen again.
const listenRetryMax = 30 * time.Second

// listen keeps a connection listening on notifyChannel until ctx is done,
// signalling poke (without blocking) on each notification and each time it
// starts listening. Failures are logged once per outage and retried with
// a growing wait; the poll covers the time in between.
func (s *Store) listen(ctx context.Context, poke chan<- struct{}) {
	wait := 100 * time.Millisecond
	down := false
	for {
		listened, err := s.listenOnce(ctx, poke)
		if ctx.Err() != nil {
			return
		}
		if listened {
			wait, down = 100*time.Millisecond, false
		}
		if !down {
			s.follow.logger().Warn("registry follow: commit notifications interrupted; looking every interval until they are back", "err", err)
			down = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, listenRetryMax)
	}
}

// listenOnce listens on one connection until it fails or ctx is done, and
// reports whether it got as far as listening.
func (s *Store) listenOnce(ctx context.Context, poke chan<- struct{}) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pgcfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false, err
	}
	s.follow.listening.Add(1)
	defer s.follow.listening.Add(-1)
	signal(poke) // what was committed while not listening
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, err
		}
		s.follow.notified.Inc()
		signal(poke)
	}
}

func signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
