package alarms

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/rules"
)

type metrics struct {
	raised      *prometheus.CounterVec
	cleared     *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	pending     prometheus.Gauge
	queue       prometheus.GaugeFunc
	pushSeconds prometheus.Histogram
	rejected    prometheus.Counter
	escalations prometheus.Counter
	// consoleDropped counts alarm updates the MQTT console fan-out lost.
	consoleDropped prometheus.Counter
	digests        *prometheus.CounterVec
}

func newMetrics(queueLen func() float64) *metrics {
	m := &metrics{
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_alarms_raised_total",
			Help: "Alarms raised, by severity.",
		}, []string{"severity"}),
		cleared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_alarms_cleared_total",
			Help: "Alarms cleared automatically, by severity.",
		}, []string{"severity"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_alarms_pushes_total",
			Help: "Dispatch webhook attempts, by result (sent: 2xx; parked: refused for good, set aside; failed: anything else, retried).",
		}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "firewatch_alarms_outbox_pending",
			Help: "Pushes in the outbox not yet delivered.",
		}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "firewatch_alarms_queue_length",
			Help: "Rule events queued between the rules engine and the alarm manager.",
		}, queueLen),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "firewatch_alarms_push_seconds",
			Help:    "Duration of dispatch webhook attempts.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_alarms_events_rejected_total",
			Help: "Rule events that no alarm could be made of (unknown device or rule); a bug upstream.",
		}),
		consoleDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_alarms_console_dropped_total",
			Help: "Alarm updates not published to the MQTT console topics fw/v1/alarms/... (queue full or broker error).",
		}),
		escalations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_alarms_escalations_total",
			Help: "Alarms escalated because nobody acknowledged them in time.",
		}),
		digests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_alarms_digests_total",
			Help: "Scheduled digests (预警提示) to town and county robots, by result (sent, failed: retried at the next check).",
		}, []string{"result"}),
	}
	// Expose every series from the start, so that rate() and alerts work
	// before the first alarm.
	for s := rules.SeverityOffline; s <= rules.SeverityFire; s++ {
		m.raised.WithLabelValues(s.String())
		m.cleared.WithLabelValues(s.String())
	}
	m.pushes.WithLabelValues("sent")
	m.pushes.WithLabelValues("failed")
	m.pushes.WithLabelValues("parked")
	m.digests.WithLabelValues("sent")
	m.digests.WithLabelValues("failed")
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.raised, m.cleared, m.pushes, m.pending, m.queue, m.pushSeconds, m.rejected, m.escalations, m.consoleDropped, m.digests}
}

// register registers every collector or, on error, none.
func (m *metrics) register(r prometheus.Registerer) error {
	cs := m.collectors()
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return err
		}
	}
	return nil
}
