package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// Origin is the pipeline origin of messages taken from the stream.
const Origin pipeline.Origin = "nats"

// group is the priority group every instance pulls in; the consumer pins
// one instance per partition (PriorityPolicyPinned).
const group = "firewatch"

// Source takes the partitioned uplink from the JetStream stream and hands
// each message to the pipeline, partition by partition in stream order. It
// is a pipeline.Source.
type Source struct {
	cfg   Config
	taker pipeline.Taker
	log   *slog.Logger
	ready chan struct{}
	// callout, when set (Authorize), answers the servers' authorization
	// requests while Run runs (callout.go).
	callout *Callout

	owned    *prometheus.GaugeVec
	acquired *prometheus.GaugeVec
	handled  *prometheus.CounterVec
	takeover prometheus.Histogram

	// Partition checkpoints (state.go): the object store, the stream to
	// replay from, and their metrics.
	state        jetstream.ObjectStore
	stream       jetstream.Stream
	stateBytes   prometheus.Gauge
	stateSeconds prometheus.Histogram
	replayed     prometheus.Counter
	// restoreSeconds is what the checkpoint adds to a takeover.
	restoreSeconds prometheus.Histogram

	mu    sync.Mutex
	parts []*partition

	// crash (tests) makes Run end as a killed instance would: no release.
	crash atomic.Bool

	live atomic.Pointer[[]*partition] // parts, for Owns without the lock
	devs atomic.Pointer[devMap]       // devices by partition, following the registry (registry.go)

	// lastAcquired is when this instance last acquired a partition (Unix
	// ns): the balance holds its releases a while after (balance.go).
	lastAcquired atomic.Int64

	// catchUp (issue 15): the registry caught up before a message of a
	// device not in it is taken (catchup.go).
	catchUp *catchUp
}

// Pulling returns how many partitions this instance pulls from now (all of
// them but those it released to another instance a moment ago).
func (s *Source) Pulling() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.parts {
		p.mu.Lock()
		if p.cc != nil {
			n++
		}
		p.mu.Unlock()
	}
	return n
}

// Owned returns the partitions this instance holds now.
func (s *Source) Owned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.parts {
		if p.owned() {
			out = append(out, p.n)
		}
	}
	return out
}

// Adopter is told when this instance begins to handle the devices of a
// partition, before their messages (*pipeline.Pipeline: their liveness).
type Adopter interface {
	Adopt(ctx context.Context, devs []devices.Index) error
}

// NewSource returns a source for cfg that feeds t; when t is an Adopter it
// is told of each partition acquired. l, if not nil, maps devices to
// partitions for Owns and Adopt. reg may be nil.
func NewSource(cfg Config, t pipeline.Taker, l *devices.Ledger, reg prometheus.Registerer, log *slog.Logger) *Source {
	s := &Source{cfg: cfg, taker: t, log: log, ready: make(chan struct{}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "firewatch_cluster_partition_owned",
			Help: "1 while this instance is handling the partition's messages"}, []string{"partition"}),
		acquired: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "firewatch_cluster_partition_acquired_unixms",
			Help: "when this instance last began handling the partition (Unix ms of its first message handled)"}, []string{"partition"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_cluster_messages_total",
			Help: "messages handled per partition"}, []string{"partition"}),
		takeover: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "firewatch_cluster_takeover_wait_seconds",
			Help:    "time a newly acquired partition waited for the previous owner's unacknowledged messages",
			Buckets: []float64{0.01, 0.1, 0.5, 1, 2, 3, 5, 10, 30}}),
	}
	s.stateBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "firewatch_cluster_state_bytes",
		Help: "size of the last partition state checkpoint written (bytes)"})
	s.stateSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "firewatch_cluster_state_write_seconds",
		Help:    "time to write one partition's state checkpoint to the object store (the writer goroutine)",
		Buckets: []float64{0.001, 0.005, 0.02, 0.1, 0.5, 2}})
	s.replayed = prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_cluster_replayed_total",
		Help: "messages replayed through the rules after a partition's checkpoint when acquiring it"})
	s.restoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "firewatch_cluster_state_restore_seconds",
		Help:    "time to read a newly acquired partition's state checkpoint, restore it and replay the messages handled since",
		Buckets: []float64{0.005, 0.02, 0.1, 0.5, 2, 10}})
	if reg != nil {
		reg.MustRegister(s.owned, s.acquired, s.handled, s.takeover, s.stateBytes, s.stateSeconds, s.replayed, s.restoreSeconds)
	}
	if l != nil {
		s.devs.Store(newDevMap(l, cfg.Partitions)) // registry.go
	}
	return s
}

// Owns reports whether this instance handles device d now: whether it
// holds the pin of d's partition (pipeline.Options.Owns).
func (s *Source) Owns(d devices.Index) bool {
	n, ok := s.devs.Load().partitionOf(d)
	return ok && s.ownsPartition(n)
}

// Ready is closed once the stream and every partition's consumer exist and
// this instance pulls from all of them.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Run connects to NATS, ensures the stream and the consumers, and consumes
// until ctx ends. Messages not yet handled stay unacknowledged in the
// stream for the next owner.
func (s *Source) Run(ctx context.Context) error {
	name := s.cfg.instance()
	nc, err := nats.Connect(s.cfg.URLs, nats.Name("firewatch "+name),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { s.log.Info("NATS reconnected", "server", c.ConnectedUrl()) }),
		s.cfg.userInfo())
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	if s.callout != nil {
		go func() {
			if err := s.callout.Run(ctx); err != nil {
				s.log.Error("auth callout stopped: devices cannot connect", "err", err)
			}
		}()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// The stream takes the uplink from the servers' own MQTT message
	// stream through a durable consumer (mqttSource): see streamConfig.
	if err := retry(ctx, s.log, "stream "+MQTTStream, func(c context.Context) error {
		return s.ensureMQTTStream(c, js)
	}); err != nil {
		return err
	}
	if err := retry(ctx, s.log, "the source consumer on "+MQTTStream, func(c context.Context) error {
		_, err := js.CreateOrUpdatePushConsumer(c, MQTTStream, s.sourceConsumerConfig())
		return err
	}); err != nil {
		return err
	}
	var stream jetstream.Stream
	if err := retry(ctx, s.log, "stream "+s.cfg.Stream, func(c context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(c, s.streamConfig())
		return err
	}); err != nil {
		return err
	}
	kv, err := s.instances(ctx, js)
	if err != nil {
		return err
	}
	s.stream = stream
	if err := s.ensureState(ctx, js); err != nil { // state.go
		return err
	}
	parts := make([]*partition, s.cfg.Partitions)
	for n := range parts {
		var cons jetstream.Consumer
		if err := retry(ctx, s.log, "consumer of partition "+strconv.Itoa(n), func(c context.Context) (err error) {
			cons, err = stream.CreateOrUpdateConsumer(c, s.consumerConfig(n))
			return err
		}); err != nil {
			return err
		}
		parts[n] = s.newPartition(n, cons)
	}
	s.mu.Lock()
	s.parts = parts
	s.mu.Unlock()
	s.live.Store(&parts)
	var wg sync.WaitGroup
	for _, p := range parts {
		p.startWorkers(ctx, &wg)
	}
	stopAll := func() {
		// An orderly stop hands each owned partition over at once
		// (release: unpin) instead of making a survivor wait out the pin.
		var rel sync.WaitGroup
		for _, p := range parts {
			rel.Go(func() { p.release(stream) })
		}
		rel.Wait()
		for _, p := range parts {
			p.stop()
		}
		wg.Wait()
	}
	for _, p := range parts {
		if err := p.consume(); err != nil {
			stopAll()
			return err
		}
	}
	s.log.Info("cluster mode: consuming", "instance", name, "stream", s.cfg.Stream, "partitions", s.cfg.Partitions,
		"server", nc.ConnectedUrl())
	close(s.ready)
	balanced := make(chan struct{})
	go func() {
		defer close(balanced)
		s.balance(ctx, kv, stream, name, parts)
	}()
	<-ctx.Done()
	<-balanced
	if s.crash.Load() {
		// A test's stand-in for kill -9: no release, no checkpoint; what
		// is unacknowledged comes back to the next owner after ack_wait.
		for _, p := range parts {
			p.stop()
		}
		wg.Wait()
		return nil
	}
	stopAll()
	return nil
}

// MQTTStream is the stream in which nats-server stores every QoS 1 and 2
// message an MQTT client publishes, under $MQTT.msgs.{subject}, before it
// sends the PUBACK (interest retention, replicated: mqtt.stream_replicas).
const MQTTStream = "$MQTT_msgs"

// mqttPrefix is the subject prefix of MQTTStream.
const mqttPrefix = "$MQTT.msgs."

// ensureMQTTStream creates MQTTStream as nats-server would when the first
// MQTT client connects (it uses one that exists), so that cluster mode can
// start before any device has connected.
func (s *Source) ensureMQTTStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, MQTTStream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      MQTTStream,
		Subjects:  []string{mqttPrefix + ">"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.InterestPolicy,
		Replicas:  s.cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil // an MQTT client came first
	}
	return err
}

// sourceConsumer is the durable consumer on MQTTStream through which the
// uplink stream sources the partitioned uplink.
func (s *Source) sourceConsumer() string { return s.cfg.Stream + "_SOURCE" }

func (s *Source) sourceDeliver() string { return "_FW.source." + s.cfg.Stream }

// sourceConsumerConfig is the durable consumer on MQTTStream of the
// partitioned uplink: acknowledged by flow control once the uplink stream
// stored what it delivered, so that MQTTStream (interest retention) keeps
// every PUBACKed message until the uplink stream has it.
func (s *Source) sourceConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        s.sourceConsumer(),
		Description:    "firewatch: the partitioned uplink, sourced into " + s.cfg.Stream,
		DeliverSubject: s.sourceDeliver(),
		FilterSubject:  mqttPrefix + SubjectPrefix + ".>",
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckFlowControlPolicy,
		FlowControl:    true,
		IdleHeartbeat:  time.Second,
		Replicas:       s.cfg.Replicas,
	}
}

// streamConfig is the uplink stream. Its messages come from MQTTStream,
// not from the uplink subjects themselves: nats-server acknowledges a
// device's QoS 1 PUBLISH once the message is stored in MQTTStream, not in
// a stream that captures its subject, so a stream capturing fwp.> could
// miss messages the devices were told are safe (the uplink stream's leader
// killed, or electing, when they arrive). Durable sourcing (nats-server
// 2.14) copies them in order and acknowledges them on MQTTStream only once
// stored here. Uplink over plain NATS or MQTT QoS 0 is not taken.
func (s *Source) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "firewatch uplink, partitioned by device or gateway (fwp.{partition}.fw.v1.up...)",
		Sources: []*jetstream.StreamSource{{
			Name:     MQTTStream,
			Consumer: &jetstream.StreamConsumerSource{Name: s.sourceConsumer(), DeliverSubject: s.sourceDeliver()},
			SubjectTransforms: []jetstream.SubjectTransformConfig{{
				Source: mqttPrefix + SubjectPrefix + ".>", Destination: SubjectPrefix + ".>",
			}},
		}},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   s.cfg.Replicas,
		MaxAge:     s.cfg.MaxAge,
		MaxBytes:   int64(s.cfg.MaxMB) << 20,
		Discard:    jetstream.DiscardOld,
		Duplicates: 2 * time.Minute,
	}
}

func (s *Source) consumerConfig(n int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        "fw-p" + strconv.Itoa(n),
		Description:    "firewatch partition " + strconv.Itoa(n) + ", pinned to one instance at a time",
		FilterSubject:  partitionFilter(n),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  s.cfg.MaxAckPending,
		MaxWaiting:     512,
		Replicas:       s.cfg.Replicas,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{group},
		PinnedTTL:      s.cfg.PinnedTTL,
	}
}

// retry calls f until it succeeds or ctx ends: at start the cluster may
// still be electing its leaders.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(c)
		cancel()
		if err == nil {
			return nil
		}
		if attempt%10 == 0 {
			log.Warn("cluster mode: retrying", "what", what, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// partition is one partition's consumer on this instance: the NATS client
// hands its messages to a channel, one goroutine takes them into the
// pipeline in order.
type partition struct {
	s     *Source
	n     int
	label string
	cons  jetstream.Consumer
	ch    chan jetstream.Msg
	lost  chan struct{} // a signal: the server gave the pin to another instance
	quit  chan struct{}
	// releasing: this instance is giving the partition up; what still
	// arrives is handed back.
	releasing atomic.Bool
	pin       atomic.Pointer[string] // the pin this instance works under; nil or "": not the owner

	mu       sync.Mutex
	cc       jetstream.ConsumeContext
	inflight map[uint64]inflight // stream sequence → taken, not yet acknowledged

	// Checkpoints (state.go). On the run goroutine: the highest stream
	// sequence taken, the last sequence the consumer had delivered when
	// the partition was acquired, the encoder's buffers. saved is the
	// sequence of the last checkpoint written; ckptReq asks for one now
	// (release); writes go to the writer goroutine, the newest first.
	lastSeq, delivered uint64
	// handledUpTo is the sequence of the checkpoint restored at the
	// acquisition: a message at or before it is the previous owner's,
	// delivered again, whose effect the checkpoint holds (take).
	handledUpTo uint64
	// replayed are the messages replayed at the acquisition (at most
	// delivered): one delivered again after all is taken as handledUpTo's.
	replayed map[uint64]bool
	pstate   pipeline.PartitionState
	saved    atomic.Uint64
	ckptReq  chan chan struct{}
	writes   chan stateWrite
}

// owned reports whether this instance holds the partition's pin.
func (p *partition) owned() bool {
	pin := p.pin.Load()
	return pin != nil && *pin != ""
}

func (p *partition) setPin(pin string) { p.pin.Store(&pin) }

type inflight struct {
	msg   jetstream.Msg
	since time.Time
}

// pullBatch is how many messages a partition asks for at a time.
const pullBatch = 256

func (s *Source) newPartition(n int, cons jetstream.Consumer) *partition {
	return &partition{s: s, n: n, label: strconv.Itoa(n), cons: cons,
		ch: make(chan jetstream.Msg, 2*pullBatch), lost: make(chan struct{}, 1), quit: make(chan struct{}),
		inflight: map[uint64]inflight{}, ckptReq: make(chan chan struct{}), writes: make(chan stateWrite, 1)}
}

// startWorkers starts the goroutine that takes the partition's messages
// and the one that keeps them alive while they are handled.
func (p *partition) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() { defer wg.Done(); p.run(ctx) }()
	go func() { defer wg.Done(); p.keepAlive() }()
	if p.s.state != nil {
		wg.Go(p.writeStates) // state.go
	}
}

// consume starts pulling the partition's messages.
func (p *partition) consume() error {
	p.releasing.Store(false)
	cc, err := p.cons.Consume(func(m jetstream.Msg) {
		select {
		case p.ch <- m:
		case <-p.quit:
		}
	},
		jetstream.PullPriorityGroup(group),
		jetstream.PullMaxMessages(pullBatch),
		// A pull request lives 1 s: the pinned owner renews its pin at least
		// that often, well within pinned_ttl.
		jetstream.PullExpiry(time.Second),
		jetstream.PullHeartbeat(500*time.Millisecond),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrPinIDMismatch) {
				select {
				case p.lost <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		return fmt.Errorf("partition %d: %w", p.n, err)
	}
	p.mu.Lock()
	p.cc = cc
	p.mu.Unlock()
	return nil
}

// release gives the partition up: no more pulls, what is buffered handed
// back, the acknowledgements of what is being handled awaited (at most
// ack_wait), and then, if this instance held the pin, the pin released so
// that another instance takes the partition at once.
func (p *partition) release(stream jetstream.Stream) {
	p.releasing.Store(true)
	p.mu.Lock()
	cc := p.cc
	p.cc = nil
	p.mu.Unlock()
	if cc != nil {
		// Drain, not Stop: what the server already sent comes to the
		// worker, which hands it back at once; dropped here, it would come
		// back to the next owner only after ack_wait.
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-time.After(2 * time.Second):
			cc.Stop()
		}
	}
	select {
	case p.lost <- struct{}{}: // the worker hands back what it has
	default:
	}
	owned := p.owned()
	deadline := time.Now().Add(p.s.cfg.AckWait)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		n := len(p.inflight)
		p.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the acknowledgements, which have no signal of their own
	}
	if !owned {
		return
	}
	// The state up to the last message handled, for the next owner
	// (state.go): written by the run goroutine, between messages.
	done := make(chan struct{})
	select {
	case p.ckptReq <- done:
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	case <-p.quit:
	case <-time.After(5 * time.Second):
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stream.UnpinConsumer(ctx, "fw-p"+p.label, group); err != nil && !errors.Is(err, context.Canceled) {
		p.s.log.Warn("cluster mode: partition not unpinned; another instance takes it when the pin expires",
			"partition", p.n, "err", err)
		return
	}
	p.s.log.Info("cluster mode: partition released", "partition", p.n)
}

func (p *partition) stop() {
	p.mu.Lock()
	cc := p.cc
	p.cc = nil
	p.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
}

// run takes the partition's messages into the pipeline one at a time.
//
// Every message carries the pin of the instance it was delivered to
// (Nats-Pin-Id). A message with a pin other than the one this instance
// works under starts an acquisition (acquire). When the server gives the
// pin to another instance (this instance's next pull fails with a pin
// mismatch), the messages still buffered here are handed back (Nak) for
// the new owner instead of being handled by two instances at once.
func (p *partition) run(ctx context.Context) {
	pin := ""
	var ckpt <-chan time.Time
	if p.s.state != nil {
		t := time.NewTicker(p.s.cfg.StateInterval)
		defer t.Stop()
		ckpt = t.C
	}
	for {
		var m jetstream.Msg
		select {
		case <-p.quit:
			return
		case <-ckpt:
			if pin != "" {
				p.checkpoint(nil) // state.go
			}
			continue
		case done := <-p.ckptReq:
			p.checkpoint(done)
			continue
		case <-p.lost:
			if pin != "" && !p.releasing.Load() {
				p.s.log.Warn("cluster mode: partition taken over by another instance", "partition", p.n)
			}
			pin = ""
			p.setPin("")
			p.s.owned.WithLabelValues(p.label).Set(0)
			p.handBack()
			continue
		case m = <-p.ch:
		}
		if p.releasing.Load() {
			m.Nak() // given up: for the next owner
			continue
		}
		if mp := m.Headers().Get(pinHeader); mp == pin && pin != "" {
			p.take(m)
			continue
		}
		held, newPin, ok := p.acquire(ctx, m)
		if !ok {
			return
		}
		if newPin == "" {
			continue // not the owner after all: handed back
		}
		// Before the pin is ours: the previous owner's state of the
		// partition's devices, from its checkpoint and the messages it
		// handled since (state.go); without one, the adopter re-arms the
		// devices' liveness while Owns is still false for them.
		commit := p.resume(ctx, held, p.delivered)
		if a, ok := p.s.taker.(Adopter); ok && p.s.devs.Load() != nil && commit == nil {
			p.lastSeq, p.handledUpTo, p.replayed = 0, 0, nil
			p.saved.Store(0)
			if err := a.Adopt(ctx, p.s.devs.Load().devicesOf(p.n)); err != nil {
				p.s.log.Warn("cluster mode: open offline alarms of the partition not restored; they clear by hand",
					"partition", p.n, "err", err)
			}
		}
		pin = newPin
		p.setPin(pin)
		if commit != nil {
			commit() // the devices' liveness, now that Owns is true for them
		}
		p.s.owned.WithLabelValues(p.label).Set(1)
		p.s.acquired.WithLabelValues(p.label).Set(float64(time.Now().UnixMilli()))
		p.s.lastAcquired.Store(time.Now().UnixNano())
		p.s.log.Info("cluster mode: partition acquired", "partition", p.n, "held", len(held))
		for _, h := range held {
			p.take(h)
		}
	}
}

// pinHeader carries the pin a message was delivered under.
const pinHeader = "Nats-Pin-Id"

// handBack returns every buffered message to the stream at once.
func (p *partition) handBack() {
	for {
		select {
		case m := <-p.ch:
			m.Nak()
		default:
			return
		}
	}
}

// acquire is called with the first message delivered under a new pin. The
// previous owner's unacknowledged messages come back (after ack_wait, or at
// once when it handed them back) later than the new messages the consumer
// delivers at once; so acquire holds what arrives until every message the
// consumer counts as pending is here (the previous owner acknowledged or
// returned the rest), and returns them in stream order with the pin. When
// the consumer's pin is not this message's (another instance owns the
// partition), it hands everything back and returns pin "". ok is false
// when the source stops.
func (p *partition) acquire(ctx context.Context, first jetstream.Msg) (msgs []jetstream.Msg, pin string, ok bool) {
	start := time.Now()
	pin = first.Headers().Get(pinHeader)
	p.delivered = 0
	held := map[uint64]jetstream.Msg{}
	add := func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			held[md.Sequence.Stream] = m
		} else {
			m.Term() // not a JetStream message: cannot be ordered or acknowledged
		}
	}
	add(first)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastKeep := time.Now()
	// Beyond this the previous owner's messages should long have come back;
	// rather than wait for ever (a consumer state we do not understand),
	// go on in the order we have.
	giveUp := start.Add(2*p.s.cfg.AckWait + p.s.cfg.PinnedTTL + 5*time.Second)
	for {
	drain:
		for {
			select {
			case m := <-p.ch:
				add(m)
			default:
				break drain
			}
		}
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := p.cons.Info(c)
		cancel()
		if err == nil {
			current := ""
			for _, g := range info.PriorityGroups {
				if g.Group == group {
					current = g.PinnedClientID
				}
			}
			if current != "" && current != pin {
				for _, m := range held {
					m.Nak()
				}
				p.handBack()
				return nil, "", true
			}
			p.delivered = info.Delivered.Stream
			if info.NumAckPending <= len(held) {
				break
			}
		}
		if time.Now().After(giveUp) {
			p.s.log.Warn("cluster mode: the previous owner's messages did not come back; going on", "partition", p.n,
				"held", len(held))
			break
		}
		if time.Since(lastKeep) > p.s.cfg.AckWait/3 {
			for _, m := range held {
				m.InProgress() // ours stay ours while we wait
			}
			lastKeep = time.Now()
		}
		select {
		case <-p.quit:
			return nil, "", false
		case <-p.lost:
			for _, m := range held {
				m.Nak()
			}
			p.handBack()
			return nil, "", true
		case m := <-p.ch:
			add(m)
		case <-tick.C:
		}
	}
	seqs := make([]uint64, 0, len(held))
	for q := range held {
		seqs = append(seqs, q)
	}
	slices.Sort(seqs)
	msgs = make([]jetstream.Msg, len(seqs))
	for i, q := range seqs {
		msgs[i] = held[q]
	}
	p.s.takeover.Observe(time.Since(start).Seconds())
	return msgs, pin, true
}

// take hands m to the pipeline. Its acknowledgement goes to the stream when
// the pipeline calls Ack.
func (p *partition) take(m jetstream.Msg) {
	topic, _, ok := TopicOf(m.Subject())
	if !ok {
		p.s.log.Warn("cluster mode: a message on an unexpected subject; dropped", "subject", m.Subject())
		m.Term()
		return
	}
	md, err := m.Metadata()
	if err != nil {
		m.Term()
		return
	}
	seq := md.Sequence.Stream
	p.mu.Lock()
	p.inflight[seq] = inflight{msg: m, since: time.Now()}
	p.mu.Unlock()
	// Until issue 15's durable acknowledgement (helper i15a: Message.Ack
	// called once the readings are in InfluxDB or the spool) is merged, the
	// pipeline calls Ack when Take returns (readings in the writer's batch,
	// alarms committed), as for the external MQTT broker.
	origin, relayed := forwardedAs(m.Headers()) // forward.go: NB-IoT and GB/T 26875.3 forwarded by any instance
	msg := pipeline.Message{Origin: origin, Topic: topic, Payload: m.Data(), Relayed: relayed, Recv: md.Timestamp.UnixMilli(), Ack: func() {
		p.mu.Lock()
		delete(p.inflight, seq)
		p.mu.Unlock()
		m.Ack()
	}}
	p.knowTopic(topic, md.Timestamp) // catchup.go: an unknown device's message waits for the registry
	if seq <= p.handledUpTo || (seq <= p.delivered && p.replayed[seq]) {
		// Handled by the previous owner, not acknowledged, and held by
		// the checkpoint restored or replayed since (state.go): its
		// readings again only.
		p.s.taker.(Resumer).TakeHandled(msg, md.Timestamp.UnixMilli())
	} else {
		p.s.taker.Take(msg)
	}
	p.lastSeq = max(p.lastSeq, seq) // taken: its state is in the rule engine (state.go)
	p.s.handled.WithLabelValues(p.label).Inc()
}

// keepAlive tells the server that messages taken and not yet acknowledged
// are still being worked on, so that a slow write does not make the stream
// deliver them again (to this or another instance) while they are handled.
func (p *partition) keepAlive() {
	every := p.s.cfg.AckWait / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-tick.C:
		}
		var old []jetstream.Msg
		p.mu.Lock()
		for _, f := range p.inflight {
			if time.Since(f.since) >= every {
				old = append(old, f.msg)
			}
		}
		p.mu.Unlock()
		for _, m := range old {
			m.InProgress()
		}
	}
}
