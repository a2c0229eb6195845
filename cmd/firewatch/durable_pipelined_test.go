package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestDurableOneConnectionManyPerCommit (issue 19): with the write-ahead log
// (durability.mode wal) and the embedded broker, the messages one connection
// sends without waiting for each PUBACK share group commits. Before, the
// connection's reader waited in the broker's hook for each message's
// commit, so one connection — a bridge, a busy gateway — got one message per
// commit (a few hundred a second at the default window) and each message
// cost a commit of its own. The PUBACKs still come only after the commit,
// and in order.
func TestDurableOneConnectionManyPerCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the firewatch binary")
	}
	db := testenv.StartInfluxDB(t)
	bin := buildFirewatch(t)
	dir := t.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(ledger, []byte(killLedger(1)), 0o600); err != nil {
		t.Fatal(err)
	}
	brokerAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	// The longest commit window: 40 messages, one commit each, would take
	// 2 s or more; sent at once they fit in a few windows.
	fw := &fwProcess{t: t, bin: bin, api: "http://" + httpAddr, args: []string{
		"-ledger", ledger, "-mqtt.listen", brokerAddr, "-mqtt.auth", "none",
		"-influx.url", db.URL, "-influx.bucket", db.Bucket,
		"-alarms.db", filepath.Join(dir, "alarms.db"), "-alarms.secret", e2eSecret,
		"-http.listen", httpAddr, "-log.level", "warn",
		"-durability.mode", "wal", "-durability.commit_window", "50ms",
	}}
	t.Cleanup(fw.kill)
	fw.start()
	commits := func() float64 { return scrape(t, fw.api+"/metrics")["firewatch_durable_wal_commits_total"] }
	before := commits()

	const n = 40
	t0 := time.Now().Add(-time.Minute).UnixMilli()
	p := dialRawPublisher(t, brokerAddr, "el-k-000")
	for seq := 1; seq <= n; seq++ {
		p.publish(seq, fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":21,"cable_temp_c":31.5,"phase_current_a":12,"voltage_v":221}}`, t0+int64(seq), seq))
	}
	testenv.WaitFor(t, 30*time.Second, "every PUBACK", func() bool { return len(p.ackedSeqs()) == n })
	acked := p.ackedSeqs()
	if !slices.IsSorted(acked) {
		t.Errorf("PUBACKs out of order: %v", acked)
	}
	got := commits() - before
	t.Logf("%d messages of one connection in %.0f group commits", n, got)
	if got > n/4 {
		t.Errorf("%d messages sent at once took %.0f group commits: one connection's messages do not share commits", n, got)
	}
	// Every acknowledged reading is in the log, so in InfluxDB after a kill -9.
	fw.kill()
	fw.start()
	testenv.WaitFor(t, 60*time.Second, "the acknowledged readings in InfluxDB", func() bool {
		return len(storedTimes(t, db, t0)["el-k-000"]) == n
	})
	p.close()
	fw.stop()
}
