package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The test changes the machine (packages, users, /etc, /var/lib) and puts
// it back; it runs only when `make package-test` points it at the built
// packages, as root, on a machine without firewatch or firegate installed.
func setup(t *testing.T) (dist, pkgVersion, version string) {
	dist, pkgVersion, version = os.Getenv("FIREWATCH_DIST"), os.Getenv("FIREWATCH_PKG_VERSION"), os.Getenv("FIREWATCH_VERSION")
	if dist == "" || pkgVersion == "" || version == "" {
		t.Skip("installs the Debian packages on this machine: run it with `make package-test` (sets FIREWATCH_DIST, FIREWATCH_PKG_VERSION, FIREWATCH_VERSION)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("make package-test installs packages with dpkg: run it as root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("make package-test needs dpkg (a Debian or Ubuntu machine)")
	}
	for _, name := range []string{"firewatch", "firegate"} {
		if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", name).Output(); err == nil && len(out) > 0 && string(out) != "not-installed" {
			t.Fatalf("package %s is already on this machine (%s): the test would change it; purge it first", name, out)
		}
		if _, err := user.Lookup(name); err == nil {
			t.Fatalf("user %s exists on this machine: the test would change it; remove it first (userdel %s)", name, name)
		}
		if _, err := os.Stat("/var/lib/" + name); err == nil {
			t.Fatalf("/var/lib/%s exists on this machine: the test would change it; move it away first", name)
		}
	}
	return dist, pkgVersion, version
}

// restore purges the packages and removes what purge keeps on purpose (the
// data directories, the users), so that the machine is as before.
func restore(t *testing.T, names ...string) {
	for _, name := range names {
		if out, err := exec.Command("dpkg", "--purge", name).CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge %s: %v\n%s", name, err, out)
		}
		os.RemoveAll("/var/lib/" + name)
		exec.Command("userdel", name).Run()
		exec.Command("groupdel", name).Run()
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func deb(t *testing.T, dist, name, pkgVersion string) string {
	p := filepath.Join(dist, fmt.Sprintf("%s_%s_amd64.deb", name, pkgVersion))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: run make package first", err)
	}
	return p
}

// unit is the [Service] section of an installed systemd unit.
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			u[k] = append(u[k], v)
		}
	}
	return u
}

func (u unit) get(k string) string {
	if v := u[k]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// command is how systemd would run ExecStart (or ExecStartPre) of u: as its
// User and Group with SupplementaryGroups, in its WorkingDirectory, with
// the variables of its EnvironmentFile, in a process group of its own. Here
// no systemd runs (CI containers), so the test is the supervisor.
func (u unit) command(t *testing.T, key string) *exec.Cmd {
	t.Helper()
	argv := strings.Fields(u.get(key))
	cmd := exec.Command(argv[0], argv[1:]...)
	usr, err := user.Lookup(u.get("User"))
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroup(u.get("Group"))
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(grp.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, g := range strings.Fields(u.get("SupplementaryGroups")) {
		if sg, err := user.LookupGroup(g); err == nil {
			n, _ := strconv.Atoi(sg.Gid)
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = u.get("WorkingDirectory")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + usr.HomeDir}
	for _, ef := range u["EnvironmentFile"] {
		b, err := os.ReadFile(strings.TrimPrefix(ef, "-"))
		if err != nil {
			if strings.HasPrefix(ef, "-") {
				continue
			}
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && l[0] != '#' && strings.Contains(l, "=") {
				cmd.Env = append(cmd.Env, l)
			}
		}
	}
	return cmd
}

// service is firewatch run as its unit would run it.
type service struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, u unit, healthz string) *service {
	t.Helper()
	pre := u.command(t, "ExecStartPre")
	if out, err := pre.CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre %s: %v\n%s", u.get("ExecStartPre"), err, out)
	}
	s := &service{cmd: u.command(t, "ExecStart"), out: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	testenv.WaitFor(t, 60*time.Second, healthz+" answers 200", func() bool {
		select {
		case err := <-s.done:
			t.Fatalf("%s exited: %v\n%s", u.get("ExecStart"), err, s.out.String())
		default:
		}
		resp, err := http.Get(healthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// stop is systemctl stop: KillSignal=SIGTERM, then SIGKILL after TimeoutStopSec.
func (s *service) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("firewatch did not stop cleanly: %v\n%s", err, s.out.String())
		}
	case <-time.After(60 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("firewatch did not stop within TimeoutStopSec\n%s", s.out.String())
	}
}

func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }

// TestFirewatchInstallUpgradePurge installs the previous commit's firewatch
// package (built here from `git archive`, packaged with this tree's
// packaging), configures it as an operator would (the ledger and the
// configuration are conffiles, changed locally), raises an alarm whose push
// cannot be delivered and spools readings while InfluxDB is down, then
// upgrades to the package of this tree and finds the alarm, the push
// delivered from the outbox, the spooled readings and a new reading in
// InfluxDB, the local conffiles untouched and the new version everywhere;
// then purges and finds nothing left running or installed.
func TestFirewatchInstallUpgradePurge(t *testing.T) {
	dist, pkgVersion, version := setup(t)
	newDeb := deb(t, dist, "firewatch", pkgVersion)
	oldDeb, oldVersion := previousPackage(t, "firewatch", pkgVersion)
	t.Cleanup(func() { restore(t, "firewatch") })

	// Install N.
	t.Logf("installing %s", filepath.Base(oldDeb))
	t.Log(run(t, "dpkg", "-i", oldDeb))
	checkInstalled(t, oldVersion)

	// The operator's configuration: the ledger with one device and its
	// secret, ports of this test, the station's dispatch endpoint (down).
	db := testenv.StartInfluxDB(t)
	db.Stop()
	secret := "el-1-secret"
	hash, err := broker.HashSecret([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	mqttAddr, httpAddr, dispatchAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ledger := strings.NewReplacer("https://dispatch.example.cn/firewatch/st-tanxi", "http://"+dispatchAddr+"/dispatch",
		"    # secret_hash: \"$argon2id$v=19$...\"   # from firewatch hash-secret; empty: cannot connect", "    secret_hash: \"\"",
		"    unit: 柳南纺织厂", "    unit: 柳南纺织厂\n    secret_hash: \""+hash+"\"").Replace(readFile(t, "/etc/firewatch/devices.yaml"))
	conf := strings.NewReplacer("listen: 127.0.0.1:1883", "listen: "+mqttAddr, "listen: 127.0.0.1:9090", "listen: "+httpAddr,
		"url: http://127.0.0.1:8086", "url: "+db.URL, "spool_max_mb: 1024", "spool_max_mb: 64\n  flush_interval: 200ms\n  timeout: 2s").
		Replace(readFile(t, "/etc/firewatch/firewatch.yaml"))
	writeFile(t, "/etc/firewatch/devices.yaml", ledger)
	writeFile(t, "/etc/firewatch/firewatch.yaml", conf)
	env := readFile(t, "/etc/firewatch/firewatch.env")

	u := readUnit(t, "/usr/lib/systemd/system/firewatch.service")
	api := "http://" + httpAddr
	fw := start(t, u, api+"/healthz")
	// Readings while InfluxDB is down: the first two raise the
	// residual-current alarm (above 300 mA for 10 s), whose push finds no
	// dispatch endpoint; all of them spool.
	now := time.Now().Add(-time.Minute).UnixMilli()
	const spooled = 5
	publish := publisher(t, "tcp://"+mqttAddr, "el-1", secret)
	for i := range spooled {
		publish(fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":420}}`, now+int64(i)*5000, i+1))
	}
	alarm := waitAlarm(t, api)
	testenv.WaitFor(t, 30*time.Second, "a failed write to InfluxDB", func() bool {
		return metric(t, api, "firewatch_influx_write_errors_total") > 0
	})
	fw.stop(t)
	if spoolBytes("/var/lib/firewatch/influx-spool") == 0 {
		t.Fatalf("nothing spooled in /var/lib/firewatch/influx-spool while InfluxDB was down\n%s", fw.out.String())
	}

	// Upgrade to N+1.
	t.Logf("upgrading to %s", filepath.Base(newDeb))
	t.Log(run(t, "dpkg", "-i", newDeb))
	checkInstalled(t, pkgVersion)
	if got := readFile(t, "/etc/firewatch/devices.yaml"); got != ledger {
		t.Error("the upgrade changed the locally modified conffile /etc/firewatch/devices.yaml")
	}
	if got := readFile(t, "/etc/firewatch/firewatch.yaml"); got != conf {
		t.Error("the upgrade changed the locally modified conffile /etc/firewatch/firewatch.yaml")
	}
	if got := readFile(t, "/etc/firewatch/firewatch.env"); got != env {
		t.Error("the upgrade changed /etc/firewatch/firewatch.env")
	}
	if out := run(t, "/usr/bin/firewatch", "--version"); !strings.HasPrefix(out, "firewatch "+version+" (") {
		t.Errorf("firewatch --version = %q, want version %s", out, version)
	}

	// The push reaches the station once its endpoint is up; InfluxDB is back.
	pushes := make(chan string, 16)
	ln, err := net.Listen("tcp", dispatchAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		pushes <- string(b)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	db.Start()

	fw = start(t, u, api+"/healthz")
	if first, _, _ := strings.Cut(fw.out.String(), "\n"); !strings.Contains(first, "version="+version) {
		t.Errorf("first log line %q lacks version=%s", first, version)
	}
	var h struct{ Version string }
	getJSON(t, api+"/healthz", &h)
	if h.Version != version {
		t.Errorf("/healthz version %q, want %s", h.Version, version)
	}
	if v := metric(t, api, `firewatch_build_info{goversion=`); v != 1 || !strings.Contains(scrape(t, api), `version="`+version+`"`) {
		t.Errorf("/metrics: firewatch_build_info with version=%q missing", version)
	}
	if a := waitAlarm(t, api); a.ID != alarm.ID {
		t.Errorf("after the upgrade the open alarm is %+v, want %+v", a, alarm)
	}
	select {
	case p := <-pushes:
		if !strings.Contains(p, alarm.ID) {
			t.Errorf("push %s is not for alarm %s", p, alarm.ID)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the queued push of alarm %s never reached the station after the upgrade\n%s", alarm.ID, fw.out.String())
	}
	// One reading now, with InfluxDB up, then every reading is there.
	publish(fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":100}}`, time.Now().UnixMilli(), spooled+1))
	testenv.WaitFor(t, 60*time.Second, "the spooled readings and the new one in InfluxDB", func() bool {
		return db.Count(t, "electrical") == spooled+1
	})
	fw.stop(t)

	// Purge.
	t.Log(run(t, "dpkg", "--purge", "firewatch"))
	for _, p := range []string{"/usr/bin/firewatch", "/usr/lib/systemd/system/firewatch.service", "/etc/firewatch"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
	if _, err := os.Stat("/var/lib/firewatch/alarms.db"); err != nil {
		t.Errorf("purge removed the alarm store (it should keep it): %v", err)
	}
	if pids := processesOf(t, "firewatch"); len(pids) > 0 {
		t.Errorf("processes of user firewatch left running after purge: %v", pids)
	}
}

// TestFiregateInstallUpgradePurge installs the previous commit's firegate
// package and checks the user (in dialout), the conffile, the unit; runs
// firegate as its unit would against a simulated Modbus device on a
// pseudo-terminal with no broker reachable, so that its readings spool;
// upgrades to this tree's package and finds the conffile kept, the new
// version, and every spooled reading replayed in order (contiguous
// sequence numbers from the first) once a broker is there; then purges.
func TestFiregateInstallUpgradePurge(t *testing.T) {
	dist, pkgVersion, version := setup(t)
	newDeb := deb(t, dist, "firegate", pkgVersion)
	oldDeb, oldVersion := previousPackage(t, "firegate", pkgVersion)
	t.Cleanup(func() { restore(t, "firegate") })
	t.Log(run(t, "dpkg", "-i", oldDeb))
	if got := run(t, "dpkg-query", "-W", "-f=${Version}", "firegate"); got != oldVersion {
		t.Errorf("installed version %q, want %s", got, oldVersion)
	}
	if out := run(t, "id", "-nG", "firegate"); !strings.Contains(out, "dialout") {
		t.Errorf("user firegate is not in dialout: %s", out)
	}
	checkUser(t, "firegate")
	if cf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "firegate"); !strings.Contains(cf, "/etc/firegate/firegate.yaml") {
		t.Errorf("conffiles %q lack /etc/firegate/firegate.yaml", cf)
	}
	for path, want := range map[string]string{
		"/etc/firegate/firegate.yaml": "640 root firegate", "/var/lib/firegate": "750 firegate firegate", "/usr/bin/firegate": "755 root root",
	} {
		if got := strings.TrimSpace(run(t, "stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	verifyUnit(t, "/usr/lib/systemd/system/firegate.service")
	u := readUnit(t, "/usr/lib/systemd/system/firegate.service")
	if out, err := u.command(t, "ExecStartPre").CombinedOutput(); err != nil {
		t.Errorf("ExecStartPre with the example configuration, as user firegate: %v\n%s", err, out)
	}

	// One electrical-fire monitor on a pseudo-terminal the firegate user
	// may open (udev gives real ports to dialout).
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	bus, err := rtu.NewBus(9600)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- bus.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("the Modbus simulator did not stop")
		}
		bus.Close()
	})
	sl := bus.AddSlave(1, maps["ARCM300"])
	for i := range sl.Map.Points {
		p := &sl.Map.Points[i]
		v := 1.0
		if p.Event() {
			v = 0
		}
		if err := sl.Set(p.Metric.String(), p.Ch, v); err != nil {
			t.Fatal(err)
		}
	}
	if grp, err := user.LookupGroup("dialout"); err == nil {
		gid, _ := strconv.Atoi(grp.Gid)
		os.Chown(bus.Path, -1, gid)
		os.Chmod(bus.Path, 0o660)
	}
	mq := testenv.StartMosquitto(t)
	mq.Stop() // until after the upgrade: the old firegate spools
	metrics := freeAddr(t)
	conf := fmt.Sprintf(`# changed by the operator
gateway_id: gw-1
mqtt:
  broker: %s
  username: gw-1
  password: "gw-1-secret"
  publish_timeout: 2s
  reconnect_max: 500ms
spool:
  dir: /var/lib/firegate/spool
metrics_listen: %s
status_interval: 1h
buses:
  - port: %s
    baud: 9600
    timeout: 300ms
    devices:
      - {id: el-1, model: ARCM300, slave: 1, interval: 100ms}
`, mq.URL, metrics, bus.Path)
	writeFile(t, "/etc/firegate/firegate.yaml", conf)

	// N polls into its spool: no broker is listening.
	fg := start(t, u, "http://"+metrics+"/metrics")
	var spooled float64
	testenv.WaitFor(t, 30*time.Second, "readings spooled by the old firegate", func() bool {
		spooled = metricAt(t, "http://"+metrics+"/metrics", "firewatch_spool_records")
		return spooled >= 20
	})
	fg.stop(t)
	stopped := time.Now().UnixMilli()

	t.Log(run(t, "dpkg", "-i", newDeb))
	if got := run(t, "dpkg-query", "-W", "-f=${Version}", "firegate"); got != pkgVersion {
		t.Errorf("installed version %q, want %s", got, pkgVersion)
	}
	if got := readFile(t, "/etc/firegate/firegate.yaml"); got != conf {
		t.Error("the upgrade changed the locally modified conffile /etc/firegate/firegate.yaml")
	}
	if out := run(t, "/usr/bin/firegate", "--version"); !strings.HasPrefix(out, "firegate "+version+" (") {
		t.Errorf("firegate --version = %q, want %s", out, version)
	}

	// N+1 replays the old spool once a broker is there.
	mq.Start()
	type reading struct{ seq, ts int64 }
	seqs := make(chan reading, 100000)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL).SetClientID("collector").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("collector: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("fw/v1/up/gw/gw-1/batch", 1, func(_ paho.Client, m paho.Message) {
		var b struct {
			Readings []struct {
				Dev string `json:"dev"`
				Seq int64  `json:"seq"`
				TS  int64  `json:"ts"`
			} `json:"readings"`
		}
		if json.Unmarshal(m.Payload(), &b) == nil {
			for _, r := range b.Readings {
				if r.Dev == "el-1" {
					seqs <- reading{r.Seq, r.TS}
				}
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	fg = start(t, u, "http://"+metrics+"/metrics")
	if first, _, _ := strings.Cut(fg.out.String(), "\n"); !strings.Contains(first, "version="+version) {
		t.Errorf("first log line %q lacks version=%s", first, version)
	}
	if !strings.Contains(scrapeURL(t, "http://"+metrics+"/metrics"), `firewatch_build_info{goversion=`) {
		t.Error("firegate /metrics lacks firewatch_build_info")
	}
	var got []reading
	testenv.WaitFor(t, 60*time.Second, "every reading the old firegate spooled (polled before the upgrade) replayed by the new one", func() bool {
		for more := true; more; {
			select {
			case s := <-seqs:
				got = append(got, s)
			default:
				more = false
			}
		}
		old := 0
		for _, r := range got {
			if r.ts <= stopped {
				old++
			}
		}
		return float64(old) >= spooled && metricAt(t, "http://"+metrics+"/metrics", "firewatch_spool_records") == 0
	})
	fg.stop(t)
	// Each reading of a device takes the next sequence number: the
	// numbers seen must run from the first reading the old binary spooled
	// without a gap (a QoS 1 resend may repeat one).
	seen, hi := map[int64]bool{}, int64(0)
	for _, r := range got {
		seen[r.seq], hi = true, max(hi, r.seq)
	}
	lo := int64(1)
	if !seen[1] && seen[0] {
		lo = 0
	}
	for q := lo; q <= hi; q++ {
		if !seen[q] {
			t.Fatalf("el-1 reading seq %d lost across the upgrade (%d readings seen, seq %d..%d)", q, len(seen), lo, hi)
		}
	}
	t.Logf("el-1: %v readings spooled by the old binary; seq %d..%d all delivered by the new one", spooled, lo, hi)

	t.Log(run(t, "dpkg", "--purge", "firegate"))
	for _, p := range []string{"/usr/bin/firegate", "/usr/lib/systemd/system/firegate.service", "/etc/firegate"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
	if pids := processesOf(t, "firegate"); len(pids) > 0 {
		t.Errorf("processes of user firegate left running after purge: %v", pids)
	}
}

// checkInstalled checks the installed firewatch package: version, user,
// conffiles, modes and owners, the secrets file, the unit.
func checkInstalled(t *testing.T, pkgVersion string) {
	t.Helper()
	if got := run(t, "dpkg-query", "-W", "-f=${Version}", "firewatch"); got != pkgVersion {
		t.Errorf("installed version %q, want %s", got, pkgVersion)
	}
	checkUser(t, "firewatch")
	cf := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "firewatch")
	for _, f := range []string{"/etc/firewatch/firewatch.yaml", "/etc/firewatch/devices.yaml"} {
		if !strings.Contains(cf, f) {
			t.Errorf("conffiles %q lack %s", cf, f)
		}
	}
	for path, want := range map[string]string{
		"/etc/firewatch/firewatch.yaml": "640 root firewatch", "/etc/firewatch/devices.yaml": "640 root firewatch",
		"/etc/firewatch/firewatch.env": "640 root firewatch", "/var/lib/firewatch": "750 firewatch firewatch",
		"/usr/bin/firewatch": "755 root root", "/usr/share/firewatch/dashboards/overview.json": "644 root root",
		"/usr/share/firewatch/grafana-plugin/firewatch-api-datasource/gpx_firewatch_linux_amd64": "755 root root",
		"/usr/share/doc/firewatch/install.md":                                                    "644 root root",
	} {
		if got := strings.TrimSpace(run(t, "stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if env := readFile(t, "/etc/firewatch/firewatch.env"); !strings.Contains(env, "\nFIREWATCH_ALARMS_SECRET=") {
		t.Errorf("firewatch.env has no generated FIREWATCH_ALARMS_SECRET:\n%s", env)
	}
	verifyUnit(t, "/usr/lib/systemd/system/firewatch.service")
}

func checkUser(t *testing.T, name string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("no user %s: %v", name, err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 {
		t.Errorf("user %s has uid %d, want a system uid", name, uid)
	}
	if shell := strings.TrimSpace(run(t, "getent", "passwd", name)); !strings.HasSuffix(shell, ":/usr/sbin/nologin") {
		t.Errorf("user %s: %s, want the shell /usr/sbin/nologin", name, shell)
	}
}

// verifyUnit runs systemd-analyze verify where it exists (it needs no
// running systemd).
func verifyUnit(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("no systemd-analyze here: %s not verified", path)
		return
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}

// previousPackage builds the package of cmd/name of the previous release: the
// newest tag before HEAD, else HEAD's first parent (FIREWATCH_PREV chooses
// another commit), from `git archive`, packaged with this tree's packaging.
func previousPackage(t *testing.T, name, pkgVersion string) (path, version string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	rev := os.Getenv("FIREWATCH_PREV")
	if rev == "" {
		rev = "HEAD^"
		if tag, err := exec.Command("git", "-C", root, "describe", "--tags", "--abbrev=0", "--match", "v[0-9]*", "HEAD^").Output(); err == nil {
			rev = strings.TrimSpace(string(tag))
		}
	}
	var tagVersion string
	if err := exec.Command("git", "-C", root, "rev-parse", "--verify", "-q", rev+"^{commit}").Run(); err != nil {
		// A shallow clone (CI) has no parent: upgrade from this tree's
		// build under a lower version, which still tests the packaging.
		t.Logf("no commit %s here (shallow clone?): the previous package is built from HEAD", rev)
		rev = "HEAD"
		tagVersion = os.Getenv("FIREWATCH_VERSION") + "-prev"
		version = pkgVersion + "~prev"
	} else {
		tagVersion = strings.TrimSpace(run(t, filepath.Join(root, "packaging/version.sh"), rev))
		version = strings.TrimSpace(run(t, filepath.Join(root, "packaging/version.sh"), "deb", rev))
	}
	if out, err := exec.Command("dpkg", "--compare-versions", version, "lt", pkgVersion).CombinedOutput(); err != nil {
		t.Fatalf("previous version %s (%s) does not sort before %s: %v %s", version, rev, pkgVersion, err, out)
	}
	tmp := t.TempDir()
	src, build := filepath.Join(tmp, "src"), filepath.Join(tmp, "build")
	os.MkdirAll(src, 0o755)
	archive := exec.Command("sh", "-c", "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"", "sh", root, rev, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	t.Logf("building %s %s from %s", name, tagVersion, rev)
	bi := "github.com/firewatch-iot/firewatch/internal/buildinfo"
	gobuild := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X "+bi+".version="+tagVersion, "-o", filepath.Join(build, name), "./cmd/"+name)
	gobuild.Dir, gobuild.Env = src, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go build of %s: %v\n%s", rev, err, out)
	}
	nfpm := os.Getenv("FIREWATCH_NFPM")
	if nfpm == "" {
		nfpm = filepath.Join(root, "bin", "nfpm")
	}
	pkg := exec.Command(nfpm, "package", "-f", "packaging/"+name+"/nfpm.yaml", "-p", "deb", "-t", tmp)
	pkg.Dir, pkg.Env = root, append(os.Environ(), "ARCH=amd64", "PKG_VERSION="+version, "BUILD_DIR="+build)
	if out, err := pkg.CombinedOutput(); err != nil {
		t.Fatalf("nfpm: %v\n%s", err, out)
	}
	return filepath.Join(tmp, fmt.Sprintf("%s_%s_amd64.deb", name, version)), version
}

func publisher(t *testing.T, broker, id, secret string) func(payload string) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetUsername(id).SetPassword(secret).
		SetOrderMatters(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s as %s: %v", broker, id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return func(payload string) {
		tok := c.Publish("fw/v1/up/"+id+"/telemetry", 1, false, payload)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: no PUBACK: %v", payload, tok.Error())
		}
	}
}

type alarmView struct {
	ID     string `json:"id"`
	Device string `json:"device"`
	Rule   string `json:"rule"`
	State  string `json:"state"`
}

func waitAlarm(t *testing.T, api string) alarmView {
	t.Helper()
	var a alarmView
	testenv.WaitFor(t, 30*time.Second, "the residual-current alarm of el-1 in the alarms API", func() bool {
		var list struct{ Alarms []alarmView }
		getJSON(t, api+"/api/v1/alarms", &list)
		for _, x := range list.Alarms {
			if x.Device == "el-1" && x.Rule == "electrical.residual_current.alarm" {
				a = x
				return true
			}
		}
		return false
	})
	return a
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func scrape(t *testing.T, api string) string { return scrapeURL(t, api+"/metrics") }

func scrapeURL(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric is the value of the first series of api's /metrics whose line
// starts with prefix.
func metric(t *testing.T, api, prefix string) float64 { return metricAt(t, api+"/metrics", prefix) }

func metricAt(t *testing.T, url, prefix string) float64 {
	for _, l := range strings.Split(scrapeURL(t, url), "\n") {
		if strings.HasPrefix(l, prefix) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			return v
		}
	}
	return 0
}

// spoolBytes is the size of the spool's segment files (records).
func spoolBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.HasSuffix(path, ".seg") {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// processesOf lists the processes whose real uid is user name's.
func processesOf(t *testing.T, name string) []string {
	u, err := user.Lookup(name)
	if err != nil {
		return nil
	}
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == u.Uid {
				pids = append(pids, e.Name())
			}
		}
	}
	return pids
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o640); err != nil {
		t.Fatal(err)
	}
}
