package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// Issue 15: a real 3-node NATS cluster with JetStream and MQTT for the
// cluster mode's tests.

// NATSNode is one nats-server of a NATSCluster.
type NATSNode struct {
	// Name is the node's server_name (n1, n2, n3).
	Name string
	// URL is its client address for NATS clients: nats://127.0.0.1:PORT.
	URL string
	// MQTT is its MQTT listener for devices: tcp://127.0.0.1:PORT.
	MQTT string
	// Monitor is its monitoring endpoint: http://127.0.0.1:PORT.
	Monitor string

	conf string
	proc *process
}

// NATSCluster is a running cluster of three nats-server processes on
// loopback ports, routed to each other, each with JetStream (its own store
// directory under t.TempDir()) and an MQTT listener.
type NATSCluster struct {
	Nodes []*NATSNode
	// Callout is the auth callout's keys and service user, nil without
	// WithAuthCallout.
	Callout *NATSCallout
	t       testing.TB
}

// NATSCallout is the auth callout of a cluster started WithAuthCallout
// (issue 15, docs/cluster.md "Credentials"): every node sends the
// authorization of each connection but the service user's to
// $SYS.REQ.USER.AUTH, where firewatch answers with user JWTs signed by
// the issuer's account key.
type NATSCallout struct {
	// Account holds the service user, the devices' users, the subject
	// mappings and the streams.
	Account string
	// User and Password are firewatch's service user (the callout's
	// auth_users), for its NATS and MQTT clients.
	User, Password string
	// SeedFile holds the issuer's account seed (SA…); Issuer is its
	// public key (A…).
	SeedFile, Issuer string
}

// NATSOption is an option of StartNATSCluster.
type NATSOption func(*natsOptions)

type natsOptions struct{ callout bool }

// WithAuthCallout turns the nodes' auth callout on (NATSCluster.Callout).
func WithAuthCallout() NATSOption { return func(o *natsOptions) { o.callout = true } }

// natsReadyTimeout bounds a node's start: JetStream on a cluster waits for
// a meta leader, which needs two of the three nodes.
const (
	natsReadyTimeout = 60 * time.Second
	natsGrace        = 10 * time.Second
)

// NATSServerBinary returns the nats-server to run: $NATS_SERVER, then
// <repo root>/bin/nats-server (make tools), then PATH. It skips the test
// (fails it under CI=true) when there is none.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("NATS_SERVER")}
	if root, err := RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "bin", "nats-server"))
	}
	bin, ok := findBinary("nats-server", candidates)
	if !ok {
		Skip(t, "nats-server not found in $NATS_SERVER, <repo>/bin/nats-server or PATH: "+
			"make tools (GOBIN=$PWD/bin go install github.com/nats-io/nats-server/v2@v2.15.2)")
	}
	return bin
}

// StartNATSCluster starts three nats-server nodes routed into one cluster,
// each with JetStream and MQTT, and returns once every node reports itself
// healthy (/healthz, which waits for JetStream's meta leader). extra is
// appended to every node's configuration (subject mappings: the cluster
// mode's partitioning is server configuration). The nodes stop when the
// test ends.
func StartNATSCluster(t testing.TB, extra string, opts ...NATSOption) *NATSCluster {
	t.Helper()
	bin := NATSServerBinary(t)
	dir := t.TempDir()
	c := &NATSCluster{t: t}
	var o natsOptions
	for _, f := range opts {
		f(&o)
	}
	if o.callout {
		c.Callout = newNATSCallout(t, dir)
		extra = c.Callout.config(extra)
	}
	// A name of its own: a route that reaches another test's node (a free
	// port taken again by a concurrent test, a killed node restarted) is
	// refused for the name instead of joining the two clusters.
	var nb [6]byte
	rand.Read(nb[:])
	name := "fwtest-" + hex.EncodeToString(nb[:])
	routes := make([]int, 3)
	for i := range routes {
		routes[i] = FreePort(t)
	}
	var routeURLs []string
	for _, p := range routes {
		routeURLs = append(routeURLs, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range 3 {
		n := &NATSNode{Name: "n" + strconv.Itoa(i+1), conf: filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))}
		client, mqttPort, mon := FreePort(t), FreePort(t), FreePort(t)
		n.URL = fmt.Sprintf("nats://127.0.0.1:%d", client)
		n.MQTT = fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort)
		n.Monitor = fmt.Sprintf("http://127.0.0.1:%d", mon)
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\n", n.Name)
		fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", client)
		fmt.Fprintf(&b, "http: 127.0.0.1:%d\n", mon)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}\n",
			filepath.Join(dir, n.Name+"-js"))
		fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: 127.0.0.1:%d\n  routes: [\n", name, routes[i])
		for _, r := range routeURLs {
			fmt.Fprintf(&b, "    %s\n", r)
		}
		b.WriteString("  ]\n}\n")
		fmt.Fprintf(&b, "mqtt {\n  listen: 127.0.0.1:%d\n}\n", mqttPort)
		b.WriteString(extra)
		b.WriteString("\n")
		if err := os.WriteFile(n.conf, []byte(b.String()), 0o644); err != nil {
			t.Fatalf("nats-server: %v", err)
		}
		n.proc = newProcess("nats-server "+n.Name, bin, "-c", n.conf)
		c.Nodes = append(c.Nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.proc.stop(natsGrace)
		}
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("nats-server %s output:\n%s", n.Name, n.proc.output())
			}
		}
	})
	// All three first: a node's JetStream is healthy only once a meta
	// leader is elected, which needs a quorum.
	for _, n := range c.Nodes {
		if err := n.proc.start(); err != nil {
			t.Fatalf("nats-server %s: %v", n.Name, err)
		}
	}
	for _, n := range c.Nodes {
		if err := c.waitHealthy(n); err != nil {
			t.Fatalf("nats-server %s: %v\n%s", n.Name, err, n.proc.output())
		}
	}
	return c
}

// newNATSCallout makes the issuer's account key (its seed in a file of
// dir) and the service user's password.
func newNATSCallout(t testing.TB, dir string) *NATSCallout {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatalf("nkeys: %v", err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	f := filepath.Join(dir, "callout.nk")
	if err := os.WriteFile(f, seed, 0o600); err != nil {
		t.Fatalf("nkeys: %v", err)
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	return &NATSCallout{Account: "FIREWATCH", User: "firewatch", Password: hex.EncodeToString(pw), SeedFile: f, Issuer: pub}
}

// config is the nodes' accounts and authorization, with extra (mappings)
// inside the account: a mapping applies to one account.
func (co *NATSCallout) config(extra string) string {
	return fmt.Sprintf(`accounts {
  %s {
    jetstream: enabled
    users: [ { user: %q, password: %q } ]
%s
  }
}
authorization {
  auth_callout {
    issuer: %s
    auth_users: [ %q ]
    account: %s
  }
}
`, co.Account, co.User, co.Password, extra, co.Issuer, co.User, co.Account)
}

// URLs returns the client URLs of every node, comma-separated as NATS
// clients take them.
func (c *NATSCluster) URLs() string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, n.URL)
	}
	return strings.Join(u, ",")
}

// Kill kills node i with SIGKILL (no shutdown, no flush) and waits for it
// to exit.
func (c *NATSCluster) Kill(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	n.proc.kill()
}

// Start starts node i again after Kill, with the same configuration and
// store, and waits until it is healthy.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	if err := n.proc.start(); err != nil {
		c.t.Fatalf("nats-server %s: %v", n.Name, err)
	}
	if err := c.waitHealthy(n); err != nil {
		c.t.Fatalf("nats-server %s: %v\n%s", n.Name, err, n.proc.output())
	}
}

// Output returns what node i wrote so far.
func (c *NATSCluster) Output(i int) string { return c.Nodes[i].proc.output() }

func (c *NATSCluster) waitHealthy(n *NATSNode) error {
	var user, pass string
	if c.Callout != nil {
		user, pass = c.Callout.User, c.Callout.Password
	}
	client := &http.Client{Timeout: 2 * time.Second}
	addr := strings.TrimPrefix(n.MQTT, "tcp://")
	return waitReady(n.proc, natsReadyTimeout, func() error {
		resp, err := client.Get(n.Monitor + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		return mqttConnect(addr, user, pass)
	})
}

// mqttConnect sends an MQTT 3.1.1 CONNECT (clean session, client id
// "testenv-ready", keep-alive 10 s; MQTT 3.1.1, 3.1) and expects CONNACK
// return code 0 (3.2): nats-server answers it only once its MQTT streams
// exist in JetStream, which a bare TCP connect does not show.
func mqttConnect(addr, user, pass string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return fmt.Errorf("mqtt listener: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	id := "testenv-ready"
	var p []byte
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0xc0 // user name, password (3.1.2.8, 3.1.2.9)
	}
	p = append(p, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, flags, 0x00, 0x0a)
	for _, f := range []string{id, user, pass} {
		if f == "" && f != id {
			continue
		}
		p = append(p, byte(len(f)>>8), byte(len(f)))
		p = append(p, f...)
	}
	if _, err := conn.Write(append([]byte{0x10, byte(len(p))}, p...)); err != nil {
		return fmt.Errorf("mqtt connect: %w", err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return fmt.Errorf("mqtt connack: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 0x02 || ack[3] != 0 {
		return fmt.Errorf("mqtt connack % x", ack)
	}
	conn.Write([]byte{0xe0, 0x00}) // DISCONNECT
	return nil
}

// kill sends SIGKILL to the process group and waits for it to exit. It is
// a no-op when the process is not running.
func (p *process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	kill(cmd)
	<-done
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	fmt.Fprintf(p.out, "--- %s: killed (%v)\n", time.Now().Format(time.RFC3339Nano), p.exitErr())
}
