package broker

import (
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// dropCounter counts and logs the publishes mochi drops because the
// receiving client's queue (ClientWritesPending) is full: a command to a
// device whose link has stalled, or a subscriber that does not read. mochi
// itself only counts them in its $SYS figures.
type dropCounter struct {
	mochi.HookBase
	dropped prometheus.Counter
	log     *slog.Logger // rate-limited (Start)
}

// addDropCounter adds a dropCounter to s, its counter registered with reg
// when reg is not nil.
func addDropCounter(s *mochi.Server, reg prometheus.Registerer, log *slog.Logger) error {
	d := &dropCounter{log: log, dropped: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "firewatch_broker_dropped_total",
		Help: "Publishes the embedded broker dropped because the receiving client's queue of packets to write was full.",
	})}
	if reg != nil {
		if err := reg.Register(d.dropped); err != nil {
			return err
		}
	}
	return s.AddHook(d, nil)
}

// ID names the hook.
func (*dropCounter) ID() string { return "firewatch-dropped" }

// Provides says which hook methods dropCounter implements.
func (*dropCounter) Provides(b byte) bool { return b == mochi.OnPublishDropped }

// OnPublishDropped counts and logs one dropped publish.
func (d *dropCounter) OnPublishDropped(cl *mochi.Client, pk packets.Packet) {
	d.dropped.Inc()
	d.log.Warn("broker dropped a publish: the client's queue of packets to write is full", "client", cl.ID, "topic", truncate(pk.TopicName))
}
