package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/ingest/gb26875/stream"
)

// Handler is the pipeline's entry point: Handle takes one firewatch v1 message (topic and JSON payload,
// docs/mqtt.md) and returns once its readings are queued for InfluxDB and the alarms it raised or cleared
// are committed. The server answers 确认 only after every message of a frame was handled. Calls come from
// several connections at once; payload is valid only during the call.
type Handler interface {
	Handle(topic string, payload []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(topic string, payload []byte)

// Handle calls f.
func (f HandlerFunc) Handle(topic string, payload []byte) { f(topic, payload) }

// errStopping refuses a frame while the server stops: it is not confirmed, so the UITD sends it again.
var errStopping = errors.New("gb26875 server: stopping")

// pointLiveness is how often, while a UITD speaks, the devices of the points it lists are told they are
// alive: they report only when their state changes (their kind's heartbeat is a day).
const pointLiveness = time.Hour

// A connection remembers its last dedupFrames frames for dedupTTL to recognise retransmissions (§6.5: at
// most 3 retries, at most 10 s apart; send/confirm is stop-and-wait, so only the last frame is retransmitted,
// and a few cover a UITD that pipelines).
const (
	dedupFrames = 8
	dedupTTL    = 5 * time.Minute
)

// clockSyncEvery bounds the clock synchronisations sent on one connection.
const clockSyncEvery = 10 * time.Minute

var cst = time.FixedZone("CST", 8*3600)

// Server is the monitoring-centre endpoint. New opens its listeners; Run serves them until its context
// ends.
type Server struct {
	cfg    Config
	ledger *devices.Ledger
	h      Handler
	log    *slog.Logger
	// Now is the centre's clock (tests set it); default time.Now.
	Now func() time.Time

	stats  stream.Stats
	uitds  map[gb26875.Address]*uitdState
	topics []string // per device index: fw/v1/up/{id}/telemetry for facility devices
	status []string // per device index: fw/v1/up/{id}/status

	tcp net.Listener
	udp *net.UDPConn

	conns    atomic.Int64
	stopping atomic.Bool
	wg       sync.WaitGroup
	m        *metrics
	lastLog  atomic.Int64 // rate limit of refusal logs (Unix ms)

	// checked is h when it may refuse a message (checked.go).
	checked CheckedHandler

	duties // the centre's duties: connections by UITD, 查岗 and its 考核 (duty.go)
}

// New opens the configured listeners. reg may be nil.
func New(cfg Config, l *devices.Ledger, h Handler, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ledger: l, h: h, log: log, Now: time.Now,
		uitds:  map[gb26875.Address]*uitdState{},
		topics: make([]string, len(l.Devices)), status: make([]string, len(l.Devices))}
	for _, u := range l.UITDs() {
		s.uitds[u.Address] = newUITDState(u, l)
	}
	for i := range l.Devices {
		if d := &l.Devices[i]; d.Kind == devices.KindFacility {
			s.topics[i] = "fw/v1/up/" + d.ID + "/telemetry"
			s.status[i] = "fw/v1/up/" + d.ID + "/status"
		}
	}
	s.checked, _ = h.(CheckedHandler)
	s.m = newMetrics(s, reg)
	s.initDuties(reg)
	var err error
	if cfg.Listen != "" {
		if s.tcp, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("gb26875.listen: %w", err)
		}
	}
	if cfg.ListenUDP != "" {
		ua, err := net.ResolveUDPAddr("udp", cfg.ListenUDP)
		if err == nil {
			s.udp, err = net.ListenUDP("udp", ua)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("gb26875.listen_udp: %w", err)
		}
	}
	return s, nil
}

// Addr is the TCP listener's address (nil when off).
func (s *Server) Addr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// UDPAddr is the UDP listener's address (nil when off).
func (s *Server) UDPAddr() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

// Close closes the listeners (Run does it when it ends).
func (s *Server) Close() {
	if s.tcp != nil {
		s.tcp.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
}

// Run serves the listeners until ctx ends, then stops taking frames, ends every connection and returns
// once every frame being handled is done.
func (s *Server) Run(ctx context.Context) error {
	if s.tcp != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.accept(ctx)
		}()
	}
	if s.udp != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveUDP(ctx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.schedule(ctx) // duty.go
	}()
	<-ctx.Done()
	s.stopping.Store(true)
	s.Close()
	s.wg.Wait()
	return nil
}

func (s *Server) accept(ctx context.Context) {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.logRefusal("accept failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if s.conns.Load() >= int64(s.cfg.MaxConnections) {
			s.m.refused("limit")
			s.logRefusal("UITD connection refused: gb26875.max_connections reached", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.conns.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Add(-1)
			defer c.Close()
			s.serveTCP(ctx, c)
		}()
	}
}

// conn is what one connection (TCP) or remote address (UDP) keeps.
type conn struct {
	remote   netip.Addr
	st       *uitdState // once the first frame named a known UITD
	network  bool       // the UITD was refused for the network it came from
	lastSync time.Time
	out      []byte
	sess     stream.Session
	last     time.Time // UDP: last datagram

	link // writes, shared with the centre's own commands (duty.go)
}

func (s *Server) newConn(remote netip.Addr) *conn {
	c := &conn{remote: remote.Unmap(), link: newLink()}
	// Retransmissions are recognised per connection only: serial numbers start again with each connection
	// (§6.4), so after a reconnect the same serial number and content may be a new event of a UITD whose
	// clock does not run. Evaluating a retransmission again is harmless (states, not counts).
	c.sess = stream.Session{Dedup: stream.NewDedup(dedupFrames, dedupTTL), Stats: &s.stats, Now: s.now,
		Known: func(a gb26875.Address) bool {
			st, ok := s.uitds[a]
			if !ok {
				return false
			}
			if !st.u.Admits(c.remote) {
				c.network = true
				return false
			}
			c.st = st
			return true
		},
		Commit: func(f *gb26875.Frame, up *gb26875.Upload) error {
			err := s.commit(c.st, f, up)
			if f.Command == gb26875.CmdReply {
				c.replied(f, up) // read.go
			}
			return err
		},
		Answer: func(f *gb26875.Frame) { s.m.answer(f.Command); c.answered(f) },
	}
	return c
}

func (s *Server) now() time.Time { return s.Now() }

func (s *Server) serveTCP(ctx context.Context, nc net.Conn) {
	var remote netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort().Addr()
	}
	c := s.newConn(remote)
	c.setWriter(nc, s.cfg.WriteTimeout)
	defer s.detach(c)
	err := stream.Read(ctx, nc, stream.Options{IdleTimeout: s.cfg.IdleTimeout}, func(ev *stream.Event) error {
		if err := c.sess.Handle(ev, &c.link); err != nil {
			return err
		}
		if ev.Err == nil && c.st != nil {
			s.attach(c, &ev.Frame.Header)
		}
		if ev.Err == nil && c.st != nil && ev.Frame.Command == gb26875.CmdSend {
			return s.clockSync(c, &ev.Frame.Header)
		}
		return nil
	})
	s.ended(c, nc.RemoteAddr().String(), err)
}

// ended counts and logs why a connection (or a UDP remote) was refused or ended.
func (s *Server) ended(c *conn, remote string, err error) {
	switch {
	case errors.Is(err, stream.ErrUnknownUITD) && c.network:
		s.m.refused("network")
		s.logRefusal("UITD refused: it connected from a network its ledger entry does not list", "remote", remote)
	case errors.Is(err, stream.ErrUnknownUITD):
		s.m.refused("unknown")
		s.logRefusal("UITD refused: its address is not in the ledger (uitds:)", "remote", remote)
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, stream.ErrIdle), errors.Is(err, net.ErrClosed):
	default:
		s.log.Debug("UITD connection ended", "remote", remote, "err", err)
	}
}

func (s *Server) logRefusal(msg string, args ...any) {
	now := time.Now().UnixMilli()
	if last := s.lastLog.Load(); now-last < 10_000 || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg+" (such messages at most every 10 s)", args...)
}

// clockSync sends the type 90 frame that sets the UITD's clock (校时) after the answer to h: on the
// connection's first frame and then every clock_sync_every (when set), and whenever the time label of h is
// off by more than clock_skew (or is no time at all), at most every clockSyncEvery per connection.
func (s *Server) clockSync(c *conn, h *gb26875.Header) error {
	now := s.now()
	t, ok := h.Time.Time(cst)
	due := s.cfg.ClockSyncEvery > 0 && (c.lastSync.IsZero() || now.Sub(c.lastSync) >= s.cfg.ClockSyncEvery)
	if !due {
		if ok {
			if d := now.Sub(t); d <= s.cfg.ClockSkew && d >= -s.cfg.ClockSkew {
				return nil
			}
		}
		if !c.lastSync.IsZero() && now.Sub(c.lastSync) < clockSyncEvery {
			return nil
		}
	}
	c.lastSync = now
	label := gb26875.MakeTimeLabel(now.In(cst))
	d := gb26875.Downlink{Type: gb26875.TypeSyncClock, Start: label}
	adu, err := d.Append(c.out[:0])
	if err != nil {
		return nil
	}
	c.out = adu
	// Not waited for: the UITD's 确认 is counted (answers_total); a missing one is not retried, the next
	// frame of a clock still off tries again.
	s.m.clockSyncs.Inc()
	if err := c.send(h, label, adu); err != nil {
		return err
	}
	if due && ok {
		s.log.Debug("sending the centre's time (校时)", "uitd", c.st.id, "uitd_time", t.Format(time.DateTime))
	} else {
		s.log.Info("UITD clock off: sending the centre's time (校时)", "uitd", c.st.id, "uitd_time", t.Format(time.DateTime), "ok", ok)
	}
	return nil
}

// maxDatagram is the longest UDP datagram read: a frame is at most 1054 bytes.
const maxDatagram = 2048

type udpWriter struct {
	c  *net.UDPConn
	to netip.AddrPort
}

func (w udpWriter) Write(b []byte) (int, error) { return w.c.WriteToUDPAddrPort(b, w.to) }

func (s *Server) serveUDP(ctx context.Context) {
	buf := make([]byte, maxDatagram)
	peers := map[netip.AddrPort]*conn{}
	var f gb26875.Frame
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		now := time.Now()
		c := peers[from]
		if c == nil {
			if len(peers) >= s.cfg.MaxConnections {
				for k, p := range peers {
					if now.Sub(p.last) > s.cfg.IdleTimeout {
						s.detach(p)
						delete(peers, k)
					}
				}
			}
			if len(peers) >= s.cfg.MaxConnections {
				s.m.refused("limit")
				continue
			}
			c = s.newConn(from.Addr())
			c.setWriter(udpWriter{s.udp, from}, 0)
			peers[from] = c
		}
		c.last = now
		s.udp.SetWriteDeadline(now.Add(s.cfg.WriteTimeout))
		if err := c.sess.HandleDatagram(buf[:n], &c.link); err != nil {
			delete(peers, from) // an unknown UITD: asked again with its next datagram
			s.ended(c, from.String(), err)
			continue
		}
		if c.st != nil && gb26875.Parse(buf[:n], &f) == nil {
			s.attach(c, &f.Header)
			if f.Command == gb26875.CmdSend {
				s.clockSync(c, &f.Header)
			}
		}
	}
}
