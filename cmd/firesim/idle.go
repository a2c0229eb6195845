package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory per idle connection (`firesim bench -idle N`, issue 19): N MQTT
// clients connect, each publishes one QoS 1 reading as a device would and
// then stays connected and silent; the broker process's resident memory
// before and after, divided by N. Measured for Mosquitto and for firewatch
// with its embedded broker.

// idleConnKeepalive is the clients' keepalive: long enough that no PINGREQ
// is due during the measurement.
const idleConnKeepalive = 600

// mqttConnect is a hand-built MQTT 3.1.1 CONNECT with a clean session.
func mqttConnect(clientID string, keepalive uint16) []byte {
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02)
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	return mqttPacket(0x10, body)
}

// mqttPublishQoS1 is a PUBLISH with QoS 1 and packet id 1.
func mqttPublishQoS1(topic string, payload []byte) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, uint16(len(topic)))
	body = append(body, topic...)
	body = append(body, 0, 1)
	body = append(body, payload...)
	return mqttPacket(0x32, body)
}

func mqttPacket(header byte, body []byte) []byte {
	p := []byte{header}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

// openIdle opens n connections to addr, each as one device of the ledger
// that publishes one reading and waits for its PUBACK; it returns them open.
func (b *bench) openIdle(addr string, n int) ([]net.Conn, error) {
	g := newLoadGen(b.ledgerL)
	if n > len(g.devs) {
		return nil, fmt.Errorf("-idle %d: the ledger has %d devices", n, len(g.devs))
	}
	type job struct {
		id, topic string
		payload   []byte
	}
	jobs := make(chan job)
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c, err := idleClient(addr, j.id, j.topic, j.payload)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("client %s: %w", j.id, err)
				}
				if c != nil {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	ts := time.Now().UnixMilli()
	for i := range n {
		topic, p := g.single(nil, ts)
		jobs <- job{id: g.devs[i].ID, topic: topic, payload: p}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

func idleClient(addr, id, topic string, payload []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(mqttConnect(id, idleConnKeepalive)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x: %v", ack, err)
	}
	if _, err := c.Write(mqttPublishQoS1(topic, payload)); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x40 {
		c.Close()
		return nil, fmt.Errorf("PUBACK % x: %v", ack, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// vmRSSKiB is a process's resident memory now.
func vmRSSKiB(c *exec.Cmd) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}

// idleRow is one broker's figure.
type idleRow struct {
	name           string
	n              int
	before, after  float64 // KiB
	perConnKiB     float64
	afterGC        float64 // KiB after garbage collections, 0 when not measured
	perConnGCKiB   float64
	connectSeconds float64
}

// measureIdle connects n idle clients to addr and reads proc's memory
// before and after they settled; with gc (firewatch's pprof endpoint) also
// after four garbage collections, the steady state of a connection idle for
// minutes: the Go runtime collects at least every 2 minutes, and each
// collection halves the goroutine stacks that use less than a quarter.
func (b *bench) measureIdle(name string, proc *exec.Cmd, addr string, n int, metrics, gc string) (idleRow, error) {
	row := idleRow{name: name, n: n}
	time.Sleep(2 * time.Second) // let the process settle after start: nothing to wait on
	if gc != "" {
		// The garbage of start-up (the ledger's YAML) collected before the
		// baseline, so that the collections after the clients connected
		// take back only what the connections left.
		forceGC(gc)
	}
	row.before = vmRSSKiB(proc)
	var m0 map[string]float64
	if metrics != "" {
		m0, _ = scrapeMetrics(metrics)
	}
	t0 := time.Now()
	conns, err := b.openIdle(addr, n)
	if err != nil {
		return row, err
	}
	defer closeAll(conns)
	row.connectSeconds = time.Since(t0).Seconds()
	time.Sleep(5 * time.Second) // idle: the figure is what an idle connection keeps
	row.after = vmRSSKiB(proc)
	row.perConnKiB = (row.after - row.before) / float64(n)
	if m1, err := scrapeMetrics(metrics); metrics != "" && err == nil && m0 != nil {
		for _, k := range []string{"go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines"} {
			fmt.Fprintf(b.out, "%s: %s %.0f → %.0f, %.1f per connection\n", name, k, m0[k], m1[k], (m1[k]-m0[k])/float64(n))
		}
	}
	if gc != "" {
		forceGC(gc)
		row.afterGC = vmRSSKiB(proc)
		row.perConnGCKiB = (row.afterGC - row.before) / float64(n)
		if m2, err := scrapeMetrics(metrics); err == nil && m0 != nil {
			for _, k := range []string{"go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes"} {
				fmt.Fprintf(b.out, "%s: after GC %s %.1f per connection\n", name, k, (m2[k]-m0[k])/float64(n))
			}
		}
	}
	fmt.Fprintf(b.out, "%s: %d idle connections: RSS %.0f → %.0f MiB, %.1f KiB per connection (connected in %.1f s); after GC %.0f MiB, %.1f KiB\n",
		name, n, row.before/1024, row.after/1024, row.perConnKiB, row.connectSeconds, row.afterGC/1024, row.perConnGCKiB)
	return row, nil
}

// runIdle measures Mosquitto and firewatch's embedded broker and returns the
// table.
func (b *bench) runIdle(ctx context.Context, n int) (string, error) {
	var rows []idleRow
	r, err := b.measureIdle("Mosquitto", b.mosquitto, strings.TrimPrefix(b.mqURL, "tcp://"), n, "", "")
	if err != nil {
		return "", err
	}
	rows = append(rows, r)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", benchPort())
	listen := fmt.Sprintf("127.0.0.1:%d", benchPort())
	db := "benchidle"
	if err := influxQL(b.influxURL, "CREATE DATABASE "+db); err != nil {
		return "", err
	}
	fw, err := b.spawn(filepath.Join(b.bin, "firewatch"), "idle.firewatch.log", "-ledger", b.ledger, "-http.listen", httpAddr,
		"-influx.url", b.influxURL, "-influx.bucket", db+"/autogen", "-alarms.db", filepath.Join(b.dir, "idle.alarms.db"),
		"-alarms.secret", "bench-secret-0123456789", "-log.level", "warn", "-mqtt.listen", listen, "-mqtt.auth", "none", "-http.pprof")
	if err != nil {
		return "", err
	}
	defer stop(fw)
	if err := waitHTTP(ctx, "http://"+httpAddr+"/healthz", 30*time.Second); err != nil {
		return "", fmt.Errorf("firewatch: %w (log %s)", err, filepath.Join(b.dir, "idle.firewatch.log"))
	}
	if r, err = b.measureIdle("firewatch, embedded broker", fw, listen, n, "http://"+httpAddr+"/metrics",
		"http://"+httpAddr+"/debug/pprof/heap?gc=1"); err != nil {
		return "", err
	}
	rows = append(rows, r)
	if len(rows) < 2 {
		return "", errors.New("idle: nothing measured")
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Memory per idle connection, measured %s by `firesim bench -idle %d`: %d MQTT clients connect (clean session,\n"+
		"keepalive %d s), each publishes one QoS 1 reading as its device and then stays silent; resident memory (VmRSS) of the\n"+
		"broker's process 2 s after its start (for firewatch after four garbage collections through its pprof endpoint) and 5 s\n"+
		"after the last client connected, divided by the clients; for firewatch also after four more garbage collections, as the\n"+
		"Go runtime's periodic collections (at least every 2 minutes) leave it.\n\n",
		time.Now().UTC().Format("2006-01-02"), n, n, idleConnKeepalive)
	sb.WriteString("| broker | connections | RSS before MiB | RSS after MiB | KiB per idle connection | after 4 GCs |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		gc := "–"
		if r.afterGC > 0 {
			gc = fmt.Sprintf("%.1f", r.perConnGCKiB)
		}
		fmt.Fprintf(&sb, "| %s | %d | %.0f | %.0f | %.1f | %s |\n", r.name, r.n, r.before/1024, r.after/1024, r.perConnKiB, gc)
	}
	return sb.String(), nil
}

// forceGC runs four garbage collections through firewatch's pprof endpoint
// (gc: its heap profile URL with gc=1).
func forceGC(gc string) {
	for range 4 {
		if resp, err := http.Get(gc); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
