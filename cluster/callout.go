package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
)

// Credentials and topic ACLs in cluster mode (issue 15 point 4): the NATS
// nodes hand every MQTT CONNECT that is not firewatch's own service user to
// the auth callout (nats-server 2.10+, `authorization { auth_callout { … } }`):
// an authorization request JWT on $SYS.REQ.USER.AUTH, answered by any
// firewatch instance (a queue subscription) with a user JWT signed by the
// callout issuer's account key. The check is the embedded broker's
// (broker.Auth.Authorize: user name = device or gateway id of the registry in
// force, client id = user name, password against its argon2id secret_hash,
// with the same fast path, argon2id slots, back-off, refusal counts and
// log budget), and the user JWT permits what the embedded broker's ACL
// allows, on NATS subjects (docs/cluster.md, "Credentials").

// Authorizer checks a client's user name, MQTT client id, remote address
// and password and returns the MQTT topics it may publish on and the topic
// filters it may subscribe to, or an error for a refused client (counted
// and logged by the Authorizer). cmd/firewatch adapts broker.Auth, the
// embedded broker's check, to it.
type Authorizer func(user, clientID, remote string, password []byte) (publish, subscribe []string, err error)

// AuthRequestSubject is where the servers send authorization requests.
const AuthRequestSubject = "$SYS.REQ.USER.AUTH"

// AuthQueue is the queue group of the instances' callout subscriptions:
// each request is answered by one of them.
const AuthQueue = "firewatch-auth"

// calloutWorkers bounds the requests checked at once per instance (each
// may wait for an argon2id slot; the server's callout timeout is 2 s).
const calloutWorkers = 64

// Callout answers the NATS servers' authorization requests from auth.
type Callout struct {
	cfg     Config
	auth    Authorizer
	issuer  nkeys.KeyPair
	log     *slog.Logger
	results *prometheus.CounterVec
	work    chan struct{}
	ready   chan struct{}
	// share, when set (Share), exchanges admissions with the other
	// instances (callout_share.go).
	share *share
}

// NewCallout reads the issuer's seed (cfg.CalloutSeed) and returns the
// responder; Run serves it. Refusals are counted and logged by auth
// (broker.Auth: firewatch_broker_denied_total{reason}); every answer is counted in
// firewatch_cluster_auth_total{result}.
func NewCallout(cfg Config, auth Authorizer, reg prometheus.Registerer, log *slog.Logger) (*Callout, error) {
	seed, err := os.ReadFile(cfg.CalloutSeed)
	if err != nil {
		return nil, fmt.Errorf("cluster.callout_seed: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, fmt.Errorf("cluster.callout_seed: %w", err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("cluster.callout_seed: not an account seed (SA…; nsc generate nkey --account)")
	}
	c := &Callout{cfg: cfg, auth: auth, issuer: kp, log: log, work: make(chan struct{}, calloutWorkers), ready: make(chan struct{}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firewatch_cluster_auth_total",
			Help: "Authorization requests of the NATS nodes answered by this instance, by result (allowed, denied, error: a request that could not be read or answered).",
		}, []string{"result"})}
	for _, r := range []string{"allowed", "denied", "error"} {
		c.results.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(c.results); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Issuer returns the issuer's public account key (the servers'
// auth_callout.issuer).
func (c *Callout) Issuer() string {
	pub, _ := c.issuer.PublicKey()
	return pub
}

// Authorize makes Run serve c too (cluster.callout_seed).
func (s *Source) Authorize(c *Callout) { s.callout = c }

// Ready is closed once the subscription is in place on the node Run
// connected to (the others learn of it over the routes a moment later).
func (c *Callout) Ready() <-chan struct{} { return c.ready }

// Run connects as the service user and answers requests until ctx ends.
func (c *Callout) Run(ctx context.Context) error {
	opts := []nats.Option{nats.Name("firewatch auth " + c.cfg.instance()),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(2), c.cfg.userInfo()}
	nc, err := nats.Connect(c.cfg.URLs, opts...)
	if err != nil {
		return fmt.Errorf("nats (auth callout): %w", err)
	}
	defer nc.Close()
	if c.share != nil {
		stop, err := c.share.run(nc)
		if err != nil {
			return fmt.Errorf("nats (auth callout): %w", err)
		}
		defer stop()
	}
	sub, err := nc.QueueSubscribe(AuthRequestSubject, AuthQueue, func(m *nats.Msg) {
		select {
		case c.work <- struct{}{}:
		default:
			// Too many at once: the server times the request out and
			// refuses the client, which retries.
			c.results.WithLabelValues("error").Inc()
			return
		}
		go func() {
			defer func() { <-c.work }()
			c.answer(m)
		}()
	})
	if err != nil {
		return fmt.Errorf("nats (auth callout): %w", err)
	}
	if nc.Flush() == nil {
		close(c.ready)
	}
	<-ctx.Done()
	sub.Drain()
	return nil
}

// answer checks one request and responds.
func (c *Callout) answer(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil || !nkeys.IsValidPublicServerKey(req.Issuer) {
		c.results.WithLabelValues("error").Inc()
		if c.log != nil {
			c.log.Warn("auth callout: unreadable authorization request", "err", err)
		}
		return
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	user, err := c.userJWT(req)
	if err != nil {
		resp.Error = err.Error()
		c.results.WithLabelValues("denied").Inc()
	} else {
		resp.Jwt = user
		c.results.WithLabelValues("allowed").Inc()
	}
	token, err := resp.Encode(c.issuer)
	if err != nil {
		c.results.WithLabelValues("error").Inc()
		return
	}
	m.Respond([]byte(token))
}

// userJWT returns the signed user of an authorized request.
func (c *Callout) userJWT(req *jwt.AuthorizationRequestClaims) (string, error) {
	ci := &req.ClientInformation
	pub, sub, err := c.auth(req.ConnectOptions.Username, ci.MQTT, ci.Host, []byte(req.ConnectOptions.Password))
	if err != nil {
		return "", err
	}
	u := jwt.NewUserClaims(req.UserNkey)
	u.Name = req.ConnectOptions.Username
	u.Audience = c.cfg.CalloutAccount
	// Devices and gateways speak MQTT only: a NATS client with a device's
	// secret gets nothing.
	u.AllowedConnectionTypes.Add(jwt.ConnectionTypeMqtt)
	u.Pub.Allow.Add(Subjects(pub)...)
	// nats-server checks a publish after the subject mapping: the
	// uplink's subjects in their partitions.
	u.Pub.Allow.Add(Partitioned(Subjects(pub), c.cfg.Partitions)...)
	u.Sub.Allow.Add(Subjects(sub)...)
	if len(u.Pub.Allow) == 0 {
		u.Pub.Deny.Add(">")
	}
	if len(u.Sub.Allow) == 0 {
		u.Sub.Deny.Add(">")
	}
	return u.Encode(c.issuer)
}

// Subjects returns the NATS subjects of MQTT topic filters as nats-server
// converts them: '/' separates tokens, a '.' inside a level is "//", '+' is
// '*' and a trailing '#' is '>' — and, since MQTT's "a/#" also matches "a",
// which the server subscribes as a subject of its own, the parent too.
func Subjects(filters []string) []string {
	var out []string
	for _, f := range filters {
		levels := strings.Split(f, "/")
		hash := levels[len(levels)-1] == "#"
		for i, l := range levels {
			switch l {
			case "+":
				levels[i] = "*"
			case "#":
				levels[i] = ">"
			default:
				levels[i] = strings.ReplaceAll(l, ".", "//")
			}
		}
		out = append(out, strings.Join(levels, "."))
		if hash && len(levels) > 1 {
			out = append(out, strings.Join(levels[:len(levels)-1], "."))
		}
	}
	return out
}

// userInfo is the service user's credential option (none without a user).
func (c *Config) userInfo() nats.Option {
	if c.User == "" {
		return func(*nats.Options) error { return nil }
	}
	return nats.UserInfo(c.User, c.Password)
}

// Partitioned returns the subjects of the uplink among subjects as the
// servers' mapping (ServerMappings) turns them: fw.v1.up.{id}.{kind} into
// fwp.{PartitionOf(id)}.…, fw.v1.up.gw.{id}.{kind} by the second token; a
// wildcard id into any partition.
func Partitioned(subjects []string, p int) []string {
	var out []string
	for _, s := range subjects {
		toks := strings.Split(s, ".")
		if len(toks) < 5 || len(toks) > 6 || toks[0] != "fw" || toks[1] != "v1" || toks[2] != "up" {
			continue
		}
		id := toks[3]
		if len(toks) == 6 {
			id = toks[4]
		}
		part := "*"
		if id != "*" {
			part = strconv.Itoa(PartitionOf(strings.ReplaceAll(id, "//", "."), p))
		}
		out = append(out, SubjectPrefix+"."+part+"."+s)
	}
	return out
}
