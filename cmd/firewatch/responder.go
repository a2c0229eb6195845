package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/responder"
)

// responderWiring joins the responder page and the console (package
// responder, issue 16) to the service: the links the pushes carry, the
// live updates, the routes.
type responderWiring struct {
	signer *responder.Signer
	srv    atomic.Pointer[responder.Server]
}

// newResponderWiring makes the link signer from alarms.secret (and
// alarms.secret_previous, so that links sent before a rotation still
// work). The base URL is http.public_url, or else the HTTP listener's
// address once it is known (register).
func newResponderWiring(cfg *Config) (*responderWiring, error) {
	if u := cfg.HTTP.PublicURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.RawQuery != "" || p.Fragment != "" {
			return nil, fmt.Errorf("http.public_url %q: want http(s)://host[:port][/path]", u)
		}
	}
	return &responderWiring{signer: responder.NewSigner(cfg.HTTP.PublicURL, 0, []byte(cfg.Alarms.Secret), []byte(cfg.Alarms.SecretPrevious))}, nil
}

// link is alarms.Config.ResponderLink.
func (w *responderWiring) link(alarm, station string, issued time.Time) string {
	return w.signer.Link(alarm, station, issued)
}

// notify passes an alarm change to the open pages (alarms.Config.OnTransition).
func (w *responderWiring) notify(a alarms.Alarm) {
	if s := w.srv.Load(); s != nil {
		s.Notify(a)
	}
}

// register serves the pages on mux and ends their streams when the HTTP
// server shuts down.
func (w *responderWiring) register(s *service, mux *http.ServeMux, reg prometheus.Registerer, log *slog.Logger) error {
	if w.signer.BaseURL == "" {
		w.signer.BaseURL = s.httpURL()
	}
	// The page's chart and hydrant pressures are read back from the
	// InfluxDB the writer writes to (issue 16).
	rd := influx.NewReader(s.cfg.Influx)
	srv, err := responder.New(responder.Config{Alarms: s.alarms, Ledger: s.ledger, Registry: s.registry, Signer: w.signer, Registerer: reg,
		Logger: log.With("component", "responder"), Readings: rd, Console: s.cfg.Console})
	if err != nil {
		rd.Close()
		return err
	}
	s.httpSrv.RegisterOnShutdown(rd.Close)
	srv.Register(mux)
	s.httpSrv.RegisterOnShutdown(srv.Close)
	w.srv.Store(srv)
	return nil
}
