package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ledgerFile copies the shared test ledger into dir, with edit applied.
func ledgerFile(t *testing.T, dir string, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if edit != nil {
		s = edit(s)
	}
	p := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stores runs f on a fresh store in SQLite and in a real PostgreSQL.
func stores(t *testing.T, f func(t *testing.T, location string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "registry.db")) })
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		f(t, pg.NewDatabase(t))
	})
}

func open(t *testing.T, location string) *Store {
	t.Helper()
	s, err := Open(location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// started opens the store at location, seeds it from path and attaches a
// live registry.
func started(t *testing.T, location, path string) (*Store, *devices.Live) {
	t.Helper()
	s := open(t, location)
	l, err := s.Startup(context.Background(), path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	lv := devices.NewLive(l)
	s.Attach(lv)
	return s, lv
}

// plain drops what a file adds (lines) so that entries compare.
func plain(e *devices.Entries) *devices.Entries {
	c := *e
	c.Devices = make([]devices.DeviceEntry, len(e.Devices))
	for i, d := range e.Devices {
		d.Line = 0
		c.Devices[i] = d
	}
	c.Stations = slices.Clone(e.Stations)
	for i := range c.Stations {
		c.Stations[i].Line = 0
	}
	c.Gateways = slices.Clone(e.Gateways)
	for i := range c.Gateways {
		c.Gateways[i].Line = 0
	}
	if c.Places == nil {
		c.Places = map[string]string{}
	}
	return &c
}

func TestStoreRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, location string) {
		path := ledgerFile(t, t.TempDir(), nil)
		s, _ := started(t, location, path)
		b, _ := os.ReadFile(path)
		want, err := devices.ParseEntries(path, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(plain(got), plain(want)) {
			t.Fatalf("loaded\n%+v\nwant\n%+v", plain(got), plain(want))
		}
		// A change through Commit comes back from the store as the live
		// registry has it.
		c := &devices.Change{
			Places:        map[string]string{"450204002004": "新村", "450204002003": ""},
			UpsertDevices: []devices.DeviceEntry{{ID: "el-9", Kind: "electrical", Grid: "450204002004", Channels: 4, Rules: "{residual_current: {above: 250}}"}},
			DeleteDevices: []string{"hy-1"},
		}
		l, _, err := s.Commit(context.Background(), "zhang-san", c, CommitOptions{Source: "api"})
		if err != nil {
			t.Fatal(err)
		}
		got, err = s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, err := devices.Build("x", got)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := rebuilt.LookupID("el-9"); !ok || d.Channels != 4 || d.Station == nil || d.Station.ID != "st-tanxi" {
			t.Errorf("el-9 after reload: %+v", d)
		}
		if _, ok := rebuilt.LookupID("hy-1"); ok {
			t.Error("hy-1 still in the store")
		}
		if _, ok := l.LookupID("hy-1"); ok {
			t.Error("hy-1 still live")
		}
		if got.Places["450204002003"] != "" || got.Places["450204002004"] != "新村" {
			t.Errorf("places %v", got.Places)
		}
		// Devices keep their order: the new one last.
		if n := len(got.Devices); got.Devices[n-1].ID != "el-9" {
			t.Errorf("last device %s, want el-9", got.Devices[n-1].ID)
		}
	})
}

// A change with mistakes is refused whole, each problem naming its
// section, id and field; nothing is written and nothing changes live.
func TestCommitValidation(t *testing.T) {
	s, lv := started(t, filepath.Join(t.TempDir(), "registry.db"), ledgerFile(t, t.TempDir(), nil))
	ctx := context.Background()
	v0, _ := s.Version(ctx)
	live0 := lv.Load()
	c := &devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "ok-1", Kind: "smoke", Grid: "450204002003"},
		{ID: "bad-1", Kind: "toaster", Grid: "450204002003"},
		{ID: "bad-2", Kind: "smoke", Grid: "450204002003", Station: "st-nowhere"},
	}}
	_, _, err := s.Commit(ctx, "admin", c, CommitOptions{Source: "api"})
	var le *devices.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err %v, want a *devices.LoadError", err)
	}
	want := map[string]string{"bad-1": "kind", "bad-2": "station"}
	for _, p := range le.Problems {
		if p.Section != "devices" || want[p.ID] != p.Field {
			t.Errorf("problem %+v: want section devices and field %q", p, want[p.ID])
		}
		delete(want, p.ID)
	}
	if len(want) > 0 {
		t.Errorf("no problem reported for %v in %v", want, le.Problems)
	}
	if v, _ := s.Version(ctx); v != v0 {
		t.Errorf("version %d after a refused change, want %d", v, v0)
	}
	if lv.Load() != live0 {
		t.Error("a refused change replaced the live registry")
	}
	if _, ok, _ := s.Device(ctx, "ok-1"); ok {
		t.Error("the valid part of a refused change was stored")
	}
	// The one thing the store cannot keep: its column separator in a field.
	c = &devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: "ok-2", Kind: "smoke", Grid: "450204002003", Address: "a\x1fb"}}}
	if _, _, err := s.Commit(ctx, "admin", c, CommitOptions{}); !errors.As(err, &le) || le.Problems[0].Field != "address" {
		t.Errorf("address with 0x1F: %v", err)
	}
	// A dry run of a valid change writes nothing either.
	c = &devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: "ok-1", Kind: "smoke", Grid: "450204002003"}}}
	if _, _, err := s.Commit(ctx, "admin", c, CommitOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Device(ctx, "ok-1"); ok || lv.Load() != live0 {
		t.Error("a dry run changed the registry")
	}
}

// Two writers that read the same ETag: exactly one wins, the other gets a
// *ConflictError, on both stores.
func TestCommitIfMatchConflict(t *testing.T) {
	stores(t, func(t *testing.T, location string) {
		s, lv := started(t, location, ledgerFile(t, t.TempDir(), nil))
		ctx := context.Background()
		_, etag, ok, err := s.DeviceEntry(ctx, "el-1")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, addr := range []string{"鹅山路12号之一", "鹅山路12号之二"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, _, _, _ := s.DeviceEntry(ctx, "el-1")
				e.Address = addr
				_, _, errs[i] = s.Commit(ctx, "writer", &devices.Change{UpsertDevices: []devices.DeviceEntry{e}},
					CommitOptions{Source: "api", IfMatch: map[string]string{"device/el-1": etag}})
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			var ce *ConflictError
			switch {
			case err == nil:
				won++
			case errors.As(err, &ce):
				if ce.Key != "device/el-1" || ce.Want != etag || ce.Have == etag {
					t.Errorf("conflict %+v", ce)
				}
			default:
				t.Errorf("err %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d writers won, want exactly 1: %v", won, errs)
		}
		d, _ := lv.Load().LookupID("el-1")
		stored, _, _, _ := s.DeviceEntry(ctx, "el-1")
		if d.Address != stored.Address {
			t.Errorf("live address %q, stored %q", d.Address, stored.Address)
		}
	})
}

// The audit history says who changed what, when, through what, with the
// entity before and after; secrets show only as a fingerprint.
func TestAuditRecordsWhoAndWhat(t *testing.T) {
	s, _ := started(t, filepath.Join(t.TempDir(), "registry.db"), ledgerFile(t, t.TempDir(), nil))
	ctx := context.Background()
	e, _, _, _ := s.DeviceEntry(ctx, "el-1")
	e.Phone = "13800000000"
	if _, _, err := s.Commit(ctx, "li-si", &devices.Change{UpsertDevices: []devices.DeviceEntry{e}, DeleteDevices: []string{"sm-1"}},
		CommitOptions{Source: "xlsx import"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Audit(ctx, "device", "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d device records, want 2: %+v", len(recs), recs)
	}
	del, upd := recs[0], recs[1] // newest first
	if upd.Actor != "li-si" || upd.Source != "xlsx import" || upd.EntityID != "el-1" || upd.Action != "update" ||
		!strings.Contains(string(upd.Before), `"id":"el-1"`) || strings.Contains(string(upd.Before), "13800000000") ||
		!strings.Contains(string(upd.After), "13800000000") || upd.At.IsZero() {
		t.Errorf("update record %+v (before %s, after %s)", upd, upd.Before, upd.After)
	}
	if del.EntityID != "sm-1" || del.Action != "delete" || string(del.After) != "null" || del.Version != upd.Version {
		t.Errorf("delete record %+v", del)
	}
	all, _ := s.Audit(ctx, "", "", 0, 10)
	if last := all[len(all)-1]; last.Action != "import" || !strings.HasPrefix(last.Source, "ledger file ") {
		t.Errorf("first record %+v, want the seed import", last)
	}
	gw, _ := s.Audit(ctx, "gateway", "", 0, 10)
	if len(gw) != 0 {
		t.Errorf("gateway records %+v", gw)
	}
	if b, _ := s.Audit(ctx, "device", "el-1", 0, 10); len(b) != 1 || strings.Contains(string(b[0].After), "argon2") {
		t.Errorf("records of el-1: %+v", b)
	}
}

// The YAML ledger seeds an empty store; changed later, its changes are
// imported at the next start, audited, keeping what the API changed
// elsewhere; unchanged, it leaves the store alone.
func TestStartupSeedAndReimport(t *testing.T) {
	stores(t, func(t *testing.T, location string) {
		dir := t.TempDir()
		path := ledgerFile(t, dir, nil)
		ctx := context.Background()
		s, _ := started(t, location, path)
		if _, _, err := s.Commit(ctx, "admin", &devices.Change{UpsertDevices: []devices.DeviceEntry{
			{ID: "api-1", Kind: "smoke", Grid: "450204002003"}}}, CommitOptions{Source: "api"}); err != nil {
			t.Fatal(err)
		}
		s.Close()

		// Restart with the file unchanged: nothing is imported.
		s = open(t, location)
		v0, _ := s.Version(ctx)
		l, err := s.Startup(ctx, path, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Version(ctx); v != v0 {
			t.Errorf("version %d after a start with the same file, want %d", v, v0)
		}
		if _, ok := l.LookupID("api-1"); !ok {
			t.Error("the device added through the API is gone after a restart")
		}
		s.Close()

		// The file changes: el-1 gets an address, hy-1 goes, fx-1 comes.
		ledgerFile(t, dir, func(s string) string {
			s = strings.Replace(s, "address: 鹅山路12号", "address: 鹅山路12号之三", 1)
			s = strings.Replace(s, "  - id: hy-1\n", "  - id: fx-1\n    kind: smoke\n    grid: \"450204002003\"\n  - id: hy-1\n", 1)
			i := strings.Index(s, "  - id: hy-1\n")
			j := strings.Index(s[i+1:], "  - id:")
			return s[:i] + s[i+1+j:]
		})
		s = open(t, location)
		if l, err = s.Startup(ctx, path, quiet); err != nil {
			t.Fatal(err)
		}
		if d, ok := l.LookupID("el-1"); !ok || d.Address != "鹅山路12号之三" {
			t.Errorf("el-1 %+v: the file's edit was not imported", d)
		}
		if _, ok := l.LookupID("hy-1"); ok {
			t.Error("hy-1, removed from the file, is still registered")
		}
		if _, ok := l.LookupID("fx-1"); !ok {
			t.Error("fx-1, added to the file, is not registered")
		}
		if _, ok := l.LookupID("api-1"); !ok {
			t.Error("the re-import removed the device added through the API")
		}
		recs, _ := s.Audit(ctx, "device", "", 0, 10)
		actions := map[string]string{}
		for _, r := range recs {
			if r.Source == "ledger file "+path {
				actions[r.EntityID] = r.Action
			}
		}
		if !reflect.DeepEqual(actions, map[string]string{"el-1": "update", "hy-1": "delete", "fx-1": "create"}) {
			t.Errorf("audited re-import %v", actions)
		}
	})
}

// A store without a registry and without a ledger file cannot start.
func TestStartupWithoutAnything(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "registry.db"))
	_, err := s.Startup(context.Background(), filepath.Join(t.TempDir(), "missing.yaml"), quiet)
	if err == nil || !strings.Contains(err.Error(), "holds no registry") {
		t.Fatalf("err %v", err)
	}
	// A bad ledger file is reported as before, with its lines.
	path := ledgerFile(t, t.TempDir(), func(s string) string { return strings.Replace(s, "kind: hydrant", "kind: toaster", 1) })
	if _, err := s.Startup(context.Background(), path, quiet); err == nil || !strings.Contains(err.Error(), "ledger.yaml:") {
		t.Fatalf("err %v, want the file's line", err)
	}
	if v, _ := s.Version(context.Background()); v != 0 {
		t.Errorf("version %d after a refused seed", v)
	}
}

// When the ledger setting names another file, that file is compared with
// the one imported before: what the old file had and the new one has not
// goes, and what was added through the API stays.
func TestStartupLedgerMoved(t *testing.T) {
	location := filepath.Join(t.TempDir(), "registry.db")
	ctx := context.Background()
	s, _ := started(t, location, ledgerFile(t, t.TempDir(), nil))
	if _, _, err := s.Commit(ctx, "admin", &devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "api-1", Kind: "smoke", Grid: "450204002003"}}}, CommitOptions{Source: "api"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	moved := ledgerFile(t, t.TempDir(), func(s string) string {
		i := strings.Index(s, "  - id: hy-1\n")
		j := strings.Index(s[i+1:], "  - id:")
		return s[:i] + s[i+1+j:]
	})
	s = open(t, location)
	l, err := s.Startup(ctx, moved, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.LookupID("hy-1"); ok {
		t.Error("hy-1, not in the new ledger file, is still registered")
	}
	for _, id := range []string{"el-1", "api-1"} {
		if _, ok := l.LookupID(id); !ok {
			t.Errorf("%s is gone", id)
		}
	}
}

// A ledger file edit that the store's registry cannot take (it removes the
// station a device added through the API names) stops the start with the
// problem, and changes nothing.
func TestStartupReimportConflict(t *testing.T) {
	location := filepath.Join(t.TempDir(), "registry.db")
	dir := t.TempDir()
	path := ledgerFile(t, dir, nil)
	ctx := context.Background()
	s, _ := started(t, location, path)
	if _, _, err := s.Commit(ctx, "admin", &devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "api-1", Kind: "smoke", Grid: "450204002003", Station: "st-tanxi"}}}, CommitOptions{Source: "api"}); err != nil {
		t.Fatal(err)
	}
	v0, _ := s.Version(ctx)
	s.Close()
	// The file moves its devices to a new station and drops st-tanxi.
	ledgerFile(t, dir, func(s string) string {
		s = strings.Replace(s, "  - id: st-tanxi\n", "  - id: st-new\n", 1)
		return strings.ReplaceAll(s, "station: st-tanxi", "station: st-new")
	})
	s = open(t, location)
	_, err := s.Startup(ctx, path, quiet)
	var le *devices.LoadError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "re-import") || !strings.Contains(err.Error(), "api-1") {
		t.Fatalf("err %v, want the re-import's problem with api-1", err)
	}
	if v, _ := s.Version(ctx); v != v0 {
		t.Errorf("version %d after a refused re-import, want %d", v, v0)
	}
}

// An upsert identical to what is stored writes nothing and leaves no
// audit record: a spreadsheet imported twice is audited once.
func TestCommitUnchangedNotAudited(t *testing.T) {
	s, _ := started(t, filepath.Join(t.TempDir(), "registry.db"), ledgerFile(t, t.TempDir(), nil))
	ctx := context.Background()
	e, etag, _, _ := s.DeviceEntry(ctx, "el-1")
	st, _, _, _ := s.StationEntry(ctx, "st-tanxi")
	g, _, _, _ := s.GatewayEntry(ctx, "gw-1")
	e.Line = 0
	c := &devices.Change{Places: map[string]string{"450204": "柳州市柳南区"}, UpsertDevices: []devices.DeviceEntry{e},
		UpsertStations: []devices.StationEntry{st}, UpsertGateways: []devices.GatewayEntry{g}}
	if _, _, err := s.Commit(ctx, "admin", c, CommitOptions{Source: "xlsx import"}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.Audit(ctx, "", "", 0, 10); len(recs) != 1 || recs[0].Action != "import" {
		t.Errorf("audit after an unchanged upsert: %+v", recs)
	}
	if _, now, _, _ := s.DeviceEntry(ctx, "el-1"); now != etag {
		t.Errorf("ETag %s after an unchanged upsert, want %s", now, etag)
	}
}
