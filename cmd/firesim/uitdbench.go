package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/gb26875"
)

// Many UITDs at once (`firesim bench -uitd N`, issue 13): N simulated UITDs connect to firewatch's GB/T
// 26875.3 endpoint over TCP, each sending a keep-alive every 60 s (at a random phase), and within one
// minute a burst of 20 fire alarms from 20 of them (GB/T 45839's burst figure), one every 3 s; firewatch's
// resident memory and CPU, and frame → push latency at the receiver.

const (
	uitdKeepalive = time.Minute
	uitdBurst     = 20
)

// uitdAddr is bench UITD i's address.
func uitdAddr(i int) gb26875.Address {
	var a gb26875.Address
	for k, v := 5, uint64(i+1); k >= 0; k, v = k-1, v>>8 {
		a[k] = byte(v)
	}
	return a
}

// uitdLedger writes the fleet's ledger with n UITDs appended, each with one listed smoke detector
// (uitd-bench-i and fa-bench-i) in the grid of the fleet's first device.
func (b *bench) uitdLedger(n int) (string, error) {
	raw, err := os.ReadFile(b.ledger)
	if err != nil {
		return "", err
	}
	grid := string(b.ledgerL.Devices[0].Grid)
	var sb strings.Builder
	sb.Write(raw)
	if !strings.HasSuffix(sb.String(), "\n") {
		sb.WriteByte('\n')
	}
	for i := range n {
		fmt.Fprintf(&sb, "  - {id: uitd-bench-%d, kind: facility, grid: %q, address: 联网单位%d 消防控制室}\n", i, grid, i)
		fmt.Fprintf(&sb, "  - {id: fa-bench-%d, kind: facility, grid: %q, address: 联网单位%d 3号楼2层走廊}\n", i, grid, i)
	}
	sb.WriteString("uitds:\n")
	for i := range n {
		fmt.Fprintf(&sb, "  - {address: \"%s\", device: uitd-bench-%d, points: [{system: 1, system_addr: 1, type: 42, addr: 0x105, device: fa-bench-%d}]}\n", uitdAddr(i), i, i)
	}
	path := filepath.Join(b.dir, "ledger-uitd.yaml")
	return path, os.WriteFile(path, []byte(sb.String()), 0o600)
}

var cstZone = time.FixedZone("CST", 8*3600)

// uitdConn is one bench UITD's connection: one transaction at a time.
type uitdConn struct {
	mu     sync.Mutex
	c      net.Conn
	addr   gb26875.Address
	serial uint16
	buf    []byte
	ack    [30]byte
}

// send sends an upload (nil: keep-alive) and waits for the 确认.
func (u *uitdConn) send(up *gb26875.Upload) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var adu []byte
	if up != nil {
		var err error
		if adu, err = up.Append(nil); err != nil {
			return err
		}
	}
	u.serial++
	h := gb26875.Header{Serial: u.serial, Major: 1, Time: gb26875.MakeTimeLabel(time.Now().In(cstZone)), Src: u.addr, Command: gb26875.CmdSend}
	u.buf = gb26875.AppendFrame(u.buf[:0], &h, adu)
	u.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := u.c.Write(u.buf); err != nil {
		return err
	}
	_, err := io.ReadFull(u.c, u.ack[:])
	return err
}

// runUITD measures firewatch with n connected UITDs and returns the table.
func (b *bench) runUITD(ctx context.Context, n int) (string, error) {
	ledger, err := b.uitdLedger(n)
	if err != nil {
		return "", err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", benchPort())
	gbAddr := fmt.Sprintf("127.0.0.1:%d", benchPort())
	db := "benchuitd"
	if err := influxQL(b.influxURL, "CREATE DATABASE "+db); err != nil {
		return "", err
	}
	logName := "uitd.firewatch.log"
	fw, err := b.spawn(filepath.Join(b.bin, "firewatch"), logName, "-ledger", ledger, "-http.listen", httpAddr,
		"-influx.url", b.influxURL, "-influx.bucket", db+"/autogen", "-alarms.db", filepath.Join(b.dir, "uitd.alarms.db"),
		"-alarms.secret", "bench-secret-0123456789", "-log.level", "warn", "-mqtt.listen", fmt.Sprintf("127.0.0.1:%d", benchPort()),
		"-mqtt.auth", "none", "-gb26875.listen", gbAddr, "-gb26875.clock_sync_every", "0",
		"-gb26875.max_connections", fmt.Sprint(n+100), "-alarms.storm_window", "0s", "-http.pprof")
	if err != nil {
		return "", err
	}
	defer stop(fw)
	if err := waitHTTP(ctx, "http://"+httpAddr+"/healthz", 60*time.Second); err != nil {
		return "", fmt.Errorf("firewatch: %w (log %s)", err, filepath.Join(b.dir, logName))
	}
	time.Sleep(2 * time.Second) // settle after start: nothing to wait on
	// Resident memory after four garbage collections (through pprof), as in -idle: the ledger's loading
	// leaves garbage that the runtime returns at its own pace.
	rss := func() float64 {
		for range 4 {
			if resp, err := http.Get("http://" + httpAddr + "/debug/pprof/heap?gc=1"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		return vmRSSKiB(fw)
	}
	rss0 := rss()

	// Connect, each with a first keep-alive, 64 at a time.
	t0 := time.Now()
	conns := make([]*uitdConn, n)
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var failed error
	jobs := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c, err := net.DialTimeout("tcp", gbAddr, 30*time.Second)
				if err == nil {
					conns[i] = &uitdConn{c: c, addr: uitdAddr(i)}
					err = conns[i].send(nil)
				}
				if err != nil {
					failMu.Lock()
					failed = fmt.Errorf("UITD %d: %w", i, err)
					failMu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
	}()
	if failed != nil {
		return "", failed
	}
	connect := time.Since(t0)
	rss1 := rss()

	// One minute: keep-alives every 60 s at random phases, and the burst of fire alarms.
	b.rcv.reset()
	cpu0, w0 := cpuSeconds(fw), time.Now()
	runCtx, cancel := context.WithTimeout(ctx, uitdKeepalive)
	defer cancel()
	var kaErr sync.Once
	var kaFailed error
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(rand.N(uitdKeepalive))
			defer t.Stop()
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			if err := c.send(nil); err != nil {
				kaErr.Do(func() { kaFailed = err })
			}
		}()
	}
	for k := range uitdBurst {
		select {
		case <-runCtx.Done():
		case <-time.After(uitdKeepalive / uitdBurst):
		}
		i := k * (n / uitdBurst)
		up := gb26875.Upload{Type: gb26875.TypeComponentState, ComponentStates: []gb26875.ComponentState{{
			Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 42, Addr: 0x105},
			State:     gb26875.CompNormal | gb26875.CompFire, Time: gb26875.MakeTimeLabel(time.Now().In(cstZone))}}}
		b.rcv.expect(fmt.Sprintf("fa-bench-%d", i), time.Now())
		if err := conns[i].send(&up); err != nil {
			return "", fmt.Errorf("fire alarm of UITD %d: %w", i, err)
		}
	}
	<-runCtx.Done()
	wg.Wait()
	cpu1, w1 := cpuSeconds(fw), time.Now()
	time.Sleep(2 * time.Second) // the last pushes on their way
	rss2 := rss()
	lat := b.rcv.fires()
	if kaFailed != nil {
		return "", fmt.Errorf("keep-alive: %w", kaFailed)
	}
	slices.Sort(lat)
	p50, p99 := time.Duration(0), time.Duration(0)
	if len(lat) > 0 {
		p50, p99 = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Many UITDs, measured %s by `firesim bench -uitd %d` (%s): %d simulated UITDs connect over TCP to\n"+
		"firewatch's GB/T 26875.3 endpoint (embedded broker, InfluxDB, alarm store on SQLite), each sends a keep-alive,\n"+
		"then for 60 s one every 60 s at a random phase and, from 20 of them, a fire alarm every 3 s; firewatch's resident\n"+
		"memory (VmRSS, after four garbage collections) before and after the connections and after the minute, its CPU over the\n"+
		"60 s, and each fire alarm from its frame being written to its push at the receiver (p99 of 20 is the slowest).\n\n",
		time.Now().UTC().Format("2006-01-02"), n, cpuModel(), n)
	sb.WriteString("| UITDs | connected in | RSS idle → connected → after MiB | KiB per UITD | CPU over 60 s | fire pushes | frame → push p50 | p99 |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&sb, "| %d | %.1f s | %.0f → %.0f → %.0f | %.1f | %.1f %% of a core | %d/%d | %.1f ms | %.1f ms |\n",
		n, connect.Seconds(), rss0/1024, rss1/1024, rss2/1024, (rss1-rss0)/float64(n),
		100*(cpu1-cpu0)/w1.Sub(w0).Seconds(), len(lat), uitdBurst, float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000)
	return sb.String(), nil
}

// expect records that device id's fire alarm was sent at t.
func (r *latencyReceiver) expect(id string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent == nil {
		r.sent = map[string]time.Time{}
	}
	r.sent[id] = t
}

// fire takes a push: the raise of an expected fire alarm is timed.
func (r *latencyReceiver) fire(rule, transition, id string, now time.Time) {
	if rule != "facility.fire_alarm" || transition != "raised" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.sent[id]; ok {
		r.fired = append(r.fired, now.Sub(t))
		delete(r.sent, id)
	}
}

// fires returns the fire alarms' latencies.
func (r *latencyReceiver) fires() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fired)
}
