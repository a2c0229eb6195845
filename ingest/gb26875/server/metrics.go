package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

type metrics struct {
	s             *Server
	connRefused   *prometheus.CounterVec
	answerVec     *prometheus.CounterVec
	uploadVec     *prometheus.CounterVec
	opVec         *prometheus.CounterVec
	messages      prometheus.Counter
	unlisted      prometheus.Counter
	resets        prometheus.Counter
	clockSyncs    prometheus.Counter
	analogDropped prometheus.Counter
}

func newMetrics(s *Server, reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "firewatch_gb26875_" + name, Help: help})
	}
	m := &metrics{s: s,
		connRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_gb26875_connections_refused_total",
			Help: "UITD connections refused, by reason: limit (max_connections), unknown (address not in the ledger), network (not from a network its entry lists)."}, []string{"reason"}),
		answerVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_gb26875_answers_total",
			Help: "The UITDs' answers to the centre's commands (clock synchronisation), by command: confirm or deny."}, []string{"command"}),
		uploadVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_gb26875_uploads_total",
			Help: "Uploads evaluated (retransmissions not counted), by type flag of GB/T 26875.3 Table 3 (0: empty keep-alive)."}, []string{"type"}),
		opVec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "firewatch_gb26875_operations_total",
			Help: "Operations reported (types 4 and 24), by operation: reset, silence, manual_alarm, alarm_cleared, self_test, acknowledge (duty_answer for a UITD), test."}, []string{"op"}),
		messages:      c("messages_total", "firewatch messages handed to the pipeline from UITD uploads (states and analog values)."),
		unlisted:      c("unlisted_points_total", "States of systems and components the ledger does not list, reported on their UITD's own device."),
		resets:        c("resets_total", "Resets (复位) of fire alarm controllers that cleared their fire, supervisory and linkage states."),
		clockSyncs:    c("clock_syncs_total", "Clock synchronisations (type 90) sent to UITDs whose clock was off."),
		analogDropped: c("analog_dropped_total", "Analog values not stored: an undefined analog type or a value outside its range (Table 6)."),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.connRefused, m.answerVec, m.uploadVec, m.opVec, m.messages, m.unlisted, m.resets, m.clockSyncs, m.analogDropped, m)
	return m
}

func (m *metrics) refused(reason string) { m.connRefused.WithLabelValues(reason).Inc() }

func (m *metrics) answer(c gb26875.Command) {
	if c == gb26875.CmdConfirm {
		m.answerVec.WithLabelValues("confirm").Inc()
	} else {
		m.answerVec.WithLabelValues("deny").Inc()
	}
}

var typeLabels [256]string

func init() {
	for i := range typeLabels {
		typeLabels[i] = strconv.Itoa(i)
	}
}

func (m *metrics) uploads(t gb26875.TypeFlag) { m.uploadVec.WithLabelValues(typeLabels[t]).Inc() }

var opNames = [7]string{"reset", "silence", "manual_alarm", "alarm_cleared", "self_test", "acknowledge", "test"}

func (m *metrics) operations(ops uint8, uitd bool) {
	for i, n := range opNames {
		if ops&(1<<i) == 0 {
			continue
		}
		if uitd && i == 5 {
			n = "duty_answer"
		}
		m.opVec.WithLabelValues(n).Inc()
	}
}

var (
	descConns     = prometheus.NewDesc("firewatch_gb26875_connections", "Open UITD TCP connections.", nil, nil)
	descFrames    = prometheus.NewDesc("firewatch_gb26875_frames_total", "Valid GB/T 26875.3 frames received.", nil, nil)
	descConfirmed = prometheus.NewDesc("firewatch_gb26875_confirmed_total", "确认 sent: uploads taken by the pipeline (retransmissions included).", nil, nil)
	descDenied    = prometheus.NewDesc("firewatch_gb26875_denied_total", "否认 sent: refused frames that were certainly the sender's.", nil, nil)
	descRetrans   = prometheus.NewDesc("firewatch_gb26875_retransmissions_total", "Retransmissions recognised (same source, serial number and content): confirmed again, not evaluated again.", nil, nil)
	descCommitErr = prometheus.NewDesc("firewatch_gb26875_commit_failed_total", "Uploads not taken (firewatch stopping, or a message refused: the pipeline at shutdown, the stream in cluster mode): not confirmed, so the UITD sends them again.", nil, nil)
	descIgnored   = prometheus.NewDesc("firewatch_gb26875_ignored_total", "Refused frame candidates found inside garbage: counted by reason, not answered.", nil, nil)
	descRefused   = prometheus.NewDesc("firewatch_gb26875_refused_total", "Frames refused, by reason (docs/gb26875.md: short, start, too_long, length, end, checksum, command, type, adu, other, spoofed).", []string{"reason"}, nil)
)

// Describe and Collect export the sessions' counters (stream.Stats).
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descFrames, descConfirmed, descDenied, descRetrans, descCommitErr, descIgnored, descRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := &m.s.stats
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(m.s.conns.Load()))
	for _, c := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descFrames, st.Frames.Load()}, {descConfirmed, st.Confirmed.Load()}, {descDenied, st.Denied.Load()},
		{descRetrans, st.Retransmissions.Load()}, {descCommitErr, st.CommitFailed.Load()}, {descIgnored, st.Ignored.Load()}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
	for i, r := range stream.Reasons {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.Refused[i].Load()), r)
	}
}
