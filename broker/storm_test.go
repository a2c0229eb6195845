package broker

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// cheapHash is a valid secret_hash with the smallest argon2id parameters:
// for tests of the paths around the KDF, where its cost is not the point.
func cheapHash(secret, salt string) string {
	b64 := base64.RawStdEncoding
	key := argon2.IDKey([]byte(secret), []byte(salt), 1, 64, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", b64.EncodeToString([]byte(salt)), b64.EncodeToString(key))
}

// cheapLedger is n smoke detectors sm-0… with secret "secret-{i}" and
// cheap hashes.
func cheapLedger(t testing.TB, n int) *devices.Ledger {
	t.Helper()
	var y strings.Builder
	y.WriteString("stations:\n  - {id: st, name: S, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {id: sm-%d, kind: smoke, grid: \"450204002003\", secret_hash: \"%s\"}\n", i, cheapHash(fmt.Sprintf("secret-%d", i), "salt-of-the-storm"))
	}
	l, err := devices.ParseLedger("storm.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// counterValue reads a counter of reg by name and label value.
func counterValue(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestStormColdConcurrentOneAddress: valid CONNECTs from one address
// without failures are checked side by side (up to addrChecks), not
// refused as busy while one runs (before issue 15's fix the second and
// third were refused at once and waited for the devices' retry timers:
// 300 devices behind one NAT took 89 s in make cluster).
func TestStormColdConcurrentOneAddress(t *testing.T) {
	l, secret := stormLedger(t, addrChecks)
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	a.kdf = make(chan struct{}, addrChecks) // a slot each: no waiting for one
	start := make(chan struct{})
	errs := make([]error, addrChecks)
	var wg sync.WaitGroup
	for i := range addrChecks {
		wg.Go(func() {
			<-start
			user := fmt.Sprintf("sm-%d", i)
			_, errs[i] = a.Authorize(user, user, "127.0.0.1:50000", []byte(secret))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("sm-%d, with a valid secret, from a clean address: %v", i, err)
		}
	}
}

// TestStormBruteForceStillBacksOff: concurrency per address does not open
// the door to guessing: a burst of wrong secrets from one address costs at
// most addrChecks argon2id runs, after a failure the address is back to one
// check at a time without waiting, and after freeFailures it backs off; a
// device remembered from before still gets in from there, and a device
// from another, clean address is not held back by the user names the
// guesser tried.
func TestStormBruteForceStillBacksOff(t *testing.T) {
	l := cheapLedger(t, 40)
	reg := prometheus.NewRegistry()
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	// sm-39 was admitted before (from its own NAT address).
	if _, err := a.Authorize("sm-39", "sm-39", "10.0.0.9:1", []byte("secret-39")); err != nil {
		t.Fatal(err)
	}
	const attacker = "198.51.100.7:4000"
	runs := func() float64 { return counterValue(t, reg, "firewatch_broker_secret_checks_total", "argon2id") }
	before := runs()
	// Hold every argon2id slot so that the burst's checks stay running or
	// waiting while all of it arrives.
	for range cap(a.kdf) {
		a.kdf <- struct{}{}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var admitted, returned atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			<-start
			user := fmt.Sprintf("sm-%d", i)
			if _, err := a.Authorize(user, user, attacker, []byte("guess")); err == nil {
				admitted.Add(1)
			}
			returned.Add(1)
		})
	}
	close(start)
	// The slots are released once addrChecks are waiting and the rest
	// were refused (a check waits kdfWait for a slot: ample for this).
	testenv.WaitFor(t, 5*time.Second, "the burst to enter", func() bool {
		a.checkMu.Lock()
		defer a.checkMu.Unlock()
		return a.checking["198.51.100.7"] == addrChecks && returned.Load() == 20-addrChecks
	})
	for range cap(a.kdf) {
		<-a.kdf
	}
	wg.Wait()
	if admitted.Load() != 0 {
		t.Fatal("a wrong secret admitted")
	}
	if n := runs() - before; n > addrChecks {
		t.Fatalf("a burst of 20 wrong secrets from one address cost %v argon2id runs, want at most %d", n, addrChecks)
	}
	if !a.addrFails.known("198.51.100.7") {
		t.Fatal("the burst's failures are not recorded")
	}
	// One at a time now, and back-off after freeFailures.
	for i := range 10 {
		user := fmt.Sprintf("sm-%d", 20+i)
		a.Authorize(user, user, attacker, []byte("guess"))
	}
	if n := runs() - before; n > freeFailures+1 {
		t.Fatalf("30 wrong secrets from one address cost %v argon2id runs, want at most %d", n, freeFailures+1)
	}
	if counterValue(t, reg, "firewatch_broker_denied_total", "backoff") == 0 {
		t.Fatal("the guessing address does not back off")
	}
	// The remembered device behind the same address gets in (fast path);
	// a device the guesser tried gets in from its own clean address.
	if _, err := a.Authorize("sm-39", "sm-39", attacker, []byte("secret-39")); err != nil {
		t.Fatalf("a remembered device behind the guessing address: %v", err)
	}
	if _, err := a.Authorize("sm-25", "sm-25", "10.0.0.25:1", []byte("secret-25")); err != nil {
		t.Fatalf("a device the guesser tried, from its own address: %v", err)
	}
}

// TestStormSharedAdmissions: an admission made by one instance is
// remembered by another that shares its key (cluster mode), so the
// device's next CONNECT there needs no argon2id run; a remembered entry
// admits only the same secret, under the same secret_hash and key.
func TestStormSharedAdmissions(t *testing.T) {
	key := []byte("shared key of both instances....")
	l := cheapLedger(t, 3)
	regB := prometheus.NewRegistry()
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry(), CacheKey: key})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewAuth(AuthConfig{Ledger: l, Registerer: regB, CacheKey: key})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry()}) // its own random key
	if err != nil {
		t.Fatal(err)
	}
	type admission struct {
		user string
		mac  []byte
	}
	var heard []admission
	a.OnAdmit(func(user string, mac []byte) {
		heard = append(heard, admission{user, append([]byte(nil), mac...)})
		b.Remember(user, mac)
		other.Remember(user, mac)
	})
	if _, err := a.Authorize("sm-0", "sm-0", "127.0.0.1:1", []byte("secret-0")); err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 || heard[0].user != "sm-0" || string(heard[0].mac) == "secret-0" {
		t.Fatalf("admissions heard: %+v", heard)
	}
	// b: 127.0.0.1 backing off, so only the fast path can admit.
	for _, x := range []*Auth{b, other} {
		for range 10 {
			x.addrFails.fail("127.0.0.1", time.Now())
		}
	}
	if _, err := b.Authorize("sm-0", "sm-0", "127.0.0.1:2", []byte("secret-0")); err != nil {
		t.Fatalf("b does not remember a's admission: %v", err)
	}
	if n := counterValue(t, regB, "firewatch_broker_secret_checks_total", "argon2id"); n != 0 {
		t.Fatalf("b ran argon2id %v times", n)
	}
	if _, err := b.Authorize("sm-0", "sm-0", "127.0.0.1:2", []byte("secret-1")); err == nil {
		t.Fatal("b admits another secret for a remembered device")
	}
	if _, err := other.Authorize("sm-0", "sm-0", "127.0.0.1:2", []byte("secret-0")); err == nil {
		t.Fatal("an entry made under another key admits")
	}
	b.Remember("sm-1", []byte("short"))
	b.Remember("sm-1", make([]byte, 32))
	if _, err := b.Authorize("sm-1", "sm-1", "127.0.0.1:2", []byte("secret-1")); err == nil {
		t.Fatal("a forged entry admits (or the backing-off address ran argon2id)")
	}
	// The registry rotates sm-0's secret: neither the old entry nor one
	// made under the old hash and heard late admits the old secret.
	live := devices.NewLive(l)
	b.FollowLive(live, nil)
	if _, _, err := live.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "sm-0", Kind: "smoke", Grid: "450204002003", SecretHash: cheapHash("rotated", "another-salt")}}}); err != nil {
		t.Fatal(err)
	}
	b.Remember("sm-0", heard[0].mac)
	b.addrFails.ok("127.0.0.1")
	if _, err := b.Authorize("sm-0", "sm-0", "127.0.0.1:2", []byte("secret-0")); err == nil {
		t.Fatal("the old secret admitted after the rotation")
	}
	if _, err := b.Authorize("sm-0", "sm-0", "127.0.0.1:2", []byte("rotated")); err != nil {
		t.Fatalf("the rotated secret: %v", err)
	}
}

// TestStormReconnectOneAddress: 300 devices that another instance admitted
// (cluster mode: the instance that did not answer their last CONNECT)
// reconnect at once from one address, 127.0.0.1, over MQTT to an embedded
// broker whose checks share that instance's key: all are connected, with
// no argon2id run, though the address is backing off (which holds back
// argon2id checks only).
func TestStormReconnectOneAddress(t *testing.T) {
	key := []byte("shared key of both instances....")
	l := cheapLedger(t, stormDevices)
	peer, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry(), CacheKey: key})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a, err := NewAuth(AuthConfig{Ledger: l, Registerer: reg, CacheKey: key})
	if err != nil {
		t.Fatal(err)
	}
	peer.OnAdmit(a.Remember)
	for i := range stormDevices {
		user := fmt.Sprintf("sm-%d", i)
		if _, err := peer.Authorize(user, user, "127.0.0.1:1", []byte(fmt.Sprintf("secret-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		a.addrFails.fail("127.0.0.1", time.Now())
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv, err := Start(Config{Addr: addr, Auth: a, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var connected atomic.Int32
	clients := make([]paho.Client, stormDevices)
	t0 := time.Now()
	for i := range stormDevices {
		id := fmt.Sprintf("sm-%d", i)
		clients[i] = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).
			SetClientID(id).SetUsername(id).SetPassword(fmt.Sprintf("secret-%d", i)).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(30 * time.Second).
			SetOnConnectHandler(func(paho.Client) { connected.Add(1) }))
		go clients[i].Connect()
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Disconnect(0)
		}
	})
	testenv.WaitFor(t, 60*time.Second, "300 devices from one address connected", func() bool { return connected.Load() == stormDevices })
	t.Logf("300 reconnects from 127.0.0.1 in %v", time.Since(t0).Round(time.Millisecond))
	if n := counterValue(t, reg, "firewatch_broker_secret_checks_total", "argon2id"); n != 0 {
		t.Fatalf("%v argon2id runs", n)
	}
}

// BenchmarkReconnectStormShared: BenchmarkReconnectStorm's 300 devices
// (real-cost hashes), admitted before by another instance sharing the key.
func BenchmarkReconnectStormShared(b *testing.B) {
	l, secret := stormLedger(b, stormDevices)
	key := []byte("shared key of both instances....")
	for i := 0; i < b.N; i++ {
		a, err := NewAuth(AuthConfig{Ledger: l, Registerer: prometheus.NewRegistry(), CacheKey: key})
		if err != nil {
			b.Fatal(err)
		}
		for j := range stormDevices {
			// What the peer instance that admitted sm-j sent.
			p := a.user(fmt.Sprintf("sm-%d", j))
			mac := a.mac(p, []byte(secret))
			a.Remember(p.id, mac[:])
		}
		b.ReportMetric(storm(b, a, stormDevices, secret, uint64(i)).Seconds(), "s/storm")
	}
}
