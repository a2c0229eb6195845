package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/pipeline"
)

// Forwarding (issue 15): NB-IoT platform pushes and GB/T 26875.3 frames
// reach whichever instance the platform or the UITD connects to, not the
// owner of the device's partition. In cluster mode such an instance does
// not evaluate them itself: it publishes each v1 message into the servers'
// MQTT message stream (MQTTStream) under the subject a device's own MQTT
// QoS 1 PUBLISH of the same topic has there,
// $MQTT.msgs.fwp.{PartitionOf(id,P)}.fw.v1.up.…, and waits for the
// stream's acknowledgement (PubAck: stored on a quorum of the replicas).
// From there the message takes the device's path: the durable sourcing
// copies it into the uplink stream in order with the device's MQTT
// messages, and the partition's owner handles it. The sender (the
// platform's push, the UITD's frame) is answered only after the PubAck, as
// a device's PUBACK is; a failed publish is refused (503, no 确认) so that
// the sender sends it again.
//
// What the pipeline must know of a message beyond its topic and payload
// travels in NATS headers (an MQTT 3.1.1 client cannot set headers, so a
// device cannot forge them): the origin (nbiot, gb26875) and whether an
// intermediary relayed it (pipeline.Message.Relayed: liveness at the
// device's time, not now).

// Headers of a forwarded message.
const (
	// OriginHeader names the pipeline.Origin of a forwarded message.
	OriginHeader = "Fw-Origin"
	// RelayedHeader is "1" on a message an intermediary relayed
	// (pipeline.Message.Relayed).
	RelayedHeader = "Fw-Relayed"
)

// forwardTimeout bounds one Forward: a PubAck is retried (same message id,
// so that the stream stores it once) until then, through a leader election
// of the stream; beyond it the sender is refused and sends it again.
const forwardTimeout = 5 * time.Second

// ForwardSubject returns the subject of the MQTT message stream under which
// the v1 uplink topic is stored: the account's mapping (ServerMappings)
// applied by hand, a device's topic (fw/v1/up/{id}/{kind}) in the
// partition of its id, a gateway's or a station's (fw/v1/up/gw/{id}/{kind})
// in that of the second level; a '.' of a level is "//" (nats-server's MQTT
// conversion). An error names a topic that is not an uplink topic or
// cannot be a subject.
func ForwardSubject(topic string, p int) (string, error) {
	rest, ok := strings.CutPrefix(topic, "fw/v1/up/")
	if !ok {
		return "", fmt.Errorf("cluster: forward: %q is not an uplink topic (fw/v1/up/...)", topic)
	}
	levels := strings.Split(rest, "/")
	if len(levels) != 2 && len(levels) != 3 {
		return "", fmt.Errorf("cluster: forward: %q has %d levels after fw/v1/up/, want 2 or 3", topic, len(levels))
	}
	for _, l := range levels {
		if l == "" || strings.ContainsAny(l, " \t\r\n*>") {
			return "", fmt.Errorf("cluster: forward: %q: level %q cannot be a subject token", topic, l)
		}
	}
	id := levels[0]
	if len(levels) == 3 {
		id = levels[1]
	}
	var b strings.Builder
	b.Grow(len(mqttPrefix) + len(SubjectPrefix) + len(topic) + 16)
	b.WriteString(mqttPrefix)
	b.WriteString(SubjectPrefix)
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(PartitionOf(id, p)))
	b.WriteString(".fw.v1.up")
	for _, l := range levels {
		b.WriteByte('.')
		b.WriteString(strings.ReplaceAll(l, ".", "//"))
	}
	return b.String(), nil
}

// Forwarder publishes messages received outside the MQTT uplink into the
// device's partition (see above). It has a NATS connection of its own.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	idBase  string // this process's message id prefix
	n       atomic.Uint64
	total   *prometheus.CounterVec
	lastLog atomic.Int64 // Unix ms of the last failure logged
}

// NewForwarder connects to the cluster (in the background: until connected,
// Forward fails). reg may be nil.
func NewForwarder(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Forwarder, error) {
	f := &Forwarder{cfg: cfg, log: log, idBase: "fwf-" + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix) + "-",
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_cluster_forwarded_total",
			Help: "messages received outside the MQTT uplink (NB-IoT pushes, GB/T 26875.3 frames) put into their device's partition of the stream, by origin and result (ok, failed: refused to the sender, which sends them again)"},
			[]string{"origin", "result"}),
	}
	if reg != nil {
		reg.MustRegister(f.total)
	}
	nc, err := nats.Connect(cfg.URLs, nats.Name("firewatch "+cfg.instance()+" forward"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.PingInterval(2*time.Second), nats.MaxPingsOutstanding(2),
		// No buffering while disconnected: a publish that cannot go out
		// fails at once and the sender is refused, instead of the message
		// going out later after the sender was refused and sent it again.
		nats.ReconnectBufSize(-1),
		cfg.userInfo())
	if err != nil {
		return nil, fmt.Errorf("cluster: forward: nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: forward: jetstream: %w", err)
	}
	f.nc, f.js = nc, js
	return f, nil
}

// Close closes the connection.
func (f *Forwarder) Close() { f.nc.Close() }

// Forward puts the v1 message (topic, payload) into its device's partition
// and returns once the stream acknowledged it; an error when it did not
// within forwardTimeout (the message may then be refused to its sender).
// relayed marks a message an intermediary relayed (pipeline.Message.Relayed).
func (f *Forwarder) Forward(origin pipeline.Origin, relayed bool, topic string, payload []byte) error {
	err := f.forward(origin, relayed, topic, payload)
	result := "ok"
	if err != nil {
		result = "failed"
		now := time.Now().UnixMilli()
		if last := f.lastLog.Load(); now-last >= 5_000 && f.lastLog.CompareAndSwap(last, now) {
			f.log.Warn("cluster mode: message not put into its partition; refused to its sender, which sends it again (such messages at most every 5 s)",
				"origin", string(origin), "topic", topic, "err", err)
		}
	}
	f.total.WithLabelValues(string(origin), result).Inc()
	return err
}

func (f *Forwarder) forward(origin pipeline.Origin, relayed bool, topic string, payload []byte) error {
	subj, err := ForwardSubject(topic, f.cfg.Partitions)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subj)
	m.Data = payload
	m.Header.Set(OriginHeader, string(origin))
	if relayed {
		m.Header.Set(RelayedHeader, "1")
	}
	// One id for every attempt: an attempt whose PubAck was lost and the
	// next are stored once (the stream's duplicate window).
	id := f.idBase + strconv.FormatUint(f.n.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
	defer cancel()
	for {
		c, cancelTry := context.WithTimeout(ctx, forwardTimeout/2)
		_, err = f.js.PublishMsg(c, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(MQTTStream))
		cancelTry()
		if err == nil {
			return nil
		}
		// Every failure is retried until the deadline: a stream electing
		// its leader answers with an API error too.
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: forward %s: %w", topic, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Handler returns the function that forwards messages of origin (relayed
// as Forward's relayed), for the NB-IoT bridge and the GB/T 26875.3 server.
func (f *Forwarder) Handler(origin pipeline.Origin, relayed bool) func(topic string, payload []byte) error {
	return func(topic string, payload []byte) error { return f.Forward(origin, relayed, topic, payload) }
}

// forwardedAs returns the origin and the relayed mark of a message taken
// from the stream: those a Forwarder put in its headers, or Origin and
// false for a device's MQTT message.
func forwardedAs(h nats.Header) (pipeline.Origin, bool) {
	o := h.Get(OriginHeader)
	if o == "" {
		return Origin, false
	}
	return pipeline.Origin(o), h.Get(RelayedHeader) == "1"
}
