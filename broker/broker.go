package broker

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/internal/netbuf"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the plain TCP listener; firewatch's own client connects here,
	// so keep it on loopback when devices use TLS.
	Addr string
	// TLSAddr, when set, is a second listener speaking MQTT over TLS with
	// TLSConfig.
	TLSAddr   string
	TLSConfig *tls.Config
	// Auth checks credentials and topic ACLs; nil admits every client to
	// every topic (mqtt.auth: none, for a closed test network only).
	Auth   *Auth
	Logger *slog.Logger
	// Hooks are added after Auth, before the broker serves: an
	// InlineSource, so that firewatch consumes in process.
	Hooks []mochi.Hook
	// MaxConnections bounds the open client connections of all listeners
	// together, authenticated or not; a connection beyond it is closed at
	// once. 0 means DefaultMaxConnections.
	MaxConnections int
	// ConnectTimeout bounds the time from accepting a connection (and its
	// TLS handshake) to reading its CONNECT; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxMessageExpiry overrides MaxMessageExpiry (tests).
	MaxMessageExpiry time.Duration
	// Registerer, when set, gets firewatch_broker_dropped_total (dropped.go).
	Registerer prometheus.Registerer
}

// Limits of the embedded broker (docs/security.md, docs/mqtt.md).
const (
	DefaultMaxConnections = 20000
	DefaultConnectTimeout = 10 * time.Second
	// MaxMessageExpiry caps how long the broker holds a message for a
	// subscriber that has not taken it (an offline persistent session):
	// linkage commands must never wait longer than their own expiry
	// (alarms: one minute), and nothing else sent downstream is worth
	// more than that when late.
	MaxMessageExpiry = time.Minute
	// MaxSessionExpiry caps how long a disconnected persistent session and
	// its subscriptions are kept (mochi's default is forever).
	MaxSessionExpiry = time.Hour
)

// ClientWritesPending bounds the packets waiting to be written to one client
// of the embedded broker; beyond it mochi drops what is published to that
// client (QoS 1 too; counted in firewatch_broker_dropped_total). The ACLs
// let a device subscribe to its own commands only, which come a few at a
// time, and a gateway to those of its devices: 256 holds one command for
// each of the 247 addresses of a Modbus bus even while the gateway's link
// is stalled. mochi allocates the queue up front for every client, 8 bytes
// a slot: 2 KiB here, 8 KiB at the former 1,024 (issue 19, idle
// connections).
const ClientWritesPending = 256

// MaxPacket is the largest MQTT packet the embedded broker takes; a client
// sending a larger one is disconnected. It is above MaxPayload so that the
// decoder still counts payloads between the two as too_large.
const MaxPacket = 4 * ingest.MaxPayload

// Start starts the embedded MQTT broker (mochi-mqtt), for the
// zero-setup single-node deployment. Sessions and queued QoS 1 messages live
// in memory: they survive a client's reconnect, not a restart of firewatch.
func Start(cfg Config) (*mochi.Server, error) {
	// The inline client lets firewatch publish into its own broker (linkage
	// commands, alarm fan-out) without a connection or credential; its
	// publishes skip the ACL hook, which guards what clients send.
	log := slog.New(newRateHandler(cfg.Logger.Handler())).With("component", "broker")
	if cfg.Auth != nil {
		log = slog.New(refusalFilter{log.Handler()}) // Auth logs refusals itself
	}
	opts := &mochi.Options{Logger: log, InlineClient: true}
	opts.Capabilities = mochi.NewDefaultServerCapabilities()
	opts.Capabilities.MaximumPacketSize = MaxPacket
	// No retained messages: nothing in the v1 contract needs them, and a
	// retained message is replayed to every new subscriber long after it
	// was true (a forged or stale command on each resubscribe). The retain
	// flag of publishes and wills is cleared as they are read (noRetain), so
	// that clients setting it, such as firegate's status will, still connect.
	opts.Capabilities.RetainAvailable = 0
	opts.Capabilities.MaximumMessageExpiryInterval = int64(cmp.Or(cfg.MaxMessageExpiry, MaxMessageExpiry) / time.Second)
	opts.Capabilities.MaximumSessionExpiryInterval = uint32(MaxSessionExpiry / time.Second)
	maxConns := cfg.MaxConnections
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	opts.Capabilities.MaximumClients = int64(maxConns)
	// Memory per connection (issue 19): mochi makes each client's outbound
	// queue up front (8 bytes a slot, 8,192 slots by default: 64 KiB of
	// heap per connection) and keeps its read buffer for the connection's
	// life; netbuf below holds a larger one only while data waits in it.
	opts.Capabilities.MaximumClientWritesPending = ClientWritesPending
	opts.ClientNetReadBufferSize = 512
	connectTimeout := cfg.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	s := mochi.New(opts)
	var err error
	if cfg.Auth != nil {
		err = s.AddHook(cfg.Auth, nil)
	} else {
		err = s.AddHook(new(auth.AllowHook), nil)
	}
	if err == nil {
		err = s.AddHook(new(noRetain), nil)
	}
	if err == nil {
		err = s.AddHook(&serialTakeover{s: s}, nil)
	}
	if err == nil {
		err = addDropCounter(s, cfg.Registerer, log)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	for _, h := range cfg.Hooks {
		if err := s.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	if cfg.TLSAddr != "" && cfg.TLSConfig == nil {
		return nil, fmt.Errorf("embedded broker: TLS listener %s without a certificate", cfg.TLSAddr)
	}
	conns := &connLimit{max: int64(maxConns), timeout: connectTimeout, auth: cfg.Auth}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.Addr, err)
	}
	if err := s.AddListener(listeners.NewNet("tcp", conns.wrap(ln))); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.Addr, err)
	}
	if cfg.TLSAddr != "" {
		tln, err := net.Listen("tcp", cfg.TLSAddr)
		if err == nil {
			err = s.AddListener(listeners.NewNet("tls", tls.NewListener(conns.wrap(tln), cfg.TLSConfig)))
		}
		if err != nil {
			s.Close()
			ln.Close()
			return nil, fmt.Errorf("embedded broker: listen %s: %w", cfg.TLSAddr, err)
		}
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return s, nil
}

// noRetain clears the retain flag of every publish and will a client
// sends, as the packet is read, before the broker acts on it.
type noRetain struct{ mochi.HookBase }

// ID names the hook.
func (*noRetain) ID() string { return "firewatch-no-retain" }

// Provides says which hook methods noRetain implements.
func (*noRetain) Provides(b byte) bool { return b == mochi.OnPacketRead }

// OnPacketRead clears the retain flags of a CONNECT's will and of a
// PUBLISH.
func (*noRetain) OnPacketRead(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		pk.Connect.WillRetain = false
	case packets.Publish:
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// connLimit bounds the open connections of the broker's listeners and the
// time a new connection has to send its CONNECT: mochi reads the CONNECT
// without a deadline, and takes any number of connections.
type connLimit struct {
	max     int64
	open    atomic.Int64
	timeout time.Duration
	auth    *Auth // counts refusals; may be nil

	// accepted counts the connections handed to mochi, begun those whose
	// client goroutine has read from or closed them; see limitListener.Close.
	accepted, begun atomic.Int64
}

func (c *connLimit) wrap(ln net.Listener) net.Listener { return &limitListener{Listener: ln, c: c} }

type limitListener struct {
	net.Listener
	c *connLimit
}

// Accept returns the next connection within the limit, with a deadline for
// its CONNECT (mochi replaces it with the keepalive's once the CONNECT is
// read); connections beyond the limit are closed unread.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.c.open.Add(1) > l.c.max {
			l.c.open.Add(-1)
			conn.Close()
			if l.c.auth != nil {
				l.c.auth.denied.WithLabelValues("connections").Inc()
			}
			continue
		}
		// Buffered writes (issue 19): a burst of PUBACKs is one write;
		// reads fill a pooled buffer, given back while the client is idle.
		conn = netbuf.New(conn, netbuf.Options{ReadBuffer: 4096})
		conn.SetDeadline(time.Now().Add(l.c.timeout))
		l.c.accepted.Add(1)
		return &limitConn{Conn: conn, c: l.c}, nil
	}
}

// quiesceWait bounds how long closing a listener waits for the client
// goroutines of connections it has already accepted to begin.
const quiesceWait = 2 * time.Second

// Close closes the listener, then waits (at most quiesceWait) until every
// connection it accepted has begun in its client goroutine. mochi's client
// goroutine adds itself to the WaitGroup that Server.Close waits on only
// after it starts (server.go attachClient), so a connection accepted just
// before shutdown could be added after the Wait began: the Wait returns
// early, or the race detector reports the WaitGroup misuse. mochi closes
// the listeners before that Wait, so the wait here orders them.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	deadline := time.Now().Add(quiesceWait)
	for l.c.begun.Load() < l.c.accepted.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return err
}

type limitConn struct {
	net.Conn
	c     *connLimit
	once  sync.Once
	begun atomic.Bool
}

// begin marks the connection as taken up by its client goroutine.
func (c *limitConn) begin() {
	if !c.begun.Load() && c.begun.CompareAndSwap(false, true) {
		c.c.begun.Add(1)
	}
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.begin()
	return c.Conn.Read(p)
}

// Unwrap returns the connection within (a netbuf.Conn): InlineSource
// flushes it.
func (c *limitConn) Unwrap() net.Conn { return c.Conn }

func (c *limitConn) Close() error {
	c.begin()
	c.once.Do(func() { c.c.open.Add(-1) })
	return c.Conn.Close()
}
