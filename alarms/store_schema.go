package alarms

import (
	"context"
	"fmt"
	"time"
)

// migrations are applied in order, each once, recorded in
// schema_migrations. Never edit one that has shipped: append a new one.
//
// The SQL is kept to what SQLite and PostgreSQL share. The exception is the
// id columns: AUTOINCREMENT guarantees that SQLite never reuses an id (not
// even after rows are deleted by a future retention job), because alarm ids
// are part of idempotency keys; on PostgreSQL they become
// BIGINT GENERATED ALWAYS AS IDENTITY. Times are Unix milliseconds.
var migrations = []string{
	`CREATE TABLE alarms (
		id                    INTEGER PRIMARY KEY AUTOINCREMENT,
		device_id             TEXT NOT NULL,
		kind                  TEXT NOT NULL,
		rule_id               TEXT NOT NULL,
		metric                TEXT NOT NULL,
		unit                  TEXT NOT NULL,
		channel               INTEGER NOT NULL,
		severity              TEXT NOT NULL,
		state                 TEXT NOT NULL,
		grid                  TEXT NOT NULL,
		station_id            TEXT NOT NULL,
		value                 DOUBLE PRECISION NOT NULL,
		threshold             DOUBLE PRECISION NOT NULL,
		since_ms              BIGINT NOT NULL,
		device_time_ms        BIGINT NOT NULL,
		seq                   BIGINT NOT NULL,
		raised_at_ms          BIGINT NOT NULL,
		last_seen_at_ms       BIGINT NOT NULL,
		repeats               INTEGER NOT NULL,
		condition_ended_at_ms BIGINT,
		cleared_at_ms         BIGINT,
		clear_value           DOUBLE PRECISION,
		action                TEXT NOT NULL,
		message               TEXT NOT NULL
	);
	-- At most one open alarm per (device, rule, channel), enforced by the
	-- store so that several instances sharing PostgreSQL cannot raise twice.
	CREATE UNIQUE INDEX alarms_open ON alarms (device_id, rule_id, channel) WHERE state = 'raised';
	CREATE INDEX alarms_grid ON alarms (grid);
	CREATE INDEX alarms_raised_at ON alarms (raised_at_ms);
	CREATE TABLE outbox (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id        INTEGER NOT NULL REFERENCES alarms (id),
		transition      TEXT NOT NULL,
		target          TEXT NOT NULL,
		station_id      TEXT NOT NULL,
		endpoint        TEXT NOT NULL,
		idempotency_key TEXT NOT NULL,
		body            TEXT NOT NULL,
		created_at_ms   BIGINT NOT NULL,
		attempts        INTEGER NOT NULL,
		last_attempt_ms BIGINT,
		last_error      TEXT,
		delivered_at_ms BIGINT,
		UNIQUE (idempotency_key, target)
	);
	CREATE INDEX outbox_pending ON outbox (endpoint, id) WHERE delivered_at_ms IS NULL;
	CREATE INDEX outbox_alarm ON outbox (alarm_id);`,
	// 2: the lifecycle (docs/alarms.md). Openness becomes a column of its
	// own, since many states are open; every transition is kept in
	// alarm_history. Alarms of version 1 get their history rebuilt.
	`ALTER TABLE alarms ADD COLUMN is_open INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE alarms ADD COLUMN closed_at_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN escalations INTEGER NOT NULL DEFAULT 0;
	UPDATE alarms SET is_open = 0, state = 'auto_cleared', closed_at_ms = cleared_at_ms WHERE state = 'cleared';
	DROP INDEX alarms_open;
	CREATE UNIQUE INDEX alarms_open_one ON alarms (device_id, rule_id, channel) WHERE is_open = 1;
	CREATE INDEX alarms_state ON alarms (state);
	CREATE TABLE alarm_history (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id   INTEGER NOT NULL REFERENCES alarms (id),
		from_state TEXT NOT NULL,
		to_state   TEXT NOT NULL,
		at_ms      BIGINT NOT NULL,
		actor      TEXT NOT NULL,
		note       TEXT NOT NULL
	);
	CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, id);
	INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		SELECT id, '', 'raised', raised_at_ms, 'rules', '' FROM alarms;
	INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		SELECT id, 'raised', 'auto_cleared', cleared_at_ms, 'rules', '' FROM alarms WHERE state = 'auto_cleared';`,
	// 3: routing by station readiness.
	`ALTER TABLE alarms ADD COLUMN route_note TEXT NOT NULL DEFAULT '';
	CREATE TABLE station_status (
		station_id TEXT PRIMARY KEY,
		duty       TEXT NOT NULL,
		people     INTEGER NOT NULL,
		note       TEXT NOT NULL,
		at_ms      BIGINT NOT NULL,
		by_actor   TEXT NOT NULL
	);`,
	// 4: storms (incidents) and flapping.
	`ALTER TABLE alarms ADD COLUMN incident_id BIGINT;
	ALTER TABLE alarms ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE outbox ADD COLUMN incident_id BIGINT;
	ALTER TABLE outbox ADD COLUMN incident_upto BIGINT;
	CREATE TABLE incidents (
		id                INTEGER PRIMARY KEY AUTOINCREMENT,
		station_id        TEXT NOT NULL,
		leader_id         BIGINT NOT NULL,
		opened_at_ms      BIGINT NOT NULL,
		last_member_at_ms BIGINT NOT NULL,
		members           INTEGER NOT NULL,
		members_pushed    INTEGER NOT NULL,
		pushes            INTEGER NOT NULL,
		pushed_at_ms      BIGINT,
		is_open           INTEGER NOT NULL
	);
	CREATE INDEX incidents_open ON incidents (station_id) WHERE is_open = 1;
	CREATE INDEX alarms_incident ON alarms (incident_id);
	CREATE INDEX alarms_station_raised ON alarms (station_id, raised_at_ms);
	CREATE INDEX alarms_flap ON alarms (device_id, rule_id, channel, raised_at_ms);`,
	// 5: linkage commands (联动).
	`CREATE TABLE commands (
		id            INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id      INTEGER NOT NULL REFERENCES alarms (id),
		device_id     TEXT NOT NULL,
		cmd           TEXT NOT NULL,
		channel       INTEGER NOT NULL,
		cmd_key       TEXT NOT NULL UNIQUE,
		state         TEXT NOT NULL,
		attempts      INTEGER NOT NULL,
		created_at_ms BIGINT NOT NULL,
		last_sent_ms  BIGINT,
		done_at_ms    BIGINT,
		last_error    TEXT
	);
	CREATE INDEX commands_pending ON commands (state);
	CREATE INDEX commands_alarm ON commands (alarm_id);`,
	// 6: scheduled digests (预警提示) sent, so that a restart does not
	// send one twice.
	`CREATE TABLE digests_sent (
		period     TEXT NOT NULL,
		target     TEXT NOT NULL,
		grid       TEXT NOT NULL,
		sent_at_ms BIGINT NOT NULL,
		PRIMARY KEY (period, target)
	);`,
	// 7: the alarm path review (issue 20). escalated_at_ms: escalations
	// are spaced from the previous one, not counted from the raise.
	// condition_ended_seen_ms: firewatch's time of a condition's end, from
	// which a flapping alarm's stable period counts. incident_push: the
	// incident push that first listed an alarm, so that its delivery moves
	// exactly the alarms it listed. parked_at_ms: a push its receiver
	// refused for good, set aside so that later pushes go on.
	`ALTER TABLE alarms ADD COLUMN escalated_at_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN condition_ended_seen_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN incident_push INTEGER;
	UPDATE alarms SET incident_push = 1 WHERE incident_id IS NOT NULL;
	ALTER TABLE outbox ADD COLUMN parked_at_ms BIGINT;
	DROP INDEX outbox_pending;
	CREATE INDEX outbox_pending ON outbox (endpoint, id) WHERE delivered_at_ms IS NULL AND parked_at_ms IS NULL;`,
	// 8: several instances on one PostgreSQL (issue 15, store_lease.go):
	// the instance delivering a push holds it until lease_until_ms (the
	// database's clock), and a periodic duty is held in duties.
	`ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
	ALTER TABLE outbox ADD COLUMN lease_until_ms BIGINT;
	CREATE TABLE duties (
		name     TEXT PRIMARY KEY,
		owner    TEXT NOT NULL,
		until_ms BIGINT NOT NULL
	);`,
}

// migrateLock is the PostgreSQL advisory lock key of the migrations
// ("fwalarms" in ASCII).
const migrateLock int64 = 0x6677616c61726d73

func (s *store) migrate() error {
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	// Instances starting together on one PostgreSQL migrate one after the
	// other: without the lock both create the tables and one fails.
	if s.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, migrateLock); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version       INTEGER PRIMARY KEY,
		applied_at_ms BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: database schema version %d is newer than this firewatch (%d): a newer release wrote it; "+
			"run that release again, or restore the backup taken before the upgrade (docs/install.md); the store is left unchanged", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		stmts := []string{migrations[v-1]}
		if s.pg {
			stmts = pgMigration(migrations[v-1])
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("migrate to version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)`,
			v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
	}
	return tx.Commit()
}
