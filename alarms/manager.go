package alarms

import (
	"context"
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
	// SMS, if set, is the SMS/voice gateway that tells a device's
	// responsible person of its alarms (sms.go).
	SMS *SMSGateway
	// Centre, if set, is the 中心级 platform told of NB-IoT detectors'
	// alarms and faults (delivery_centre.go).
	Centre *Centre
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
	// issued is when the push was queued: the link's expiry counts from it,
	// so that every delivery attempt of a push carries the same body.
	ResponderLink func(alarmID, station string, issued time.Time) string
	// Inspections, if set, gives the digests the 查岗 考核 figures of the UITDs within a grid over a period
	// (digest_inspections.go; cmd/firewatch wires the GB/T 26875.3 endpoint).
	Inspections func(grid string, from, to time.Time) []InspectionFigure
	// Lease, on PostgreSQL shared by several instances (shared.go), is how
	// long an instance's claim on a push or on the periodic duties lasts
	// unless renewed: how soon another instance takes over from one that
	// died (default PushTimeout + 5s; it must exceed PushTimeout).
	Lease time.Duration
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
	// live, if set, is the live registry (registry.go): led reads it.
	live liveLedger
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
	// lostFrom is the count of done events before the first batch of this
	// Run with an event not stored, plus one (0: none lost); see Sync.
	lostFrom atomic.Uint64
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
	// instance names this process in the PostgreSQL leases; leadUntil is
	// when its duty lease lapses (shared.go).
	instance  string
	leadMu    sync.Mutex
	leadUntil time.Time
	// onDuty, if set (tests), is called at each periodic check this
	// instance runs.
	onDuty func()
	// storeFailures counts failed commits of rule events.
	storeFailures atomic.Uint64
}

// NewManager opens (creating and migrating if needed) the alarm store at
// cfg.DBPath.
func NewManager(cfg Config, ledger *devices.Ledger) (*Manager, error) {
	if ledger == nil {
		return nil, errors.New("alarms: ledger is nil")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}
	m := &Manager{
		cfg:         cfg,
		ledger:      ledger,
		events:      make(chan rules.Event, cfg.QueueSize),
		client:      newPushClient(),
		log:         cfg.Logger,
		grace:       drainGrace,
		auth:        newAuth(cfg.Tokens),
		commandWake: make(chan struct{}, 1),
		stopping:    make(chan struct{}),
		now:         time.Now,
		instance:    newInstanceID(),
	}
	if cfg.Publish != nil {
		m.console = make(chan Alarm, consoleQueue)
	}
	m.progress = sync.NewCond(&m.progressMu)
	s, err := openStore(cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("alarms: %w", err)
	}
	m.store = s
	pending, err := m.repointOutbox()
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

// setDefaults checks c and fills in the defaults of what it leaves zero.
func (c *Config) setDefaults() error {
	if c.DBPath == "" {
		return errors.New("DBPath is empty")
	}
	if len(c.Secret) == 0 {
		return errors.New("Secret is empty: pushes must be signed")
	}
	positive(&c.RetryMin, DefaultRetryMin)
	positive(&c.RetryMax, DefaultRetryMax)
	if c.RetryMax < c.RetryMin {
		return fmt.Errorf("RetryMax %s is below RetryMin %s", c.RetryMax, c.RetryMin)
	}
	positive(&c.PushTimeout, DefaultPushTimeout)
	positive(&c.Lease, c.PushTimeout+DefaultLeaseMargin)
	if c.Lease <= c.PushTimeout {
		return fmt.Errorf("Lease %s must exceed PushTimeout %s", c.Lease, c.PushTimeout)
	}
	positive(&c.RespondWithin, DefaultRespondWithin)
	positive(&c.EscalationCheck, DefaultEscalationCheck)
	if c.StormWindow == 0 { // negative: grouping off
		c.StormWindow = DefaultStormWindow
	}
	positive(&c.StormHold, DefaultStormHold)
	if c.FlapCount == 0 {
		c.FlapCount = DefaultFlapCount
	}
	positive(&c.FlapWindow, DefaultFlapWindow)
	positive(&c.FlapStable, DefaultFlapStable)
	positive(&c.CommandRetry, DefaultCommandRetry)
	positive(&c.QueueSize, DefaultQueueSize)
	if c.Digest == "" {
		c.Digest = DigestMonthly
	}
	if !ValidDigest(c.Digest) {
		return fmt.Errorf("digest schedule %q: want daily, weekly, monthly or off", c.Digest)
	}
	positive(&c.DigestAt, DefaultDigestAt)
	positive(&c.DigestCheck, DefaultDigestCheck)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// positive sets *v to def unless it is above zero.
func positive[T time.Duration | int](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// newPushClient is the HTTP client of the pushes.
func newPushClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport: tr,
		// A redirect of a POST would turn into a GET; count it as a failure
		// so the operator fixes the endpoint.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// repointOutbox sends the pending pushes to the endpoints the ledger and
// configuration name now (store.repoint) and returns how many are pending.
func (m *Manager) repointOutbox() (pending int, err error) {
	moved, err := m.store.repoint(context.Background(), func(id string) string {
		if st := m.led().Station(id); st != nil {
			return st.Endpoint
		}
		return ""
	}, m.cfg.BrigadeEndpoint)
	if err != nil {
		return 0, err
	}
	if moved > 0 {
		m.log.Info("pending pushes sent to the endpoints now configured", "pushes", moved)
	}
	_, pending, err = m.store.pendingEndpoints(context.Background())
	return pending, err
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
//
// It returns ErrNotStored when an event submitted before the call may not
// be stored: given up at shutdown (Stopping, the drain grace: logged as
// LOST), or still queued when Run returned. The message that caused it
// must then not be acknowledged, so that its sender sends it again to the
// next run. It does not allocate.
func (m *Manager) Sync() error {
	target := m.submitted.Load()
	if m.done.Load() < target {
		m.progressMu.Lock()
		for m.done.Load() < target && !m.stopped {
			m.progress.Wait()
		}
		m.progressMu.Unlock()
		if m.done.Load() < target {
			return ErrNotStored
		}
	}
	// lostFrom is set before done passes the batch it counts (finished).
	if f := m.lostFrom.Load(); f != 0 && f <= target {
		return ErrNotStored
	}
	return nil
}

// ErrNotStored is Sync's report that events may not be stored.
var ErrNotStored = errors.New("alarms: events not stored (store failing at shutdown)")

// Stopping tells the manager that shutdown has begun, before the sources
// stop: from then on a failing store is retried for at most the drain grace
// (10 s), and then the events are logged as LOST, also those a caller is
// waiting for in Sync. Without it the MQTT handler, waiting in Sync while
// holding its source, would keep the source from stopping, and so Run's
// context from ending, for as long as the store fails.
func (m *Manager) Stopping() {
	m.stoppingOnce.Do(func() { close(m.stopping) })
}

// finished records that Run is done with n events, lost of them not
// stored.
func (m *Manager) finished(n, lost int) {
	if lost > 0 {
		m.lostFrom.CompareAndSwap(0, m.done.Load()+1) // only Run adds to done
	}
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
	m.lostFrom.Store(0) // what an earlier Run lost, its Syncs reported
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
	if m.store.pg {
		leaseDone := make(chan struct{})
		go func() {
			defer close(leaseDone)
			m.leaseLoop(ctx, ob)
		}()
		defer func() { <-leaseDone }()
	}
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
			m.finished(len(batch), lost)
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
		n := m.commit(giveUp, batch)
		lost += n
		m.finished(len(batch), n)
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
