package registry

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
)

// Following the store (issue 15). Several firewatch instances may share one
// registry store (cluster mode: one PostgreSQL). A change is committed by
// one of them (Commit: validate, write at a new registry version, apply to
// its devices.Live); every other instance must adopt it too, or its broker
// authentication refuses a new device, its pipeline rejects the messages of
// a device added elsewhere as unknown (a missed alarm), and a removed
// device or a rotated secret keeps working there.
//
// So each instance polls the store's version (Follow, every second by
// default: one indexed SELECT; on PostgreSQL also as soon as a commit is
// notified, notify.go) and, when it is ahead of the version its
// live registry reflects (Store.applied), reads what changed since — the
// audit records of the newer versions name every entity created, updated
// or deleted, and the rows give their current state — and applies it as
// one devices.Change. The change is made idempotent against the live
// registry (a delete only of what is live, an upsert of what the store has
// now), so that applying a version twice, or a version the live registry
// already partly reflects, is harmless; and it is applied whole, whatever
// number of versions it spans (a follower that missed some catches up in
// one step). Should it not apply (a live registry that drifted from the
// store), the follower logs it, counts it and compares the whole registry
// instead (reload). Own commits advance applied under the same lock, so
// they are not applied twice.

// DefaultFollowInterval is how often Follow looks at the store's version
// when FollowOptions.Interval is 0.
const DefaultFollowInterval = time.Second

// deltaByID is the largest number of changed devices read by id; a larger
// change (a spreadsheet import elsewhere) is read by one scan of the rows
// written since (rev), which is cheaper than thousands of lookups.
const deltaByID = 2000

// FollowOptions are the options of Follow.
type FollowOptions struct {
	// Interval between two looks at the store's version (0:
	// DefaultFollowInterval).
	Interval time.Duration
	// Logger receives what was applied and any error (nil: discarded).
	Logger *slog.Logger
	// PollOnly turns the commit notifications off (notify.go): the
	// follower only polls.
	PollOnly bool
}

// followState is the follower's bookkeeping and metrics.
type followState struct {
	log atomic.Pointer[slog.Logger]
	// stuck is the store version whose registry did not apply here
	// (stuckErr why), under the store's mu: not tried again until the
	// store's version moves on (a reload reads the whole registry).
	stuck    uint64
	stuckErr error

	applied, errors, reloads prometheus.Counter
	version                  prometheus.Gauge
	// notified counts commit notifications heard; listening is 1 while
	// the follower listens for them (notify.go).
	notified  prometheus.Counter
	listening atomic.Int32
}

func newFollowState() *followState {
	f := &followState{
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_registry_follow_applied_total",
			Help: "Registry changes committed by another instance (or process) sharing the registry store, made live here."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_registry_follow_errors_total",
			Help: "Failures to read or apply the registry changes committed elsewhere (each is retried; an unappliable change leads to a reload)."}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_registry_follow_reloads_total",
			Help: "Whole-registry comparisons made by the follower (a change it could not apply incrementally, a seed)."}),
		notified: prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_registry_follow_notifications_total",
			Help: "Commit notifications heard from the registry store (PostgreSQL LISTEN), each followed by a look at its version."}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{Name: "firewatch_registry_version",
			Help: "The registry version in force on this instance (all instances sharing a store converge on the store's)."}),
	}
	return f
}

func (f *followState) logger() *slog.Logger {
	if l := f.log.Load(); l != nil {
		return l
	}
	return discard
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// Collectors are the store's metrics (the follower's), for a Prometheus
// registry.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.follow.applied, s.follow.errors, s.follow.reloads, s.follow.notified, s.follow.version}
}

// setApplied records that the live registry about to be attached reflects
// registry version v.
func (s *Store) setApplied(v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = v
	s.follow.version.Set(float64(v))
}

// Applied is the registry version the live registry reflects.
func (s *Store) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// Follow keeps the attached live registry at the store's registry version
// until ctx is done, looking every opt.Interval and, on PostgreSQL, as soon
// as a commit is notified (notify.go): changes other instances (or
// `firewatch registry import`) commit are made live here within
// milliseconds, at the latest within about one interval. Errors are
// logged, counted and retried at the next look; Follow returns nil when
// ctx is done.
func (s *Store) Follow(ctx context.Context, opt FollowOptions) error {
	iv := opt.Interval
	if iv <= 0 {
		iv = DefaultFollowInterval
	}
	if opt.Logger != nil {
		s.follow.log.Store(opt.Logger)
	}
	log := s.follow.logger()
	t := time.NewTicker(iv)
	defer t.Stop()
	var poke chan struct{} // nil on SQLite: never ready
	if s.pg && !opt.PollOnly {
		poke = make(chan struct{}, 1)
		lctx, stop := context.WithCancel(ctx)
		listening := make(chan struct{})
		go func() { defer close(listening); s.listen(lctx, poke) }()
		defer func() { stop(); <-listening }()
	}
	var lastErr string
	var lastLogged time.Time
	for {
		// A bound on one look: a database that does not answer must not
		// hold the store's lock (and the API's commits) for ever.
		lctx, cancel := context.WithTimeout(ctx, max(time.Minute, 10*iv))
		_, err := s.Sync(lctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// A store that is down fails every second: say so when the
			// error changes, and once a minute while it lasts.
			if msg := err.Error(); msg != lastErr || time.Since(lastLogged) >= time.Minute {
				log.Error("registry follow: the changes committed elsewhere are not in force here yet", "err", err)
				lastErr, lastLogged = msg, time.Now()
			}
		case lastErr != "":
			log.Info("registry follow: recovered", "version", s.Applied())
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-poke:
		}
	}
}

// Sync brings the attached live registry up to the store's registry
// version now and returns the version it reflects.
func (s *Store) Sync(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		return 0, ErrNotAttached
	}
	err := s.syncLocked(ctx)
	return s.applied, err
}

// syncLocked is Sync with s.mu held and a live registry attached.
func (s *Store) syncLocked(ctx context.Context) error {
	v, err := s.Version(ctx)
	if err != nil {
		s.follow.errors.Inc()
		return err
	}
	if v <= s.applied {
		return nil
	}
	if v == s.follow.stuck {
		return s.follow.stuckErr
	}
	if s.applied == 0 {
		return s.reloadLocked(ctx, "the version in force is unknown")
	}
	from, live := s.applied, s.live.Load()
	c, at, full, err := s.delta(ctx, from, live)
	if err != nil {
		s.follow.errors.Inc()
		return fmt.Errorf("registry follow: read the changes since version %d: %w", from, err)
	}
	if full {
		return s.reloadLocked(ctx, "a seed of the store")
	}
	if at <= from {
		return nil
	}
	log := s.follow.logger()
	if Size(c) > 0 {
		_, d, err := s.live.Apply(c)
		if err != nil {
			s.follow.errors.Inc()
			log.Error("registry follow: the changes committed elsewhere do not apply to the registry in force; comparing the whole registry",
				"from", from, "to", at, "err", err)
			return s.reloadLocked(ctx, "a change that did not apply")
		}
		log.Info("registry follow: changes committed elsewhere in force", "from", from, "to", at,
			"added", len(d.Added), "edited", len(d.Edited), "removed", len(d.Removed), "stations", len(d.Stations), "gateways", len(d.Gateways))
	}
	s.follow.applied.Inc()
	s.applied = at
	s.follow.version.Set(float64(at))
	return nil
}

// snapshot is the transaction options of a consistent read of several
// tables: REPEATABLE READ on PostgreSQL (its default, READ COMMITTED,
// takes a new snapshot per statement); a SQLite read transaction is one
// snapshot already.
func (s *Store) snapshot() *sql.TxOptions {
	if s.pg {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return &sql.TxOptions{}
}

// delta reads, in one snapshot, the registry version at and the change
// that brings live (the registry at version from, or later) to it; full
// when only a whole comparison can (the versions include a seed).
func (s *Store) delta(ctx context.Context, from uint64, live *devices.Ledger) (c *devices.Change, at uint64, full bool, err error) {
	tx, err := s.reader().BeginTx(ctx, s.snapshot())
	if err != nil {
		return nil, 0, false, err
	}
	defer tx.Rollback()
	if at, err = metaVersion(ctx, tx, s); err != nil || at <= from {
		return nil, at, false, err
	}
	// Every entity a newer version wrote is in the audit, in order.
	rows, err := tx.QueryContext(ctx, s.q(`SELECT entity, entity_id, action FROM registry_audit WHERE version > ? ORDER BY id`), int64(from))
	if err != nil {
		return nil, 0, false, err
	}
	touched := map[string][]string{}
	seen := map[string]bool{}
	for rows.Next() {
		var entity, id, action string
		if err := rows.Scan(&entity, &id, &action); err != nil {
			rows.Close()
			return nil, 0, false, err
		}
		if action == "import" { // a seed: one record for the whole registry
			full = true
		}
		if k := entity + "/" + id; !seen[k] {
			seen[k] = true
			touched[entity] = append(touched[entity], id)
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, 0, false, err
	}
	if full {
		return nil, at, true, nil
	}
	c = &devices.Change{Places: map[string]string{}}
	if err := s.deltaPlaces(ctx, tx, touched["place"], live, c); err != nil {
		return nil, 0, false, err
	}
	if err := s.deltaStations(ctx, tx, touched["station"], live, c); err != nil {
		return nil, 0, false, err
	}
	if err := s.deltaGateways(ctx, tx, touched["gateway"], live, c); err != nil {
		return nil, 0, false, err
	}
	if err := s.deltaDevices(ctx, tx, touched["device"], from, live, c); err != nil {
		return nil, 0, false, err
	}
	return c, at, false, nil
}

// inBatches calls f with "(?, ?, …)" and the arguments for each batch of
// up to 500 of ids.
func inBatches(ids []string, f func(in string, args []any) error) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		if err := f("(?"+strings.Repeat(", ?", n-1)+")", args); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func (s *Store) deltaPlaces(ctx context.Context, tx *sql.Tx, codes []string, live *devices.Ledger, c *devices.Change) error {
	have := map[string]string{}
	err := inBatches(codes, func(in string, args []any) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT code, name FROM registry_places WHERE code IN `+in), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var code, name string
			if err := rows.Scan(&code, &name); err != nil {
				rows.Close()
				return err
			}
			have[code] = name
		}
		return closeRows(rows)
	})
	if err != nil {
		return fmt.Errorf("places: %w", err)
	}
	for _, code := range codes {
		name, ok := have[code]
		switch {
		case ok && live.Places[code] != name:
			c.Places[code] = name
		case !ok && live.Places[code] != "":
			c.Places[code] = "" // deleted
		}
	}
	return nil
}

func (s *Store) deltaStations(ctx context.Context, tx *sql.Tx, ids []string, live *devices.Ledger, c *devices.Change) error {
	have := map[string]bool{}
	err := inBatches(ids, func(in string, args []any) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id, name, grids, endpoint, lat, lon FROM registry_stations WHERE id IN `+in+` ORDER BY seq`), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var st devices.StationEntry
			var grids string
			if err := rows.Scan(&st.ID, &st.Name, &grids, &st.Endpoint, &st.Lat, &st.Lon); err != nil {
				rows.Close()
				return err
			}
			st.Grids = splitGrids(grids)
			have[st.ID] = true
			c.UpsertStations = append(c.UpsertStations, st)
		}
		return closeRows(rows)
	})
	if err != nil {
		return fmt.Errorf("stations: %w", err)
	}
	for _, id := range ids {
		if !have[id] && live.Station(id) != nil {
			c.DeleteStations = append(c.DeleteStations, id)
		}
	}
	return nil
}

func (s *Store) deltaGateways(ctx context.Context, tx *sql.Tx, ids []string, live *devices.Ledger, c *devices.Change) error {
	have := map[string]bool{}
	err := inBatches(ids, func(in string, args []any) error {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id, secret_hash FROM registry_gateways WHERE id IN `+in+` ORDER BY seq`), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var g devices.GatewayEntry
			if err := rows.Scan(&g.ID, &g.SecretHash); err != nil {
				rows.Close()
				return err
			}
			have[g.ID] = true
			if lg := live.Gateways[g.ID]; lg == nil || lg.SecretHash != g.SecretHash {
				c.UpsertGateways = append(c.UpsertGateways, g)
			}
		}
		return closeRows(rows)
	})
	if err != nil {
		return fmt.Errorf("gateways: %w", err)
	}
	for _, id := range ids {
		if !have[id] && live.Gateways[id] != nil {
			c.DeleteGateways = append(c.DeleteGateways, id)
		}
	}
	return nil
}

// deltaDevices adds the devices ids to c: the rows of those that exist, in
// the store's order (so that devices new here get indices in the order a
// restart gives them), and a delete for each of the others still live.
func (s *Store) deltaDevices(ctx context.Context, tx *sql.Tx, ids []string, from uint64, live *devices.Ledger, c *devices.Change) error {
	if len(ids) == 0 {
		return nil
	}
	type row struct {
		seq int64
		d   devices.DeviceEntry
	}
	var got []row
	read := func(q string, args ...any) error {
		rows, err := tx.QueryContext(ctx, s.q(q), args...)
		if err != nil {
			return err
		}
		var sc deviceScan
		var seq int64
		ws := withSeq{rows: rows, seq: &seq}
		for rows.Next() {
			if err := sc.scan(ws); err != nil {
				rows.Close()
				return err
			}
			got = append(got, row{seq, sc.d})
		}
		return closeRows(rows)
	}
	var err error
	if len(ids) <= deltaByID {
		err = inBatches(ids, func(in string, args []any) error {
			return read(`SELECT `+deviceColumns+`, seq FROM registry_devices WHERE id IN `+in, args...)
		})
	} else {
		// Every device written since from has rev > from; one written and
		// then deleted has no row.
		err = read(`SELECT `+deviceColumns+`, seq FROM registry_devices WHERE rev > ?`, int64(from))
	}
	if err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	slices.SortFunc(got, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	have := make(map[string]bool, len(got))
	for i := range got {
		have[got[i].d.ID] = true
		c.UpsertDevices = append(c.UpsertDevices, got[i].d)
	}
	for _, id := range ids {
		if _, ok := live.LookupID(id); ok && !have[id] {
			c.DeleteDevices = append(c.DeleteDevices, id)
		}
	}
	return nil
}

// withSeq scans a device row followed by its seq column.
type withSeq struct {
	rows *sql.Rows
	seq  *int64
}

func (w withSeq) Scan(dest ...any) error { return w.rows.Scan(append(dest, w.seq)...) }

// reloadLocked makes the live registry the store's whole registry: the
// change from the live registry's entries to the store's (ChangeBetween:
// what is equal is left alone), applied as one. It is the follower's way
// out when a change does not apply, and its start when the version in
// force is unknown.
func (s *Store) reloadLocked(ctx context.Context, why string) error {
	s.follow.reloads.Inc()
	tx, err := s.reader().BeginTx(ctx, s.snapshot())
	if err != nil {
		s.follow.errors.Inc()
		return fmt.Errorf("registry follow: reload: %w", err)
	}
	defer tx.Rollback()
	at, err := metaVersion(ctx, tx, s)
	if err != nil {
		s.follow.errors.Inc()
		return fmt.Errorf("registry follow: reload: %w", err)
	}
	e := &devices.Entries{Places: map[string]string{}}
	if err := s.loadInto(ctx, tx, e); err != nil {
		s.follow.errors.Inc()
		return fmt.Errorf("registry follow: reload: %w", err)
	}
	tx.Rollback()
	cur := s.live.Load().Entries()
	c := ChangeBetween(cur, e, cur)
	log := s.follow.logger()
	if Size(c) > 0 {
		_, d, err := s.live.Apply(c)
		if err != nil {
			s.follow.errors.Inc()
			err = fmt.Errorf("registry follow: the registry in the store (version %d) does not apply here; the one in force stays until the store's changes again: %w", at, err)
			s.follow.stuck, s.follow.stuckErr = at, err
			return err
		}
		log.Warn("registry follow: whole registry compared and made live", "why", why, "version", at,
			"added", len(d.Added), "edited", len(d.Edited), "removed", len(d.Removed), "stations", len(d.Stations), "gateways", len(d.Gateways))
	}
	s.follow.applied.Inc()
	s.applied = at
	s.follow.version.Set(float64(at))
	return nil
}
