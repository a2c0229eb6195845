package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/devices"
	gb26875server "github.com/firewatch-iot/firewatch/ingest/gb26875/server"
	"github.com/firewatch-iot/firewatch/pipeline"
)

// newGB26875 opens the GB/T 26875.3 endpoint for UITDs (用户信息传输装置) when gb26875.listen or
// gb26875.listen_udp is set; nil otherwise. Its frames become v1 messages handed to h, the same entry
// as MQTT uplink (the pipeline, then alarms.Manager.Sync), so a 确认 means what a PUBACK means: the
// alarms the frame raised are stored (docs/gb26875.md); in cluster mode h forwards them into the stream
// and a 确认 means they are stored there (cluster_forward.go).
func newGB26875(cfg *Config, l *devices.Ledger, h gb26875server.Handler, reg prometheus.Registerer, log *slog.Logger) (*gb26875server.Server, error) {
	if !cfg.GB26875.Enabled() {
		if n := len(l.UITDs()); n > 0 {
			log.Warn("the ledger lists UITDs but gb26875.listen and gb26875.listen_udp are empty: nothing hears them", "uitds", n)
		}
		return nil, nil
	}
	if len(l.UITDs()) == 0 {
		log.Warn("gb26875 listens but the ledger lists no UITD (uitds:): every UITD will be refused")
	}
	return gb26875server.New(cfg.GB26875, l, h, log.With("component", "gb26875"), reg)
}

// startGB26875 runs the endpoint with run's start; the returned stop and done are no-ops when it is off.
// It is stopped before the MQTT source, while the pipeline and the alarm manager still take messages.
func (s *service) startGB26875(start func(string, func(context.Context) error) (context.CancelFunc, <-chan struct{})) (context.CancelFunc, <-chan struct{}) {
	if s.gb == nil {
		done := make(chan struct{})
		close(done)
		return func() {}, done
	}
	s.log.Info("GB/T 26875.3 endpoint listening", "tcp", s.gb.Addr(), "udp", s.gb.UDPAddr(), "uitds", len(s.ledger.UITDs()))
	return start("gb26875", s.gb.Run)
}

// originGB26875 names the UITDs' frames among the pipeline's sources.
const originGB26875 pipeline.Origin = "gb26875"

// mountGB26875 adds the API of the centre's duties when the endpoint is on (docs/api.md): 查岗 and reads
// for operators, the 考核 figures for viewers.
func (s *service) mountGB26875(mux *http.ServeMux) {
	if s.gb == nil {
		return
	}
	mux.HandleFunc("POST /api/v1/uitds/{uitd}/inspect", s.alarms.RequireActor(alarms.RoleOperator, s.gb.ServeInspect))
	mux.HandleFunc("POST /api/v1/uitds/{uitd}/read", s.alarms.Require(alarms.RoleOperator, s.gb.ServeRead))
	mux.HandleFunc("GET /api/v1/uitds/inspections", s.alarms.Require(alarms.RoleViewer, s.gb.ServeAssessments))
	mux.HandleFunc("GET /api/v1/uitds/{uitd}/inspections", s.alarms.Require(alarms.RoleViewer, s.gb.ServeAssessment))
}

// inspectionFigures gives the digests (alarms.Config.Inspections) the 查岗 考核 figures of the UITDs within
// grid over [from, to); none when the endpoint is off. s.gb is set before the alarm manager runs.
func (s *service) inspectionFigures(grid string, from, to time.Time) []alarms.InspectionFigure {
	if s.gb == nil {
		return nil
	}
	figs := s.gb.PeriodFigures(grid, from, to)
	out := make([]alarms.InspectionFigure, len(figs))
	for i, f := range figs {
		addr := ""
		if u, ok := s.ledger.LookupID(f.UITD); ok {
			addr = u.Address
		}
		out[i] = alarms.InspectionFigure{UITD: f.UITD, Address: addr, Unit: f.Unit, Asked: f.Asked,
			Answered: f.Answered, Unanswered: f.Unanswered, Undelivered: f.Undelivered, Offline: f.Offline,
			MedianAnswerSeconds: f.MedianAnswerSeconds, Partial: f.Partial}
	}
	return out
}
