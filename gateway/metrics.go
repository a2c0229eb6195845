package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/firewatch-iot/firewatch/internal/buildinfo"
)

// registerMetrics exposes the gateway's counters, read from the same
// atomics the status message uses. Bus is a label of bounded cardinality
// (the configured ports); device ids never are.
func (g *Gateway) registerMetrics(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	for _, b := range g.buses {
		s := b.master.Stats()
		l := prometheus.Labels{"bus": b.cfg.Port}
		counter := func(name, help string, f func() float64) {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l}, f))
		}
		counter("firewatch_modbus_requests_total", "Modbus requests sent, retries included.", func() float64 { return float64(s.Requests.Load()) })
		counter("firewatch_modbus_responses_total", "Good Modbus responses, exceptions included.", func() float64 { return float64(s.Responses.Load()) })
		counter("firewatch_modbus_timeouts_total", "Requests without a response within the timeout.", func() float64 { return float64(s.Timeouts.Load()) })
		counter("firewatch_modbus_crc_errors_total", "Responses with a bad CRC.", func() float64 { return float64(s.CRCErrors.Load()) })
		counter("firewatch_modbus_bad_frames_total", "Short, long, wrong-address, wrong-function or bad-echo responses.", func() float64 { return float64(s.BadFrames.Load()) })
		counter("firewatch_modbus_exceptions_total", "Modbus exception responses.", func() float64 { return float64(s.Exceptions.Load()) })
		counter("firewatch_modbus_retries_total", "Retried requests.", func() float64 { return float64(s.Retries.Load()) })
		counter("firewatch_modbus_stale_bytes_total", "Bytes of late answers or noise discarded before a request.", func() float64 { return float64(s.Stale.Load()) })
		counter("firewatch_modbus_echoes_total", "Requests the RS-485 adapter echoed back, skipped.", func() float64 { return float64(s.Echoes.Load()) })
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("firewatch_spool_records", "Readings waiting in the spool.", func() float64 { return float64(g.spool.Len()) })
	gauge("firewatch_spool_bytes", "Size of the spool's segment files.", func() float64 { return float64(g.spool.Bytes()) })
	gauge("firewatch_gateway_devices_offline", "Devices that missed offline_after polls in a row.", func() float64 {
		n := 0
		for _, b := range g.buses {
			for _, d := range b.devices {
				if d.offline.Load() {
					n++
				}
			}
		}
		return float64(n)
	})
	gauge("firewatch_gateway_buses_down", "Buses whose port is closed or whose devices all miss their polls.", func() float64 {
		n := 0
		for i := range g.buses {
			if !g.BusOK(i) {
				n++
			}
		}
		return float64(n)
	})
	gauge("firewatch_gateway_uplink_up", "1 while the MQTT uplink is connected.", func() float64 {
		if g.Connected() {
			return 1
		}
		return 0
	})
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "firewatch_spool_dropped_total", Help: "Readings the spool's drop policy removed since start."},
		func() float64 { return float64(g.spool.Dropped()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "firewatch_gateway_published_readings_total", Help: "Readings acknowledged by the broker."},
		func() float64 { return float64(g.published.Load()) }))
}

// serveMetrics serves /metrics on addr until ctx ends.
func (g *Gateway) serveMetrics(ctx context.Context, ln net.Listener) {
	reg := prometheus.NewRegistry()
	g.registerMetrics(reg)
	g.registerSpoolMetrics(reg)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Error("metrics server", "err", err)
	}
}

// MetricsAddr returns the address /metrics listens on, or "" when off.
func (g *Gateway) MetricsAddr() string {
	if g.metricsLn == nil {
		return ""
	}
	return g.metricsLn.Addr().String()
}
