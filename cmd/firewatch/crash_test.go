package main

import (
	"bytes"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestCrash kills a real firewatch process with SIGKILL twice — once while
// it is taking in a burst of fire alarms with the dispatch receiver down (so
// every push is pending), once while it is delivering the pushes — and
// checks after the last restart that every alarm is stored exactly once and
// every push was delivered, repeats only under the same idempotency key.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the firewatch binary")
	}
	mq := testenv.StartMosquitto(t)
	db := testenv.StartInfluxDB(t)
	bin := buildFirewatch(t)
	rcv := newCrashReceiver(t)

	const devices = 60
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(crashLedger(devices, rcv.url()+"/dispatch")), 0o600); err != nil {
		t.Fatal(err)
	}
	fw := newFWProcess(t, bin, ledger, mq, db, dir, "firewatch-crash",
		"-influx.flush_interval", "100ms",
		"-alarms.brigade_endpoint", rcv.url()+"/119",
		"-alarms.retry_min", "50ms", "-alarms.retry_max", "200ms", "-log.level", "info")
	t.Cleanup(fw.kill)

	// 1. Receiver down; a burst of smoke alarms; SIGKILL halfway through.
	rcv.down()
	fw.start()
	pub := newPublisher(t, mq.URL)
	go func() {
		for i := range devices {
			pub.c.Publish(fmt.Sprintf("fw/v1/up/sm-c-%03d/event", i), 1, false,
				fmt.Sprintf(`{"ts":%d,"seq":1,"event":"smoke_alarm"}`, time.Now().UnixMilli()))
		}
	}()
	stored := 0
	testenv.WaitFor(t, 30*time.Second, "half the alarms stored", func() bool {
		stored = len(fw.alarms())
		return stored >= devices/2
	})
	fw.kill()
	t.Logf("killed with %d of %d alarms stored", stored, devices)

	// 2. Restart with the receiver still down: the broker redelivers what
	// was not acknowledged; every alarm is stored, none twice.
	fw.start()
	testenv.WaitFor(t, 30*time.Second, "every alarm stored", func() bool { return len(fw.alarms()) == devices })
	if n := rcv.total(); n != 0 {
		t.Fatalf("receiver was down but counted %d pushes", n)
	}

	// 3. Receiver up (and slow); SIGKILL while the pushes are delivered.
	rcv.up()
	testenv.WaitFor(t, 30*time.Second, "some pushes delivered", func() bool { return rcv.total() >= 20 })
	fw.kill()
	t.Logf("killed with %d of %d pushes delivered", rcv.total(), 2*devices)

	// 4. Restart: everything left is delivered.
	fw.start()
	want := map[string]bool{} // path + " " + idempotency key
	var list []alarms.Alarm
	testenv.WaitFor(t, 60*time.Second, "every push delivered", func() bool {
		list = fw.alarms()
		for _, a := range list {
			want["/dispatch/"+a.Station+" "+a.ID+"-raised"] = true
			want["/119 "+a.ID+"-raised"] = true
		}
		return len(list) == devices && rcv.has(want)
	})
	fw.stop()

	seen := map[string]string{}
	for _, a := range list {
		if prev, dup := seen[a.Device]; dup {
			t.Errorf("device %s has two alarms: %s and %s", a.Device, prev, a.ID)
		}
		seen[a.Device] = a.ID
		if a.Severity != "fire" || !a.Open {
			t.Errorf("alarm %s: %s open %v", a.ID, a.Severity, a.Open)
		}
	}
	if len(seen) != devices {
		t.Errorf("%d devices with an alarm, want %d", len(seen), devices)
	}
	dups, unexpected := rcv.check(want)
	for _, k := range unexpected {
		t.Errorf("receiver got an unexpected push %s", k)
	}
	// Delivery is at least once: a push in flight when firewatch was killed
	// may arrive again, with the same key and body. At most one per
	// endpoint (each has one worker) for the one kill during delivery.
	if dups > devices+1 {
		t.Errorf("%d repeated deliveries, want at most %d (one in flight per endpoint at the kill)", dups, devices+1)
	}
	t.Logf("%d alarms, %d pushes delivered, %d repeated deliveries (same key and body)", len(list), len(want), dups)
}

// buildFirewatch builds this package's binary into a temporary directory.
func buildFirewatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firewatch")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// crashLedger has n smoke detectors, each in a village of its own with a
// station of its own, so that the burst is n separate alarms rather than a
// storm grouped into one incident (TestStorm covers that).
func crashLedger(n int, endpoint string) string {
	var b strings.Builder
	b.WriteString("places:\n  \"450204\": 柳州市柳南区\n  \"450204002\": 潭西街道\nstations:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: st-%03d\n    name: 第%d微型消防站\n    grids: [\"450204002%03d\"]\n    endpoint: %s/st-%03d\n",
			i, i+1, i+1, endpoint, i)
	}
	b.WriteString("devices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: sm-c-%03d\n    kind: smoke\n    model: JTY-GD-NB\n    grid: \"450204002%03d\"\n    address: 鹅山路%d号\n",
			i, i+1, i+1)
	}
	return b.String()
}

// newFWProcess is the firewatch binary bin on ledger, with an external
// broker mq and InfluxDB db, its alarm store in dir, under MQTT client id
// clientID and an HTTP API on a free loopback port; extra flags come last
// (and win).
func newFWProcess(t *testing.T, bin, ledger string, mq *testenv.Mosquitto, db *testenv.InfluxDB, dir, clientID string, extra ...string) *fwProcess {
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	args := []string{
		"-ledger", ledger, "-mqtt.broker", mq.URL, "-mqtt.client_id", clientID,
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-alarms.db", filepath.Join(dir, "alarms.db"), "-alarms.secret", e2eSecret,
		"-http.listen", httpAddr,
	}
	return &fwProcess{t: t, bin: bin, api: "http://" + httpAddr, args: append(args, extra...)}
}

// fwProcess is the firewatch binary, started and killed by the test.
type fwProcess struct {
	t    testing.TB
	bin  string
	args []string
	api  string

	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer // guarded by mu
	mu   sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *fwProcess) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout = lockedWriter{&p.mu, &p.out}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start firewatch: %v", err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(p.done)
	p.t.Cleanup(func() {
		if p.t.Failed() {
			p.mu.Lock()
			p.t.Logf("firewatch output:\n%s", p.out.String())
			p.mu.Unlock()
		}
	})
	testenv.WaitFor(p.t, 30*time.Second, "firewatch healthy", func() bool {
		select {
		case <-p.done:
			p.t.Fatalf("firewatch exited while starting")
		default:
		}
		resp, err := http.Get(p.api + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *fwProcess) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// stop asks for an orderly shutdown.
func (p *fwProcess) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("firewatch did not stop within 30 s of SIGINT")
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

func (p *fwProcess) alarms() []alarms.Alarm {
	resp, err := http.Get(p.api + "/api/v1/alarms?limit=1000")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct{ Alarms []alarms.Alarm }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Alarms
}

// crashReceiver is a dispatch endpoint on a fixed loopback port that can
// go down (connection refused) and come back. It takes 10 ms per push, so
// that a burst takes long enough to be interrupted.
type crashReceiver struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	srv    *http.Server
	bodies map[string][]string // path + " " + key → each body received
	n      int
}

func newCrashReceiver(t *testing.T) *crashReceiver {
	r := &crashReceiver{t: t, addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), bodies: map[string][]string{}}
	r.up()
	t.Cleanup(r.down)
	return r
}

func (r *crashReceiver) url() string { return "http://" + r.addr }

func (r *crashReceiver) up() {
	r.t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
}

func (r *crashReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *crashReceiver) serve(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	if err := alarms.Verify([]byte(e2eSecret), req.Header.Get(alarms.HeaderTimestamp), b, req.Header.Get(alarms.HeaderSignature)); err != nil {
		r.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	time.Sleep(10 * time.Millisecond) // a slow platform, not synchronisation
	k := req.URL.Path + " " + req.Header.Get(alarms.HeaderIdempotencyKey)
	r.mu.Lock()
	r.bodies[k] = append(r.bodies[k], string(b))
	r.n++
	r.mu.Unlock()
}

func (r *crashReceiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *crashReceiver) has(want map[string]bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range want {
		if len(r.bodies[k]) == 0 {
			return false
		}
	}
	return true
}

// check returns how many deliveries repeated an earlier one, and the keys
// that were not wanted. A repeat must carry the very same body.
func (r *crashReceiver) check(want map[string]bool) (dups int, unexpected []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, bodies := range r.bodies {
		if !want[k] {
			unexpected = append(unexpected, k)
		}
		for _, b := range bodies[1:] {
			dups++
			if b != bodies[0] {
				r.t.Errorf("push %s delivered again with a different body", k)
			}
		}
	}
	return dups, unexpected
}
