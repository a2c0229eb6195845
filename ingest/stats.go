package ingest

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/internal/logbudget"
)

// Stats counts what ingest accepts and rejects, and logs rejections at a
// bounded rate so that a flood of bad input cannot flood the log.
type Stats struct {
	Messages prometheus.Counter
	Readings prometheus.Counter
	rejected [numReasons]prometheus.Counter
	log      *slog.Logger
	budget   logbudget.Budget
}

// NewStats registers the ingest metrics on reg (which may be nil).
func NewStats(reg prometheus.Registerer, log *slog.Logger) *Stats {
	s := &Stats{
		Messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_ingest_messages_total", Help: "MQTT messages received on the v1 uplink topics.",
		}),
		Readings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "firewatch_ingest_readings_total", Help: "Metric and event values accepted.",
		}),
		log: log,
	}
	rej := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firewatch_ingest_rejected_total", Help: "Messages or batch elements rejected, by reason (docs/mqtt.md).",
	}, []string{"reason"})
	for _, r := range Reasons() {
		s.rejected[r] = rej.WithLabelValues(r.String())
	}
	if reg != nil {
		reg.MustRegister(s.Messages, s.Readings, rej)
	}
	return s
}

// Reject counts r and logs it unless the log budget of this second is spent.
func (s *Stats) Reject(r Reject, topic string) {
	s.rejected[r.Reason].Inc()
	ok, dropped := s.budget.Take(time.Now())
	if dropped > 0 {
		s.log.Warn("ingest rejections not logged", "count", dropped)
	}
	if ok {
		s.log.Warn("ingest rejected", "reason", r.Reason.String(), "device", r.Device, "topic", truncate(topic), "err", r.Err)
	}
}
