package alarms

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// The commands table: linkage commands (linkage.go).

// pendingCommand is a stored linkage command.
type pendingCommand struct {
	id, alarmID  int64
	device, cmd  string
	key          string
	ch, attempts int
	created      int64
	lastSent     sql.NullInt64
	lastError    sql.NullString
}

// insertCommand stores the linkage command of new alarm a (id), pending.
func (q queries) insertCommand(ctx context.Context, id int64, a *Alarm, now time.Time) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO commands (alarm_id, device_id, cmd, channel, cmd_key, state, attempts,
		created_at_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?)`,
		id, a.Device, a.Action, a.Channel, a.ID+"-"+a.Action, CommandPending, now.UnixMilli())
	return err
}

// pendingCommands lists the pending commands, oldest first.
func (q queries) pendingCommands(ctx context.Context) ([]pendingCommand, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, alarm_id, device_id, cmd, cmd_key, channel, attempts,
		created_at_ms, last_sent_ms, last_error FROM commands WHERE state = ? ORDER BY id`, CommandPending)
	return collect(rows, err, func(sc scanner, c *pendingCommand) error {
		return sc.Scan(&c.id, &c.alarmID, &c.device, &c.cmd, &c.key, &c.ch, &c.attempts, &c.created, &c.lastSent, &c.lastError)
	})
}

// commandAttempt records attempt attempts+1 to send pending command id,
// if no one recorded it yet: of several instances sharing the store, the
// one that records it sends it.
func (q queries) commandAttempt(ctx context.Context, id int64, attempts int, now time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE commands SET attempts = attempts + 1, last_sent_ms = ?, last_error = ''
		WHERE id = ? AND state = ? AND attempts = ?`, now.UnixMilli(), id, CommandPending, attempts))
}

// commandError records why pending command id could not be sent.
func (q queries) commandError(ctx context.Context, id int64, msg string) error {
	_, err := q.db.ExecContext(ctx, `UPDATE commands SET last_error = ? WHERE id = ? AND state = ?`, msg, id, CommandPending)
	return err
}

// finishCommand moves command id from state from to state, with the
// reason; it reports false when the command was no longer in from.
func (q queries) finishCommand(ctx context.Context, id int64, from, state, reason string, now time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE commands SET state = ?, done_at_ms = ?, last_error = ? WHERE id = ? AND state = ?`,
		state, now.UnixMilli(), reason, id, from))
}

// commandByKey reads the command with key and its state.
func (q queries) commandByKey(ctx context.Context, key string) (c pendingCommand, state string, found bool, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT id, alarm_id, device_id, cmd, cmd_key, channel, attempts, state
		FROM commands WHERE cmd_key = ?`, key).Scan(&c.id, &c.alarmID, &c.device, &c.cmd, &c.key, &c.ch, &c.attempts, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return c, "", false, nil
	}
	return c, state, err == nil, err
}

// commands returns the linkage commands of alarm id.
func (q queries) commands(ctx context.Context, id int64) ([]CommandStatus, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT cmd, cmd_key, channel, state, attempts, created_at_ms, done_at_ms, last_error
		FROM commands WHERE alarm_id = ? ORDER BY id`, id)
	return collect(rows, err, func(sc scanner, c *CommandStatus) error {
		var (
			created int64
			done    sql.NullInt64
			lastErr sql.NullString
		)
		if err := sc.Scan(&c.Cmd, &c.ID, &c.Channel, &c.State, &c.Attempts, &created, &done, &lastErr); err != nil {
			return err
		}
		c.CreatedAt, c.LastError = msTime(created), lastErr.String
		if done.Valid {
			t := msTime(done.Int64)
			c.DoneAt = &t
		}
		return nil
	})
}
