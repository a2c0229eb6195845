package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The station_status and digests_sent tables.

// putStationStatus records the duty report of station id made at atMs
// (Unix ms), unless the stored one is newer; it reports whether it did.
func (q queries) putStationStatus(ctx context.Context, id string, duty Duty, people int, note string, atMs int64, by string) (bool, error) {
	return changed(q.db.ExecContext(ctx, `INSERT INTO station_status (station_id, duty, people, note, at_ms, by_actor)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (station_id) DO UPDATE SET duty = excluded.duty, people = excluded.people,
		note = excluded.note, at_ms = excluded.at_ms, by_actor = excluded.by_actor WHERE station_status.at_ms <= excluded.at_ms`,
		id, string(duty), people, note, atMs, by))
}

// stationStatus reads the last duty report of station id into s (Duty,
// People, Note, At, By); s is left as it is when the station never
// reported.
func (q queries) stationStatus(ctx context.Context, id string, s *StationStatus) error {
	var (
		duty string
		at   int64
	)
	err := q.db.QueryRowContext(ctx, `SELECT duty, people, note, at_ms, by_actor FROM station_status WHERE station_id = ?`, id).
		Scan(&duty, &s.People, &s.Note, &at, &s.By)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("read status of station %s: %w", id, err)
	default:
		s.Duty = Duty(duty)
		t := msTime(at)
		s.At = &t
	}
	return nil
}

// digestSent reports whether the digest of period went to target.
func (q queries) digestSent(ctx context.Context, period, target string) (bool, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM digests_sent WHERE period = ? AND target = ?`, period, target).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("digest sent: %w", err)
	}
	return n > 0, nil
}

// markDigestSent records that the digest of period for grid went to
// target.
func (q queries) markDigestSent(ctx context.Context, period, target, grid string, at time.Time) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO digests_sent (period, target, grid, sent_at_ms) VALUES (?, ?, ?, ?)`,
		period, target, grid, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("record digest sent: %w", err)
	}
	return nil
}
