package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestKill9AcknowledgedReadingsDurable (issue 15): devices publish QoS 1
// telemetry to the embedded broker at 20,000 readings/s (5,000 messages of
// 4 readings); firewatch is killed with SIGKILL mid-stream and restarted;
// every reading whose message the broker acknowledged (PUBACK) is then in
// InfluxDB, counted exactly by device and timestamp. With
// FW_DURABILITY_MODE=off (acknowledged once in the writer's memory batch,
// as before issue 15) it fails: the readings of the batch in memory at the
// kill are lost.
//
// After the restart each device sends again, as a device does, every
// message it had no PUBACK for, and then every message sent is in InfluxDB:
// the restart checkpoint (written every 5 ms here, with the longest commit
// window, 50 ms, so that checkpoints fall between a message's handling and
// its group commit; before the fix one run in two or three lost resent
// messages) claims only durable
// messages, so no resend is dropped as a duplicate of a message whose
// readings died with the process (decisions.md, "Issue 15: the restart
// checkpoint claims only durable messages").
func TestKill9AcknowledgedReadingsDurable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the firewatch binary")
	}
	db := testenv.StartInfluxDB(t)
	bin := buildFirewatch(t)
	mode := cmpOr(os.Getenv("FW_DURABILITY_MODE"), "wal")

	const devices = 50
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(killLedger(devices)), 0o600); err != nil {
		t.Fatal(err)
	}
	brokerAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	fw := &fwProcess{t: t, bin: bin, api: "http://" + httpAddr, args: []string{
		"-ledger", ledger, "-mqtt.listen", brokerAddr, "-mqtt.auth", "none",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-alarms.db", filepath.Join(dir, "alarms.db"), "-alarms.secret", e2eSecret,
		"-http.listen", httpAddr, "-log.level", "warn", "-durability.mode", mode,
		"-state.interval", "5ms", "-durability.commit_window", "50ms",
	}}
	t.Cleanup(fw.kill)
	fw.start()

	// 5,000 messages/s: each device one every 10 ms, 4 readings each.
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	pubs := make([]*rawPublisher, devices)
	for i := range pubs {
		pubs[i] = dialRawPublisher(t, brokerAddr, fmt.Sprintf("el-k-%03d", i))
	}
	payload := func(i, seq int) string {
		return fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d,"cable_temp_c":31.5,"phase_current_a":12,"voltage_v":221}}`,
			t0+int64(seq), seq, 20+(i+seq)%30)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	start := time.Now()
	killed := false
	for seq := 1; time.Since(start) < 3*time.Second; seq++ {
		<-tick.C
		for i, p := range pubs {
			p.publish(seq, payload(i, seq))
		}
		if !killed && time.Since(start) > 2*time.Second {
			fw.kill() // mid-stream
			killed = true
		}
	}
	tick.Stop()
	acked := map[string]map[int64]bool{} // device → acknowledged ts
	sent, nacked := 0, 0
	var lat []time.Duration
	for _, p := range pubs {
		p.close()
		acked[p.device] = map[int64]bool{}
		for _, seq := range p.ackedSeqs() {
			acked[p.device][t0+int64(seq)] = true
			nacked++
		}
		sent += p.sent()
		lat = append(lat, p.latencies()...)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no message acknowledged before the kill")
	}
	t.Logf("mode %s: %d messages sent, %d acknowledged (%d readings) before the kill; ack latency p50 %v p99 %v (a timed test, not a benchmark)",
		mode, sent, nacked, 4*nacked, lat[len(lat)/2], lat[len(lat)*99/100])

	fw.start() // replays the write-ahead log
	if mode != "off" {
		// The devices send again what was not acknowledged; then every
		// message sent must be stored, not only those acknowledged before
		// the kill.
		resent := 0
		for i, p := range pubs {
			seqs := p.unackedSeqs()
			if len(seqs) == 0 {
				continue
			}
			r := dialRawPublisher(t, brokerAddr, p.device)
			for _, seq := range seqs {
				r.publish(seq, payload(i, seq))
				acked[p.device][t0+int64(seq)] = true
				resent++
			}
			testenv.WaitFor(t, 30*time.Second, p.device+": the resent messages acknowledged", func() bool { return r.outstanding() == 0 })
			r.close()
		}
		t.Logf("after the restart: %d unacknowledged messages sent again and acknowledged", resent)
	}
	var missing int
	var stored map[string]map[int64]bool
	defer func() {
		if t.Failed() {
			t.Logf("%d acknowledged messages (%d readings) not in InfluxDB", missing, 4*missing)
		}
	}()
	testenv.WaitFor(t, 60*time.Second, "every acknowledged reading in InfluxDB", func() bool {
		stored = storedTimes(t, db, t0)
		missing = 0
		for dev, ts := range acked {
			for at := range ts {
				if !stored[dev][at] {
					missing++
				}
			}
		}
		if missing > 0 && mode == "off" && time.Since(start) > 15*time.Second {
			t.Fatalf("mode off: %d of %d acknowledged messages (%d readings) lost", missing, nacked, 4*missing)
		}
		return missing == 0
	})
	// No reading twice: one point per device and time (the replay wrote
	// some again), none that was never sent.
	total := 0
	for dev, ts := range stored {
		for at := range ts {
			if at <= t0 || at > t0+int64(sent/devices+1) {
				t.Errorf("%s: a point at %d that was never sent", dev, at)
			}
		}
		total += len(ts)
	}
	n := db.Count(t, "electrical")
	if n != 4*total {
		t.Errorf("InfluxDB counts %d field values, want 4 per stored message (%d): a point stored twice?", n, 4*total)
	}
	t.Logf("after the restart: every acknowledged reading stored; %d messages stored of %d sent", total, sent)
	fw.stop()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func killLedger(n int) string {
	var b strings.Builder
	b.WriteString("places:\n  \"450204\": 柳州市柳南区\n  \"450204002\": 潭西街道\n  \"450204002003\": 鹅山社区\n")
	b.WriteString("stations:\n  - id: st-k\n    name: 鹅山微型消防站\n    grids: [\"450204002003\"]\n    endpoint: http://127.0.0.1:9/dispatch\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: el-k-%03d\n    kind: electrical\n    model: ARCM300\n    grid: \"450204002003\"\n    address: 鹅山路%d号\n", i, i+1)
	}
	return b.String()
}

// storedTimes returns, by device, the times of the electrical points after
// t0 in InfluxDB (InfluxQL, epoch ms).
func storedTimes(t *testing.T, db *testenv.InfluxDB, t0 int64) map[string]map[int64]bool {
	t.Helper()
	q := fmt.Sprintf(`SELECT residual_current_ma FROM electrical WHERE time > %dms GROUP BY device`, t0)
	resp, err := http.Get(db.URL + "/query?epoch=ms&db=" + db.Database + "&q=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Results []struct {
			Series []struct {
				Tags   map[string]string
				Values [][]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("query: %v", err)
	}
	out := map[string]map[int64]bool{}
	for _, res := range r.Results {
		for _, s := range res.Series {
			m := map[int64]bool{}
			for _, v := range s.Values {
				if f, ok := v[0].(float64); ok {
					m[int64(f)] = true
				}
			}
			out[s.Tags["device"]] = m
		}
	}
	return out
}

// rawPublisher is one device's MQTT 3.1.1 connection, packets built by hand
// (3.1 CONNECT, 3.3 PUBLISH QoS 1, 3.4 PUBACK): it records every PUBACK.
type rawPublisher struct {
	t      testing.TB
	device string
	c      net.Conn
	w      *bufio.Writer

	mu      sync.Mutex
	pending map[uint16]pubRec // packet id → message
	acked   []int
	lat     []time.Duration
	n       int
	dead    bool
	done    chan struct{}
}

type pubRec struct {
	seq int
	at  time.Time
}

func dialRawPublisher(t testing.TB, addr, device string) *rawPublisher {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// CONNECT: "MQTT", level 4, clean session, keep-alive 60 s, client id.
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60}
	body := append(vh, byte(len(device)>>8), byte(len(device)))
	body = append(body, device...)
	pk := append([]byte{0x10}, remLen(len(body))...)
	if _, err := c.Write(append(pk, body...)); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	p := &rawPublisher{t: t, device: device, c: c, w: bufio.NewWriter(c), pending: map[uint16]pubRec{}, done: make(chan struct{})}
	go p.read()
	return p
}

func remLen(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

func (p *rawPublisher) read() {
	defer close(p.done)
	r := bufio.NewReader(p.c)
	var pk [4]byte
	for {
		if _, err := io.ReadFull(r, pk[:]); err != nil {
			return
		}
		if pk[0] != 0x40 || pk[1] != 2 {
			p.t.Errorf("%s: unexpected packet % x", p.device, pk)
			return
		}
		id := binary.BigEndian.Uint16(pk[2:])
		now := time.Now()
		p.mu.Lock()
		if m, ok := p.pending[id]; ok {
			delete(p.pending, id)
			p.acked = append(p.acked, m.seq)
			p.lat = append(p.lat, now.Sub(m.at))
		}
		p.mu.Unlock()
	}
}

func (p *rawPublisher) publish(seq int, payload string) {
	topic := "fw/v1/up/" + p.device + "/telemetry"
	id := uint16(seq%65535 + 1)
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	body = append(body, payload...)
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	p.pending[id] = pubRec{seq, time.Now()}
	p.n++
	p.mu.Unlock()
	p.w.WriteByte(0x32)
	p.w.Write(remLen(len(body)))
	p.w.Write(body)
	if err := p.w.Flush(); err != nil {
		p.mu.Lock()
		p.dead = true
		p.mu.Unlock()
	}
}

func (p *rawPublisher) close() {
	p.c.Close()
	<-p.done
}

func (p *rawPublisher) ackedSeqs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acked)
}

// unackedSeqs is the seqs of the messages sent and not acknowledged.
func (p *rawPublisher) unackedSeqs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, m := range p.pending {
		out = append(out, m.seq)
	}
	slices.Sort(out)
	return out
}

func (p *rawPublisher) sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *rawPublisher) latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lat)
}

// reset forgets the acknowledgements so far.
func (p *rawPublisher) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked, p.lat = nil, nil
}

// outstanding is the number of messages sent and not yet acknowledged.
func (p *rawPublisher) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}
