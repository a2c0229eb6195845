package broker

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest"
	"github.com/firewatch-iot/firewatch/internal/logbudget"
)

// ServiceUser is the user name of firewatch's own client on the embedded
// broker. It contains '/', which no device or gateway id may, so no ledger
// entry can take it.
const ServiceUser = "firewatch/service"

// AuthConfig lists who may connect to the embedded broker.
type AuthConfig struct {
	Ledger *devices.Ledger
	// ServicePassword and ServiceClientID are firewatch's own credential:
	// a random password made at start that never leaves the process.
	ServicePassword string
	ServiceClientID string
	// BridgeUser and BridgeSecretHash, when set, admit one trusted upstream
	// (an NB-IoT platform forwarder, or the demo's simulator) that publishes
	// on the device topics of any ledger device.
	BridgeUser       string
	BridgeSecretHash string
	Registerer       prometheus.Registerer
	// CacheKey keys the remembered checks (the fast path: a keyed hash of
	// each admitted secret, never the secret). Instances that share their
	// admissions (cluster mode, Remember) need the same key; nil: a random
	// key of this process.
	CacheKey []byte
	// Logger gets one line per refusal (at most logbudget.PerSecond a second)
	// naming the rule that refused and whom; nil: no log.
	Logger *slog.Logger
}

type role uint8

const (
	roleDevice role = iota + 1
	roleGateway
	roleBridge
	roleService
)

// principal is one user name the broker knows.
type principal struct {
	role  role
	id    string
	hash  secretHash
	plain []byte // the service password
	// up and down are the topic prefixes the principal may publish and
	// subscribe under.
	up, down string
	// fast is the keyed hash (Auth.mac) of the last secret admitted, so
	// that a reconnect storm after an outage costs a hash, not an argon2id
	// run, per client. It covers the secret_hash too: an entry made under
	// an old hash never matches the new one.
	fast atomic.Pointer[[32]byte]
}

// Auth is the embedded broker's authentication and topic ACL (a mochi-mqtt
// hook): username = device or gateway id, password checked against the
// ledger's argon2id secret_hash, client id = username (so that no client
// can take over another's session), and each principal publishes and
// subscribes only under its own topics (docs/security.md).
type Auth struct {
	mochi.HookBase
	// ledger and users follow live registry changes (auth_live.go): mu
	// guards them (write-locked only while a change is adopted).
	mu     sync.RWMutex
	ledger *devices.Ledger
	users  map[string]*principal
	kdf    chan struct{} // bounds concurrent argon2id runs (CPU and memory)
	denied *prometheus.CounterVec
	// checks counts admissions by the fast path ("remembered") and
	// argon2id runs ("argon2id").
	checks *prometheus.CounterVec
	// users and addresses that sent wrong passwords back off (authlimit.go).
	userFails, addrFails *backoff
	// checking counts the argon2id checks running or waiting by address:
	// at most addrChecks for an address without recent failures, one for
	// one with (storm.go), so that one address cannot fill the queue for a
	// slot.
	checkMu  sync.Mutex
	checking map[string]int
	// cacheKey keys the fast path's hashes; admitted, if set, hears of
	// each admission (user, keyed hash) to share it (cluster mode).
	cacheKey []byte
	admitted atomic.Pointer[func(user string, mac []byte)]

	log    *slog.Logger
	budget logbudget.Budget
}

// NewAuth builds the ACL from the ledger. A malformed secret_hash is an
// error, with every bad entry named.
func NewAuth(cfg AuthConfig) (*Auth, error) {
	a := &Auth{
		log:    cfg.Logger,
		ledger: cfg.Ledger,
		users:  make(map[string]*principal, len(cfg.Ledger.Devices)+len(cfg.Ledger.Gateways)+2),
		// Fewer argon2id runs at a time than cores: a flood of wrong
		// passwords leaves at least one core to ingest and alarms.
		kdf:       make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
		userFails: newBackoff(),
		addrFails: newBackoff(),
		checking:  map[string]int{},
		cacheKey:  cfg.CacheKey,
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_broker_denied_total",
			Help: "Connections, publishes and subscriptions the embedded broker refused, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{"unknown_user", "bad_secret", "client_id", "will", "backoff", "busy", "publish", "subscribe", "connections"} {
		a.denied.WithLabelValues(r)
	}
	a.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firewatch_broker_secret_checks_total",
		Help: "Secret checks of devices, gateways and the bridge, by path: remembered (a secret admitted before, a keyed hash) or argon2id (a run of the KDF, whatever its result).",
	}, []string{"path"})
	for _, r := range []string{"remembered", "argon2id"} {
		a.checks.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.denied); err != nil {
			return nil, err
		}
		if err := cfg.Registerer.Register(a.checks); err != nil {
			return nil, err
		}
	}
	if a.cacheKey == nil {
		a.cacheKey = make([]byte, 32)
		rand.Read(a.cacheKey) // never fails (crypto/rand)
	}
	var probs []string
	add := func(p *principal, hash string) {
		if hash != "" {
			h, err := parseSecretHash(hash)
			if err != nil {
				probs = append(probs, fmt.Sprintf("%s: %v", p.id, err))
				return
			}
			p.hash = h
		} else if p.plain == nil {
			return // no credential: cannot connect itself
		}
		if a.users[p.id] != nil {
			probs = append(probs, fmt.Sprintf("%s: user name used twice (a device and a gateway?)", p.id))
			return
		}
		a.users[p.id] = p
	}
	for i := range cfg.Ledger.Devices {
		d := &cfg.Ledger.Devices[i]
		if d.ID == "gw" || d.ID == "station" {
			// Its own topics would be every gateway's or station's
			// (fw/v1/down/gw/…): docs/mqtt.md reserves these ids.
			probs = append(probs, fmt.Sprintf("%s: device id reserved for the second topic level (docs/mqtt.md)", d.ID))
			continue
		}
		add(&principal{role: roleDevice, id: d.ID, up: "fw/v1/up/" + d.ID + "/", down: "fw/v1/down/" + d.ID + "/"}, d.SecretHash)
	}
	for _, g := range cfg.Ledger.Gateways {
		add(&principal{role: roleGateway, id: g.ID, up: "fw/v1/up/gw/" + g.ID + "/", down: "fw/v1/down/gw/" + g.ID + "/"}, g.SecretHash)
	}
	if cfg.BridgeUser != "" {
		if err := devices.CheckID(cfg.BridgeUser); err != nil {
			probs = append(probs, fmt.Sprintf("bridge user: %v", err))
		} else if cfg.BridgeSecretHash == "" {
			probs = append(probs, "bridge user "+cfg.BridgeUser+": no secret hash")
		} else {
			add(&principal{role: roleBridge, id: cfg.BridgeUser, up: "fw/v1/up/"}, cfg.BridgeSecretHash)
		}
	}
	if cfg.ServicePassword != "" {
		a.users[ServiceUser] = &principal{role: roleService, id: cfg.ServiceClientID, plain: []byte(cfg.ServicePassword)}
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("embedded broker credentials:\n  %s", strings.Join(probs, "\n  "))
	}
	return a, nil
}

// ID names the hook.
func (a *Auth) ID() string { return "firewatch-auth" }

// Provides says which hook methods Auth implements.
func (a *Auth) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate checks a CONNECT's user name, password and client
// id.
func (a *Auth) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	p := a.user(user)
	if p == nil {
		a.refuse(cl, "unknown_user", "broker refused a connection: the user name is not a device, gateway or bridge of the ledger with a secret_hash", "user", user)
		return false
	}
	// The client id is the user name (for the service: its fixed client id),
	// so that no client can take over another's session.
	if cl.ID != p.id {
		a.refuse(cl, "client_id", "broker refused a connection: the client id must equal the user name", "user", user, "want_client_id", p.id)
		return false
	}
	// mochi publishes a last will without an ACL check: a will is a publish
	// the client makes in advance, so it gets the publish ACL now, at
	// CONNECT, or a device could leave a forged alarm, acknowledgement or
	// command on another's topic by dropping its connection.
	if pk.Connect.WillFlag && !a.allowed(p, pk.Connect.WillTopic, true) {
		a.refuse(cl, "will", "broker refused a connection: its last will is on a topic the client may not publish on", "user", user, "will_topic", string(pk.Connect.WillTopic))
		return false
	}
	if r := a.check(cl, p, pk.Connect.Password); r != "" {
		a.refuse(cl, r, "broker refused a connection: "+refusalText[r], "user", user)
		return false
	}
	return true
}

// refuse counts a refusal by rule and logs which rule refused whom, unless
// the log budget of this second is spent (a misconfigured fleet retries
// every few seconds; bad input must not flood the journal).
func (a *Auth) refuse(cl *mochi.Client, rule, msg string, attrs ...any) {
	a.denied.WithLabelValues(rule).Inc()
	if a.log == nil {
		return
	}
	ok, dropped := a.budget.Take(time.Now())
	if dropped > 0 {
		a.log.Warn("broker refusals not logged", "count", dropped)
	}
	if ok {
		a.log.Warn(msg, append(attrs, "rule", rule, "client_id", cl.ID, "remote", cl.Net.Remote)...)
	}
}

// refusalText explains the reasons check returns.
var refusalText = map[string]string{
	"bad_secret": "the secret does not match the ledger's secret_hash",
	"backoff":    "too many wrong secrets from this address or for this user; backing off",
	"busy":       "too many secret checks at once; try again",
}

// check checks secret against p's credential and returns "" if it
// matches, else the reason for refusing.
func (a *Auth) check(cl *mochi.Client, p *principal, secret []byte) string {
	if p.role == roleService {
		if subtle.ConstantTimeCompare(secret, p.plain) == 1 {
			return ""
		}
		return "bad_secret"
	}
	sum := a.mac(p, secret)
	if f := p.fast.Load(); f != nil && subtle.ConstantTimeCompare(f[:], sum[:]) == 1 {
		a.checks.WithLabelValues("remembered").Inc()
		a.share(p.id, sum)
		return ""
	}
	// The argon2id check: not for an address backing off after wrong
	// passwords, nor for a user name backing off from an address that
	// failed before (authlimit.go), and not after waiting long for a slot.
	addr, _, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		addr = cl.Net.Remote
	}
	now := time.Now()
	failed := a.addrFails.known(addr)
	if a.addrFails.wait(addr, now) || failed && a.userFails.wait(p.id, now) {
		return "backoff"
	}
	// An address that sent wrong passwords gets a slot only if one is free
	// now; the others wait a little, and a waiting CONNECT takes the next
	// free slot before any that comes later (channel senders queue), so a
	// device connecting from a clean address is not starved by a flood.
	wait := kdfWait
	if failed {
		wait = 0
	}
	if !a.enter(addr, failed) {
		return "busy"
	}
	defer a.leave(addr)
	if !a.acquire(wait) {
		return "busy"
	}
	a.checks.WithLabelValues("argon2id").Inc()
	ok := p.hash.verify(secret)
	<-a.kdf
	if !ok {
		now = time.Now()
		a.userFails.fail(p.id, now)
		a.addrFails.fail(addr, now)
		return "bad_secret"
	}
	a.userFails.ok(p.id)
	a.addrFails.ok(addr)
	p.fast.Store(&sum)
	a.share(p.id, sum)
	return ""
}

// acquire takes an argon2id slot, waiting at most wait.
func (a *Auth) acquire(wait time.Duration) bool {
	select {
	case a.kdf <- struct{}{}:
		return true
	default:
	}
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case a.kdf <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// deviceLeaves are the leaves a device may publish under its own id.
var deviceLeaves = []string{"telemetry", "event", "status", "ack"}

// OnACLCheck allows a publish (write) or a subscription or delivery (read)
// on topic.
func (a *Auth) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	ok := a.allowed(a.user(string(cl.Properties.Username)), topic, write)
	if !ok {
		user := string(cl.Properties.Username)
		if write {
			a.refuse(cl, "publish", "broker refused a publish: the topic is not one this user may publish on", "user", user, "topic", truncate(topic))
		} else {
			a.refuse(cl, "subscribe", "broker refused a subscription: the topic is not one this user may read", "user", user, "topic", truncate(topic))
		}
	}
	return ok
}

func (a *Auth) allowed(p *principal, topic string, write bool) bool {
	return p != nil && (p.allows(topic, write) || p.role == roleGateway && a.forAssigned(p.id, topic, write))
}

// forAssigned allows a gateway what firegate does for the devices assigned
// to it in the ledger (docs/mqtt.md): subscribe to their downlink commands
// (fw/v1/down/{device}/…) and publish their acknowledgements
// (fw/v1/up/{device}/ack).
func (a *Auth) forAssigned(gw, topic string, write bool) bool {
	prefix := "fw/v1/down/"
	if write {
		prefix = "fw/v1/up/"
	}
	rest, ok := strings.CutPrefix(topic, prefix)
	if !ok {
		return false
	}
	id, leaf, ok := strings.Cut(rest, "/")
	if !ok || write && leaf != "ack" || !write && leaf == "" {
		return false
	}
	a.mu.RLock()
	d, ok := a.ledger.LookupID(id)
	ok = ok && d.Gateway == gw
	a.mu.RUnlock()
	return ok
}

func (p *principal) allows(topic string, write bool) bool {
	switch p.role {
	case roleService:
		return true
	case roleDevice:
		if !write {
			return strings.HasPrefix(topic, p.down)
		}
		leaf, ok := strings.CutPrefix(topic, p.up)
		if !ok {
			return false
		}
		for _, l := range deviceLeaves {
			if leaf == l {
				return true
			}
		}
		return false
	case roleGateway:
		if !write {
			return strings.HasPrefix(topic, p.down)
		}
		leaf, ok := strings.CutPrefix(topic, p.up)
		return ok && (leaf == "batch" || leaf == "status")
	case roleBridge:
		if !write {
			return false
		}
		_, gateway, ok := ingest.ParseTopic(topic)
		return ok && !gateway
	}
	return false
}
