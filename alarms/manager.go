package alarms

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// Config configures a Manager. Zero durations and sizes take the defaults.
type Config struct {
	DBPath string // SQLite file path; ":memory:" not needed
	Secret []byte // HMAC-SHA256 key for webhook signatures
	// SecretPrevious, while a new Secret is being rolled out, signs every
	// push a second time (v2), so that receivers can move to their new key
	// when they are ready. NoLegacySignature stops sending the v1
	// signature keyed with Secret itself, once every receiver verifies v2
	// with its own key (docs/dispatch.md).
	SecretPrevious    []byte
	NoLegacySignature bool
	// BrigadeEndpoint, if set, also receives every fire-severity push
	// (消防救援大队), as a push of its own.
	BrigadeEndpoint string
	// RetryMin and RetryMax bound the outbox backoff (defaults 500ms, 30s),
	// with jitter.
	RetryMin, RetryMax time.Duration
	PushTimeout        time.Duration // per HTTP attempt (default 5s)
	QueueSize          int           // events buffered between hot path and manager (default 4096)
	Logger             *slog.Logger
	Registerer         prometheus.Registerer // may be nil
	// OnTransition, if set, is called after an alarm was raised, cleared
	// or closed by a person and the change committed, from the manager
	// goroutine or an API request. It should be quick: the event queue
	// waits for it. It must be safe for concurrent use.
	OnTransition func(a Alarm)
	// OnClosed, if set, is called once an alarm reached a closed state
	// (resolved, false alarm, test, auto-cleared), after OnTransition, with
	// its history and response times (Alarm.Response) filled in: the
	// response-time accounting written to InfluxDB.
	OnClosed func(a Alarm)
	// RespondWithin is how long an alarm may wait for an acknowledgement
	// before it is escalated (default 1m, DOMAIN.md); EscalationCheck how
	// often that is checked (default 1s).
	RespondWithin, EscalationCheck time.Duration
	// StormWindow and StormHold group storms (defaults 10s and 2s; a
	// negative StormWindow turns grouping off): a new alarm for a station
	// within StormWindow of its previous one is pushed as part of an
	// incident, whose push waits until no alarm joined for StormHold, at
	// most StormWindow.
	StormWindow, StormHold time.Duration
	// FlapCount, FlapWindow and FlapStable detect flapping (defaults 3,
	// 10m, 5m; FlapCount 1 turns detection off): the FlapCount-th alarm of
	// one (device, rule, channel) within FlapWindow is marked flapping and
	// stays open until its condition has been clear for FlapStable.
	FlapCount              int
	FlapWindow, FlapStable time.Duration
	// Publish sends a linkage command (QoS 1) and returns once the broker
	// has it; nil means no downlink: commands are recorded as failed.
	Publish func(ctx context.Context, topic string, payload []byte) error
	// Robots are WeCom and DingTalk group robots of duty groups: each gets
	// a markdown message for every push of the alarms in its grid.
	Robots []Robot
	// CommandRetry is how long to wait for a device's acknowledgement
	// before sending a command again (default 3s).
	CommandRetry time.Duration
	// Tokens are the bearer tokens of the HTTP API (ParseTokens). Without
	// any, reads are open and every write is refused.
	Tokens []Token
	// Digest is the schedule of the digests (预警提示) sent to the robots of
	// towns and counties: DigestDaily, DigestWeekly, DigestMonthly or
	// DigestOff (the default, "", is DigestMonthly). DigestAt is how long
	// after a period's end (midnight CST) it goes out (default 8h);
	// DigestCheck how often due digests are looked for (default 1m).
	Digest                string
	DigestAt, DigestCheck time.Duration
	// ResponderLink, if set, makes the responder page link (issue 16) that each push and robot message carries (alarms/responder.go).
	ResponderLink func(alarmID, station string) string
}

// Defaults of Config.
const (
	DefaultRetryMin    = 500 * time.Millisecond
	DefaultRetryMax    = 30 * time.Second
	DefaultPushTimeout = 5 * time.Second
	DefaultQueueSize   = 4096
)

const (
	// maxBatch is how many queued events share one transaction (one fsync).
	maxBatch = 256
	// drainGrace is how long Run keeps retrying a failing store after its
	// context is done before it gives up on the remaining events.
	drainGrace = 10 * time.Second
)

// Manager owns the alarm lifecycle: it turns rule events into alarms in the
// store, delivers their pushes from the durable outbox, and serves them over
// HTTP.
type Manager struct {
	cfg    Config
	ledger *devices.Ledger
	// digestMu makes SendDueDigests one at a time, so that a digest is
	// not sent twice by two callers.
	digestMu sync.Mutex
	store    *store
	events   chan rules.Event
	client   *http.Client
	log      *slog.Logger
	met      *metrics
	running  atomic.Bool
	// grace is how long Run keeps retrying a failing store after its
	// context is done (drainGrace; shorter in tests).
	grace time.Duration
	auth  *auth
	// submitted and done count events given to Submit and events Run has
	// finished with (stored, or rejected as malformed); Sync waits on
	// progress for done to catch up.
	submitted, done atomic.Uint64
	progressMu      sync.Mutex
	progress        *sync.Cond
	stopped         bool // Run has returned: Sync must not wait
	// commandWake tells the linkage loop a command was queued.
	commandWake chan struct{}
	// console queues alarm updates for the MQTT fan-out (nil without
	// Publish).
	console chan Alarm
	// outbox is set while Run runs.
	outbox atomic.Pointer[outbox]
	// stopping is closed by Stopping.
	stopping     chan struct{}
	stoppingOnce sync.Once
	// now is the clock of alarm times, windows and escalations (time.Now;
	// the model test steps its own).
	now func() time.Time
}

// NewManager opens (creating and migrating if needed) the alarm store at
// cfg.DBPath.
func NewManager(cfg Config, ledger *devices.Ledger) (*Manager, error) {
	if cfg.DBPath == "" {
		return nil, errors.New("alarms: DBPath is empty")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("alarms: Secret is empty: pushes must be signed")
	}
	if ledger == nil {
		return nil, errors.New("alarms: ledger is nil")
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryMin {
		return nil, fmt.Errorf("alarms: RetryMax %s is below RetryMin %s", cfg.RetryMax, cfg.RetryMin)
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = DefaultPushTimeout
	}
	if cfg.RespondWithin <= 0 {
		cfg.RespondWithin = DefaultRespondWithin
	}
	if cfg.StormWindow == 0 {
		cfg.StormWindow = DefaultStormWindow
	}
	if cfg.CommandRetry <= 0 {
		cfg.CommandRetry = DefaultCommandRetry
	}
	if cfg.FlapCount == 0 {
		cfg.FlapCount = DefaultFlapCount
	}
	if cfg.FlapWindow <= 0 {
		cfg.FlapWindow = DefaultFlapWindow
	}
	if cfg.FlapStable <= 0 {
		cfg.FlapStable = DefaultFlapStable
	}
	if cfg.StormHold <= 0 {
		cfg.StormHold = DefaultStormHold
	}
	if cfg.EscalationCheck <= 0 {
		cfg.EscalationCheck = DefaultEscalationCheck
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Digest == "" {
		cfg.Digest = DigestMonthly
	}
	if !ValidDigest(cfg.Digest) {
		return nil, fmt.Errorf("alarms: digest schedule %q: want daily, weekly, monthly or off", cfg.Digest)
	}
	if cfg.DigestAt <= 0 {
		cfg.DigestAt = DefaultDigestAt
	}
	if cfg.DigestCheck <= 0 {
		cfg.DigestCheck = DefaultDigestCheck
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:    cfg,
		ledger: ledger,
		events: make(chan rules.Event, cfg.QueueSize),
		log:    cfg.Logger,
		grace:  drainGrace,
		auth:   newAuth(cfg.Tokens),
		now:    time.Now,
	}
	m.stopping = make(chan struct{})
	m.commandWake = make(chan struct{}, 1)
	if cfg.Publish != nil {
		m.console = make(chan Alarm, consoleQueue)
	}
	m.progress = sync.NewCond(&m.progressMu)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	m.client = &http.Client{
		Transport: tr,
		// A redirect of a POST would turn into a GET; count it as a failure
		// so the operator fixes the endpoint.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s, err := openStore(cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}
	m.store = s
	moved, err := s.repoint(context.Background(), func(id string) string {
		if st := ledger.Station(id); st != nil {
			return st.Endpoint
		}
		return ""
	}, cfg.BrigadeEndpoint)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("alarms: %w", err)
	}
	if moved > 0 {
		m.log.Info("pending pushes sent to the endpoints now configured", "pushes", moved)
	}
	_, pending, err := s.pendingEndpoints(context.Background())
	if err != nil {
		s.close()
		return nil, fmt.Errorf("alarms: %w", err)
	}
	m.met = newMetrics(func() float64 { return float64(len(m.events)) })
	m.met.pending.Set(float64(pending))
	if cfg.Registerer != nil {
		if err := m.met.register(cfg.Registerer); err != nil {
			s.close()
			return nil, fmt.Errorf("alarms: register metrics: %w", err)
		}
	}
	return m, nil
}

// Submit queues a rule event for the manager. It is called on the hot path:
// it does not allocate, and it blocks only while the queue is full
// (back-pressure: an event is never dropped).
func (m *Manager) Submit(ev rules.Event) {
	m.submitted.Add(1)
	m.events <- ev
}

// Sync waits until every event submitted before the call is stored (or
// rejected), or Run has returned. Called before Run starts, it waits for
// Run. The MQTT handler calls it before a message
// is acknowledged, so that a process killed at any moment has either
// stored the message's alarms or not acknowledged the message, which the
// broker then delivers again. Without pending events it returns at once.
func (m *Manager) Sync() {
	target := m.submitted.Load()
	if m.done.Load() >= target {
		return
	}
	m.progressMu.Lock()
	defer m.progressMu.Unlock()
	for m.done.Load() < target && !m.stopped {
		m.progress.Wait()
	}
}

// Stopping tells the manager that shutdown has begun, before the sources
// stop: from then on a failing store is retried for at most the drain grace
// (10 s), and then the events are logged as LOST, also those a caller is
// waiting for in Sync. Without it the MQTT handler, waiting in Sync while
// holding its source, would keep the source from stopping, and so Run's
// context from ending, for as long as the store fails.
func (m *Manager) Stopping() {
	m.stoppingOnce.Do(func() { close(m.stopping) })
}

// finished records that Run is done with n events.
func (m *Manager) finished(n int) {
	m.done.Add(uint64(n))
	m.progressMu.Lock()
	m.progress.Broadcast()
	m.progressMu.Unlock()
}

func (m *Manager) setStopped(stopped bool) {
	m.progressMu.Lock()
	m.stopped = stopped
	m.progress.Broadcast()
	m.progressMu.Unlock()
}

// Run consumes events and delivers pushes until ctx is done. Before it
// returns, every event submitted before ctx was done has been committed to
// the store; pushes not yet delivered stay in the outbox for the next Run.
// It returns an error only if the store failed beyond recovery.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("alarms: Run is already running")
	}
	defer m.running.Store(false)
	m.setStopped(false)
	defer m.setStopped(true)

	ob := newOutbox(m, ctx)
	m.outbox.Store(ob)
	defer func() {
		m.outbox.Store(nil)
		ob.wait()
	}()
	eps, _, err := m.store.pendingEndpoints(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("alarms: resume outbox: %w", err)
	}
	for _, ep := range eps {
		ob.wake(ep)
	}
	escDone, linkDone, consoleDone, digestDone := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(digestDone)
		m.digestLoop(ctx)
	}()
	go func() {
		defer close(consoleDone)
		if m.console != nil {
			m.consoleLoop(ctx)
		}
	}()
	go func() {
		defer close(escDone)
		m.escalateLoop(ctx)
	}()
	go func() {
		defer close(linkDone)
		m.linkageLoop(ctx)
	}()
	defer func() { <-escDone; <-linkDone; <-consoleDone; <-digestDone }()

	// giveUp ends the retries of a failing store drainGrace after ctx is
	// done or Stopping was called, whichever comes first, so that shutdown
	// cannot hang forever on a broken disk.
	giveUp, stopGiveUp := context.WithCancel(context.Background())
	defer stopGiveUp()
	grace := sync.OnceFunc(func() { time.AfterFunc(m.grace, stopGiveUp) })
	stopAfter := context.AfterFunc(ctx, grace)
	defer stopAfter()
	go func() {
		select {
		case <-m.stopping:
			grace()
		case <-giveUp.Done():
		}
	}()

	batch := make([]rules.Event, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return m.drain(giveUp, batch)
		case ev := <-m.events:
			batch = m.fill(append(batch[:0], ev))
			lost := m.commit(giveUp, batch)
			m.finished(len(batch))
			if lost > 0 {
				// Only possible once ctx is done and drainGrace has passed.
				err := fmt.Errorf("alarms: %d events not stored: store failing", lost)
				return errors.Join(err, m.drain(giveUp, batch))
			}
		}
	}
}

// fill appends queued events to batch without blocking.
func (m *Manager) fill(batch []rules.Event) []rules.Event {
	for len(batch) < maxBatch {
		select {
		case ev := <-m.events:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

// drain commits what is left in the queue.
func (m *Manager) drain(giveUp context.Context, batch []rules.Event) error {
	var lost int
	for {
		batch = m.fill(batch[:0])
		if len(batch) == 0 {
			break
		}
		lost += m.commit(giveUp, batch)
		m.finished(len(batch))
	}
	if lost > 0 {
		return fmt.Errorf("alarms: %d events not stored at shutdown", lost)
	}
	return nil
}

// Close closes the store. Call it after Run has returned.
func (m *Manager) Close() error {
	m.client.CloseIdleConnections()
	if err := m.store.close(); err != nil {
		return fmt.Errorf("alarms: close store: %w", err)
	}
	return nil
}

// List returns the alarms f selects, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]Alarm, error) {
	return m.store.list(ctx, f)
}

// effect is what a committed event does outside the store.
type effect struct {
	alarm      Alarm
	transition string // TransitionRaised, TransitionCleared or a closing state
	command    bool   // a linkage command was queued
	endpoints  []string
}

// commit stores batch in one transaction and then applies its effects. A
// failing batch is retried event by event, each with backoff, until giveUp;
// commit returns how many events it had to give up on, each logged in full
// so that an operator can reconstruct it.
func (m *Manager) commit(giveUp context.Context, batch []rules.Event) (lost int) {
	effects, err := m.apply(batch)
	if err == nil {
		m.after(effects)
		return 0
	}
	if len(batch) > 1 {
		m.log.Warn("alarm batch failed to commit, retrying event by event", "events", len(batch), "err", err)
		for i := range batch {
			lost += m.commit(giveUp, batch[i:i+1])
		}
		return lost
	}
	for failures := 1; ; failures++ {
		m.logEvent(slog.LevelError, "alarm event failed to commit, retrying", batch[0], "attempt", failures, "err", err)
		t := time.NewTimer(backoff(m.cfg.RetryMin, m.cfg.RetryMax, failures))
		select {
		case <-t.C:
		case <-giveUp.Done():
			t.Stop()
			m.logEvent(slog.LevelError, "alarm event LOST: store failing at shutdown", batch[0], "err", err)
			return 1
		}
		if effects, err = m.apply(batch); err == nil {
			m.after(effects)
			return 0
		}
	}
}

func (m *Manager) logEvent(level slog.Level, msg string, ev rules.Event, args ...any) {
	rule := ""
	if ev.Rule != nil {
		rule = ev.Rule.ID
	}
	dev := fmt.Sprintf("index:%d", ev.Device)
	if int(ev.Device) < len(m.ledger.Devices) {
		dev = m.ledger.Device(ev.Device).ID
	}
	m.log.Log(context.Background(), level, msg, append([]any{"device", dev, "rule", rule,
		"channel", ev.Channel, "transition", ev.Transition.String(), "value", ev.Value, "time", ev.Time}, args...)...)
}

// after updates metrics, wakes outbox workers and tells OnTransition, once
// the transaction is committed.
func (m *Manager) after(effects []effect) {
	ob := m.outbox.Load()
	for i := range effects {
		e := &effects[i]
		switch e.transition {
		case TransitionRaised:
			m.met.raised.WithLabelValues(e.alarm.Severity).Inc()
		case TransitionCleared:
			m.met.cleared.WithLabelValues(e.alarm.Severity).Inc()
		}
		m.met.pending.Add(float64(len(e.endpoints)))
		if e.command {
			select {
			case m.commandWake <- struct{}{}:
			default:
			}
		}
		for _, ep := range e.endpoints {
			if ob != nil {
				ob.wake(ep)
			}
		}
		if e.transition == TransitionDeliveryFault {
			continue
		}
		m.log.Info("alarm "+e.transition, "alarm", e.alarm.ID, "device", e.alarm.Device, "rule", e.alarm.Rule,
			"severity", e.alarm.Severity, "station", e.alarm.Station, "grid", e.alarm.Grid)
		m.toConsole(e.alarm)
		if e.transition == TransitionIncident {
			// The leader's own transition was told when it happened: an
			// incident push is no new transition of it (no second
			// annotation, no second response record).
			continue
		}
		if m.cfg.OnTransition != nil && e.transition != TransitionEscalated {
			m.cfg.OnTransition(e.alarm)
		}
		if m.cfg.OnClosed != nil && !e.alarm.State.Open() {
			m.closed(e.alarm.ID)
		}
	}
}

// apply writes batch in one transaction.
func (m *Manager) apply(batch []rules.Event) ([]effect, error) {
	ctx := context.Background() // a cancelled Run must still be able to drain
	tx, err := m.store.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	now := m.now()
	var effects []effect
	for _, ev := range batch {
		if err := m.check(ev); err != nil {
			m.met.rejected.Inc()
			m.logEvent(slog.LevelError, "alarm event rejected", ev, "err", err)
			continue
		}
		var (
			e   *effect
			err error
		)
		switch ev.Transition {
		case rules.Raise:
			e, err = m.raise(ctx, tx, ev, now)
		case rules.Clear:
			e, err = m.clear(ctx, tx, ev, now)
		}
		if err != nil {
			return nil, err
		}
		if e != nil {
			effects = append(effects, *e)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return effects, nil
}

// check rejects events no alarm can be made of: they are programming
// errors upstream, and retrying them would stall the queue.
func (m *Manager) check(ev rules.Event) error {
	switch {
	case ev.Rule == nil:
		return errors.New("event without rule")
	case int(ev.Device) >= len(m.ledger.Devices):
		return fmt.Errorf("device index %d not in ledger", ev.Device)
	case ev.Transition != rules.Raise && ev.Transition != rules.Clear:
		return fmt.Errorf("unknown transition %d", ev.Transition)
	case int(ev.Rule.Metric) <= 0 || int(ev.Rule.Metric) >= len(devices.Catalog):
		return fmt.Errorf("rule %s: unknown metric %d", ev.Rule.ID, ev.Rule.Metric)
	}
	return nil
}

func (m *Manager) raise(ctx context.Context, tx *sql.Tx, ev rules.Event, now time.Time) (*effect, error) {
	d, r := m.ledger.Device(ev.Device), ev.Rule
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM alarms WHERE device_id = ? AND rule_id = ? AND channel = ? AND is_open = 1`,
		d.ID, r.ID, ev.Channel).Scan(&id)
	switch {
	case err == nil:
		// Still open (a fire waiting for a person, or a repeated raise):
		// count it, push nothing. is_open again: on PostgreSQL the alarm
		// may have been closed since the SELECT (a flapping alarm found
		// stable), and the live condition needs an open alarm.
		res, err := tx.ExecContext(ctx, `UPDATE alarms SET repeats = repeats + 1, last_seen_at_ms = ?,
			condition_ended_at_ms = NULL, condition_ended_seen_ms = NULL WHERE id = ? AND is_open = 1`, now.UnixMilli(), id)
		if err != nil {
			return nil, fmt.Errorf("repeat alarm %s: %w", formatID(id), err)
		}
		if k, _ := res.RowsAffected(); k == 1 {
			return nil, nil
		}
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("find open alarm device %s rule %s: %w", d.ID, r.ID, err)
	}

	info := r.Metric.Info()
	a := Alarm{
		State: StateRaised, Severity: r.Severity.String(), SeverityZH: r.Severity.ZH(),
		Rule: r.ID, Device: d.ID, Kind: d.Kind.String(), Metric: info.Name, Unit: info.Unit,
		Channel: int(ev.Channel), Grid: string(d.Grid),
		Value: finite(ev.Value), Threshold: finite(r.Threshold),
		Since: msTime(ev.Since), DeviceTime: msTime(ev.Time),
		RaisedAt: msTime(now.UnixMilli()), LastSeenAt: msTime(now.UnixMilli()), Action: r.Action,
	}
	st, note, err := m.route(ctx, tx, d, r.Severity == rules.SeverityFire)
	if err != nil {
		return nil, err
	}
	if st != nil {
		a.Station = st.ID
	}
	a.RouteNote = note
	if a.Flapping, err = m.flapping(ctx, tx, d.ID, r.ID, a.Channel, now); err != nil {
		return nil, err
	}
	in := pushInput{alarm: &a, transition: TransitionRaised, ledger: m.ledger, device: d, station: st, rule: r, ev: ev, flapNote: m.flapNote}
	// The message does not depend on the id, so it can be stored with the
	// row; the push body, which does, is written after the insert.
	a.Message = buildPush(in).Message
	flap := 0
	if a.Flapping {
		flap = 1
		m.log.Warn("device flapping: alarm stays open until stable", "device", d.ID, "rule", r.ID, "channel", a.Channel)
	}
	err = tx.QueryRowContext(ctx, `INSERT INTO alarms (device_id, kind, rule_id, metric, unit, channel, severity, state,
		grid, station_id, value, threshold, since_ms, device_time_ms, seq, raised_at_ms, last_seen_at_ms, repeats,
		action, message, route_note, flapping) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id`,
		a.Device, a.Kind, a.Rule, a.Metric, a.Unit, a.Channel, a.Severity, string(a.State), a.Grid, a.Station,
		a.Value, a.Threshold, ev.Since, ev.Time, int64(ev.Seq), now.UnixMilli(), now.UnixMilli(),
		a.Action, a.Message, a.RouteNote, flap).Scan(&id)
	if err != nil {
		return nil, fmt.Errorf("insert alarm device %s rule %s: %w", d.ID, r.ID, err)
	}
	a.ID = formatID(id)
	a.Open = true
	if err := record(ctx, tx, id, "", StateRaised, now, ActorRules, ""); err != nil {
		return nil, err
	}
	if a.Action == "cut_power" {
		if err := queueCommand(ctx, tx, id, &a, now); err != nil {
			return nil, err
		}
	}
	inc, err := m.joinIncident(ctx, tx, a.Station, id, a.Severity)
	if err != nil {
		return nil, err
	}
	if inc != 0 {
		a.Incident = formatIncidentID(inc)
		return &effect{alarm: a, transition: TransitionRaised, command: a.Action == "cut_power"}, nil
	}
	eps, err := m.enqueue(ctx, tx, id, in, now)
	if err != nil {
		return nil, err
	}
	return &effect{alarm: a, transition: TransitionRaised, endpoints: eps, command: a.Action == "cut_power"}, nil
}

func (m *Manager) clear(ctx context.Context, tx *sql.Tx, ev rules.Event, now time.Time) (*effect, error) {
	d, r := m.ledger.Device(ev.Device), ev.Rule
	a, err := scanAlarm(tx.QueryRowContext(ctx, `SELECT `+alarmColumns+` FROM alarms
		WHERE device_id = ? AND rule_id = ? AND channel = ? AND is_open = 1`, d.ID, r.ID, ev.Channel))
	if errors.Is(err, sql.ErrNoRows) {
		// Nothing open: e.g. the raise was rejected, or a fire that a person
		// already closed.
		m.logEvent(slog.LevelDebug, "clear without open alarm", ev)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find open alarm device %s rule %s: %w", d.ID, r.ID, err)
	}
	id, _ := parseID(a.ID)
	fire := r.Severity == rules.SeverityFire || a.Severity == rules.SeverityFire.String()
	if fire || a.Flapping || CheckTransition(a.State, StateAutoCleared, a.Severity) != nil {
		// A fire is never closed automatically, and an alarm somebody has
		// taken on is closed by that somebody. A flapping alarm is closed
		// once it has been stable (clearStable).
		if _, err := tx.ExecContext(ctx, `UPDATE alarms SET condition_ended_at_ms = ?, condition_ended_seen_ms = ? WHERE id = ?`,
			ev.Time, now.UnixMilli(), id); err != nil {
			return nil, fmt.Errorf("end condition of alarm %s: %w", a.ID, err)
		}
		m.log.Info("condition ended, alarm stays open until closed by a person",
			"alarm", a.ID, "device", d.ID, "rule", r.ID, "state", a.State, "station", a.Station)
		return nil, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE alarms SET cleared_at_ms = ?, clear_value = ? WHERE id = ?`,
		now.UnixMilli(), finite(ev.Value), id); err != nil {
		return nil, fmt.Errorf("clear alarm %s: %w", a.ID, err)
	}
	note := "condition ended at " + formatValue(finite(ev.Value), a.Unit) + " " + a.Unit
	if err := move(ctx, tx, id, a.State, StateAutoCleared, now, ActorRules, note); err != nil {
		return nil, err
	}
	a.State, a.Open = StateAutoCleared, false
	cleared := msTime(now.UnixMilli())
	a.ClearedAt, a.ClosedAt = &cleared, &cleared
	cv := finite(ev.Value)
	a.ClearValue = &cv
	st := m.ledger.Station(a.Station)
	if st == nil {
		st = d.Station
	}
	in := pushInput{alarm: &a, transition: TransitionCleared, ledger: m.ledger, device: d, station: st, rule: r,
		ev: ev, clearedAt: cleared}
	// Tell every receiver that was told of the alarm (its raise, an
	// escalation, an incident push listing it), at the endpoint it was told
	// at, even if the ledger changed since; a storm member not listed yet
	// is told by the incident push, which lists it as cleared.
	p := buildPush(in)
	eps, err := m.enqueueClose(ctx, tx, id, &a, now, &p, nil)
	if err != nil {
		return nil, err
	}
	return &effect{alarm: a, transition: TransitionCleared, endpoints: eps}, nil
}

// enqueue writes the outbox rows of one transition: one for the station,
// and for a fire one for the brigade.
func (m *Manager) enqueue(ctx context.Context, tx *sql.Tx, alarmID int64, in pushInput, now time.Time) ([]string, error) {
	p := buildPush(in)
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode push %s: %w", p.IdempotencyKey, err)
	}
	type target struct{ name, station, endpoint string }
	var targets []target
	if in.station != nil && in.station.Endpoint != "" {
		targets = append(targets, target{"station", in.station.ID, in.station.Endpoint})
	} else {
		m.log.Warn("no station endpoint for alarm: push not queued", "alarm", in.alarm.ID,
			"device", in.device.ID, "rule", in.rule.ID)
	}
	if ep := m.cfg.BrigadeEndpoint; ep != "" && in.alarm.Severity == rules.SeverityFire.String() &&
		(len(targets) == 0 || targets[0].endpoint != ep) {
		targets = append(targets, target{"brigade", "", ep})
	}
	eps := make([]string, 0, len(targets))
	for _, t := range targets {
		_, err := tx.ExecContext(ctx, `INSERT INTO outbox (alarm_id, transition, target, station_id, endpoint,
			idempotency_key, body, created_at_ms, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)`,
			alarmID, in.transition, t.name, t.station, t.endpoint, p.IdempotencyKey, string(body), now.UnixMilli())
		if err != nil {
			return nil, fmt.Errorf("queue push %s to %s: %w", p.IdempotencyKey, t.name, err)
		}
		eps = append(eps, t.endpoint)
	}
	reps, err := m.enqueueRobots(ctx, tx, alarmID, string(in.device.Grid), in.transition, p.IdempotencyKey,
		robotTitle(p.SeverityZH, in.transition, p.AlarmID), p.Message, pushFields(&p), now)
	if err != nil {
		return nil, err
	}
	return append(eps, reps...), nil
}

// robotTitle is the heading of a robot message, e.g. "【火警】alm-000001".
func robotTitle(severityZH, transition, id string) string {
	t := "【" + severityZH
	switch transition {
	case TransitionRaised:
	case TransitionCleared:
		t += "已恢复"
	case TransitionEscalated:
		t += "·升级"
	case TransitionIncident:
		t += "·群发事件"
	case TransitionDeliveryFault:
		t += "·推送被拒"
	default:
		t += "·" + stateZH[State(transition)]
	}
	return t + "】" + id
}

// backoff returns the wait after the given number of consecutive failures:
// doubling from min up to max, with "equal jitter" (a random point in the
// upper half) so that stations coming back do not get every retry at once.
func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = d/2 + rand.N(d/2+1)
	return max(d, lo)
}

func severityZH(name string) string {
	s, err := rules.ParseSeverity(name)
	if err != nil {
		return ""
	}
	return s.ZH()
}

// closed reads a closed alarm with its history and hands it to OnClosed.
func (m *Manager) closed(id string) {
	n, err := parseID(id)
	if err == nil {
		var a Alarm
		if a, err = m.store.get(context.Background(), n); err == nil {
			m.cfg.OnClosed(a)
			return
		}
	}
	m.log.Error("closed alarm not read for its response times", "alarm", id, "err", err)
}
