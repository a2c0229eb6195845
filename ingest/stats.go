package ingest

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats counts what ingest accepts and rejects, and logs rejections at a
// bounded rate so that a flood of bad input cannot flood the log.
type Stats struct {
	Messages prometheus.Counter
	Readings prometheus.Counter
	rejected [numReasons]prometheus.Counter
	log      *slog.Logger

	mu         sync.Mutex
	windowEnd  time.Time
	logged     int
	suppressed int
}

// logsPerSecond bounds rejection log lines.
const logsPerSecond = 5

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
	now := time.Now()
	s.mu.Lock()
	if now.After(s.windowEnd) {
		if s.suppressed > 0 {
			s.log.Warn("ingest rejections not logged", "count", s.suppressed)
		}
		s.windowEnd, s.logged, s.suppressed = now.Add(time.Second), 0, 0
	}
	ok := s.logged < logsPerSecond
	if ok {
		s.logged++
	} else {
		s.suppressed++
	}
	s.mu.Unlock()
	if ok {
		s.log.Warn("ingest rejected", "reason", r.Reason.String(), "device", r.Device, "topic", truncate(topic), "err", r.Err)
	}
}
