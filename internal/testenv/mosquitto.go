package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mosquitto is a running Mosquitto broker on a loopback port, with anonymous
// access and persistence in a temporary directory so that persistent
// sessions and their queued QoS 1 messages survive Stop and Start.
type Mosquitto struct {
	// URL is the broker address for an MQTT client: tcp://127.0.0.1:PORT.
	URL string
	// Port is the TCP port of the listener.
	Port int

	t    testing.TB
	conf string
	proc *process
}

// mosquittoGrace is how long Stop waits for the broker to save its
// persistence file and exit before killing it.
const mosquittoGrace = 10 * time.Second

// StartMosquitto starts a broker for the test and stops it when the test
// ends. It skips the test (fails it under CI=true) when mosquitto is not
// installed: it looks in PATH, then /usr/sbin and /usr/local/sbin.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	bin, ok := findBinary("mosquitto", []string{os.Getenv("MOSQUITTO")}, "/usr/sbin", "/usr/local/sbin")
	if !ok {
		Skip(t, "mosquitto not found in $MOSQUITTO, PATH, /usr/sbin or /usr/local/sbin: install the Debian package mosquitto")
	}
	dir := t.TempDir()
	m := &Mosquitto{t: t, conf: filepath.Join(dir, "mosquitto.conf")}
	// Another process may take the free port before the broker binds it;
	// then the broker exits at once and a new port is tried.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		m.Port = FreePort(t)
		m.URL = "tcp://127.0.0.1:" + strconv.Itoa(m.Port)
		if err = os.WriteFile(m.conf, []byte(mosquittoConfig(m.Port, dir)), 0o644); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		m.proc = newProcess("mosquitto", bin, "-c", m.conf)
		if err = m.start(); !errors.Is(err, errExited) {
			break
		}
	}
	t.Cleanup(func() {
		m.proc.stop(mosquittoGrace)
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", m.proc.output())
		}
	})
	if err != nil {
		t.Fatalf("mosquitto: %v\n%s", err, m.proc.output())
	}
	return m
}

func mosquittoConfig(port int, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", port)
	b.WriteString("allow_anonymous true\n")
	// Persistent sessions (clean session false) and their queued messages
	// survive a restart only with persistence; Mosquitto writes the file on
	// SIGTERM, which Stop sends.
	b.WriteString("persistence true\n")
	fmt.Fprintf(&b, "persistence_location %s/\n", filepath.Join(dir, "data"))
	// Load tests queue far more than the default 1000 messages for a slow
	// or offline persistent subscriber; dropping them would fail the
	// "no QoS 1 message lost" tests for the wrong reason.
	b.WriteString("max_queued_messages 1000000\n")
	b.WriteString("set_tcp_nodelay true\n")
	// Run as root, Mosquitto switches to the user "mosquitto", which cannot
	// write into t.TempDir(); "root" means: stay who you are. As any other
	// user the option has no effect.
	b.WriteString("user root\n")
	b.WriteString("log_dest stderr\n")
	b.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	b.WriteString("log_timestamp_format %Y-%m-%dT%H:%M:%S\n")
	return b.String()
}

// Stop shuts the broker down (saving persistent sessions) and waits for it
// to exit. It is a no-op when the broker is not running.
func (m *Mosquitto) Stop() {
	m.t.Helper()
	m.proc.stop(mosquittoGrace)
}

// Start starts the broker again after Stop, on the same port with the same
// persistence directory, and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatalf("mosquitto: %v\n%s", err, m.proc.output())
	}
}

func (m *Mosquitto) start() error {
	if err := os.MkdirAll(filepath.Join(filepath.Dir(m.conf), "data"), 0o755); err != nil {
		return err
	}
	if err := m.proc.start(); err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(m.Port)
	err := waitReady(m.proc, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		m.proc.stop(mosquittoGrace)
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return nil
}

// waitReady polls ready until it succeeds, the process exits (errExited)
// or the deadline passes.
func waitReady(p *process, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	exited := p.exited()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		select {
		case <-exited:
			return fmt.Errorf("%w (%v)", errExited, p.exitErr())
		default:
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("%w (%v)", errExited, p.exitErr())
		case <-tick.C:
		}
	}
}
