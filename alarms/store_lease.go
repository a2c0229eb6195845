package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Leases of several instances sharing one PostgreSQL store (issue 15,
// docs/cluster.md "Shared alarm store"). Lease times are the database's
// clock (dbNow), so that the instances' clocks need not agree. SQLite is
// one process: it uses none of this.

// dbNow is the database's clock in Unix milliseconds.
const dbNow = `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)`

// claimPending leases the oldest undelivered push of endpoint to owner for
// ttl and returns it. Only the oldest is ever claimed, so that an
// endpoint's pushes stay in order across instances ("cleared" never
// overtakes its "raised"). When another instance holds it (or is claiming
// it right now: the row is locked, SKIP LOCKED), claimPending returns no
// row and how long to wait before looking again.
func (s *store) claimPending(ctx context.Context, endpoint, owner string, ttl time.Duration) (*outboxRow, time.Duration, error) {
	var id int64
	err := s.w.QueryRowContext(ctx, `SELECT id FROM outbox WHERE endpoint = ? AND delivered_at_ms IS NULL AND parked_at_ms IS NULL
		ORDER BY id LIMIT 1`, endpoint).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read outbox: %w", err)
	}
	t, err := s.begin(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("claim push %d: %w", id, err)
	}
	defer t.rollback()
	var (
		r          outboxRow
		body       string
		leaseOwner sql.NullString
		leaseUntil sql.NullInt64
		now        int64
	)
	err = t.tx.QueryRowContext(ctx, `SELECT id, alarm_id, idempotency_key, target, transition, body, attempts,
		incident_id, incident_upto, created_at_ms, lease_owner, lease_until_ms, `+dbNow+` FROM outbox
		WHERE id = ? AND delivered_at_ms IS NULL AND parked_at_ms IS NULL FOR UPDATE SKIP LOCKED`, id).
		Scan(&r.id, &r.alarmID, &r.key, &r.target, &r.transition, &body, &r.attempts, &r.incident, &r.upto, &r.created,
			&leaseOwner, &leaseUntil, &now)
	if errors.Is(err, sql.ErrNoRows) {
		// Locked by an instance claiming it, or delivered meanwhile: look
		// again shortly.
		return nil, claimRetry, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("claim push %d: %w", id, err)
	}
	if leaseOwner.Valid && leaseOwner.String != owner && leaseUntil.Valid && leaseUntil.Int64 > now {
		return nil, time.Duration(leaseUntil.Int64-now) * time.Millisecond, nil
	}
	if _, err := t.tx.ExecContext(ctx, `UPDATE outbox SET lease_owner = ?, lease_until_ms = `+dbNow+` + ? WHERE id = ?`,
		owner, ttl.Milliseconds(), id); err != nil {
		return nil, 0, fmt.Errorf("claim push %d: %w", id, err)
	}
	if err := t.commit(); err != nil {
		return nil, 0, fmt.Errorf("claim push %d: %w", id, err)
	}
	r.body = []byte(body)
	return &r, 0, nil
}

// claimRetry is how soon an instance looks again at a push another
// instance was claiming.
const claimRetry = 50 * time.Millisecond

// holdPush extends owner's lease of push id to hold from now: while the
// owner waits to retry a failed push, the others leave it alone, and take
// it over if the owner dies meanwhile.
func (s *store) holdPush(ctx context.Context, id int64, owner string, hold time.Duration) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE outbox SET lease_until_ms = `+dbNow+` + ? WHERE id = ? AND lease_owner = ?`,
		hold.Milliseconds(), id, owner); err != nil {
		return fmt.Errorf("hold push %d: %w", id, err)
	}
	return nil
}

// releasePushes gives up owner's leases of undelivered pushes, at a clean
// shutdown, so that another instance takes them at once.
func (s *store) releasePushes(ctx context.Context, owner string) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE outbox SET lease_owner = NULL, lease_until_ms = NULL
		WHERE lease_owner = ? AND delivered_at_ms IS NULL`, owner); err != nil {
		return fmt.Errorf("release pushes: %w", err)
	}
	return nil
}

// takeDuty takes or renews duty name for owner for ttl, if it is free,
// expired or already owner's; it reports whether owner holds it now.
func (s *store) takeDuty(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var got string
	err := s.w.QueryRowContext(ctx, `INSERT INTO duties (name, owner, until_ms) VALUES (?, ?, `+dbNow+` + ?)
		ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until_ms = EXCLUDED.until_ms
		WHERE duties.owner = EXCLUDED.owner OR duties.until_ms < `+dbNow+`
		RETURNING owner`, name, owner, ttl.Milliseconds()).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("take duty %s: %w", name, err)
	}
	return got == owner, nil
}

// releaseDuty gives duty name up if owner holds it.
func (s *store) releaseDuty(ctx context.Context, name, owner string) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE duties SET until_ms = 0 WHERE name = ? AND owner = ?`, name, owner); err != nil {
		return fmt.Errorf("release duty %s: %w", name, err)
	}
	return nil
}
