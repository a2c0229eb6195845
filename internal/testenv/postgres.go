//go:build unix

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Postgres is a private PostgreSQL cluster for a test: initdb into a
// temporary directory, started with pg_ctl on a free loopback port, trust
// authentication for the superuser "fw". Databases for tests come from
// NewDatabase.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	t    testing.TB
	bin  string // directory of initdb, pg_ctl, createdb
	dir  string // holds data/, the socket and the log
	cred *syscall.Credential
	dbs  atomic.Int64
}

// StartPostgres starts a PostgreSQL cluster for the test and stops it when
// the test ends. It looks for the server binaries in $POSTGRES_BIN, the
// newest /usr/lib/postgresql/*/bin (Debian's package postgresql), then
// PATH; without them it skips the test (fails it under CI=true). PostgreSQL
// refuses to run as root, so when the test runs as root (CI) the cluster
// runs as the user postgres, which the Debian package creates.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, ok := postgresBin()
	if !ok {
		Skip(t, "PostgreSQL server binaries (initdb, pg_ctl) not found in $POSTGRES_BIN, /usr/lib/postgresql/*/bin or PATH: install the Debian package postgresql")
	}
	p := &Postgres{t: t, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			Skip(t, "running as root and there is no user postgres to run PostgreSQL as: install the Debian package postgresql")
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parent is private to root, and the cluster may
	// run as another user, who must be able to reach the directory: as
	// root, use /tmp rather than a $TMPDIR that may sit in root's home.
	base := ""
	if p.cred != nil {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "firewatch-pg-")
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	p.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatalf("postgres: chown %s: %v", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := p.run("initdb", "-D", data, "-U", "fw", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("postgres: initdb: %v\n%s", err, out)
	}
	// Another process may take the free port before the server binds it;
	// then pg_ctl fails and a new port is tried.
	for attempt := 0; ; attempt++ {
		p.Port = FreePort(t)
		out, err := p.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("postgres: pg_ctl start: %v\n%s\n%s", err, out, log)
		}
	}
	t.Cleanup(func() {
		if out, err := p.run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"); err != nil {
			t.Logf("postgres: pg_ctl stop: %v\n%s", err, out)
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("postgres log:\n%s", log)
		}
	})
	return p
}

// NewDatabase creates an empty database and returns its URL for
// github.com/jackc/pgx/v5/stdlib, e.g.
// postgres://fw@127.0.0.1:5433/t3?sslmode=disable.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "t" + strconv.FormatInt(p.dbs.Add(1), 10)
	if out, err := p.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "fw", name); err != nil {
		t.Fatalf("postgres: createdb %s: %v\n%s", name, err, out)
	}
	return fmt.Sprintf("postgres://fw@127.0.0.1:%d/%s?sslmode=disable", p.Port, name)
}

// run runs one of the PostgreSQL binaries as the cluster's user.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// postgresBin finds the directory of initdb and pg_ctl.
func postgresBin() (string, bool) {
	if d := os.Getenv("POSTGRES_BIN"); d != "" && isExec(filepath.Join(d, "initdb")) {
		return d, true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, true
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), true
	}
	return "", false
}

// versionOf reads the major version from /usr/lib/postgresql/<v>/bin.
func versionOf(dir string) int {
	v, _ := strconv.Atoi(strings.Split(filepath.Base(filepath.Dir(dir)), ".")[0])
	return v
}

// start starts the server on p.Port.
func (p *Postgres) start() ([]byte, error) {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
		p.Port, p.dir)
	return p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "log"), "-w", "-t", "60", "-o", opts, "start")
}

// Stop stops the server (pg_ctl -m fast: every client's connection is cut,
// as in a restart), keeping its data for Start. Not "-m immediate": the
// cluster runs with synchronous_commit=off, so that would lose committed
// transactions, which a production server does not.
func (p *Postgres) Stop() {
	p.t.Helper()
	if out, err := p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "-t", "30", "stop"); err != nil {
		p.t.Fatalf("postgres: pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts the server again after Stop, on the same port.
func (p *Postgres) Start() {
	p.t.Helper()
	if out, err := p.start(); err != nil {
		p.t.Fatalf("postgres: pg_ctl start: %v\n%s", err, out)
	}
}
