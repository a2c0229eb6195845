package bridge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/ctwing"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/gb45839"
	"github.com/firewatch-iot/firewatch/ingest/nbiot/onenet"
)

// Paths of the push endpoints.
const (
	PathCTWing  = "/nbiot/ctwing/"  // + token
	PathOneNET  = "/nbiot/onenet"   // GET verification, POST data
	PathGB45839 = "/nbiot/gb45839/" // + token + /status_info or /Install_info
)

// Mount registers the configured platforms' endpoints on mux, each behind
// its own rate limit. With nbiot.listen set, call Start instead: it serves
// them on their own listener.
func (b *Bridge) Mount(mux *http.ServeMux) error {
	in := nbiot.Intake{Submit: b.Submit, Count: b.Count, Dedupe: nbiot.NewDedupe(b.cfg.Dedupe), MaxBody: int64(b.cfg.MaxBody)}
	c := &b.cfg
	if c.CTWing.Token != "" {
		h := &ctwing.Handler{Intake: in, Token: c.CTWing.Token, Tenants: List(c.CTWing.Tenants), Products: List(c.CTWing.Products)}
		if err := h.Validate(); err != nil {
			return err
		}
		mux.Handle(PathCTWing, b.limit(nbiot.PlatformCTWing, h))
	}
	if c.OneNET.Token != "" {
		h := &onenet.Handler{Intake: in, Config: onenet.Config{Token: c.OneNET.Token, AESKey: c.OneNET.AESKey}}
		if err := h.Validate(); err != nil {
			return err
		}
		mux.Handle(PathOneNET, b.limit(nbiot.PlatformOneNET, h))
	}
	if c.GB45839.Token != "" {
		h := &gb45839.Handler{Intake: in, Token: c.GB45839.Token}
		if err := h.Validate(); err != nil {
			return err
		}
		mux.Handle(PathGB45839, b.limit(nbiot.PlatformGB45839, h))
	}
	return nil
}

// limit answers 429 beyond the configured rate of p's pushes (a token
// bucket of one second's worth), so that one platform's flood neither
// starves the others nor the MQTT devices; the platform retries.
func (b *Bridge) limit(p nbiot.Platform, h http.Handler) http.Handler {
	tb := &bucket{rate: float64(b.cfg.Rate), tokens: float64(b.cfg.Rate), last: time.Now()}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tb.take(time.Now()) {
			b.Count(p, "rate_limited")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many pushes, retry", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func (t *bucket) take(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tokens = min(t.rate, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
	if t.tokens < 1 {
		return false
	}
	t.tokens--
	return true
}

// ServePending is GET /api/v1/nbiot/pending: the pending entries as JSON,
// oldest first. Mount it behind the admin role: it shows IMEIs, addresses
// and phone numbers.
func (b *Bridge) ServePending(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Pending []Pending `json:"pending"`
	}{b.Pending()})
}

// server is the bridge's own listener (nbiot.listen).
type server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listening reports whether the bridge serves on its own listener.
func (b *Bridge) Listening() bool { return b.cfg.Listen != "" }

// Addr is the own listener's address, or "".
func (b *Bridge) Addr() string {
	if b.srv == nil {
		return ""
	}
	return b.srv.ln.Addr().String()
}

// Start opens nbiot.listen (HTTPS with tls_cert and tls_key) and serves the
// endpoints there until Stop. A bad certificate is reported here; a later
// failure of the server is logged.
func (b *Bridge) Start() error {
	mux := http.NewServeMux()
	if err := b.Mount(mux); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if b.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(b.cfg.TLSCert, b.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("nbiot.tls_cert: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("nbiot.listen: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s := &server{ln: ln, done: make(chan struct{}), srv: &http.Server{Handler: mux,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}}
	b.srv = s
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("NB-IoT push endpoints stopped serving", "listen", b.cfg.Listen, "err", err)
		}
	}()
	return nil
}

func (s *server) stop(ctx context.Context) {
	s.srv.Shutdown(ctx)
	<-s.done
}
