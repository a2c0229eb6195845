package registry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"slices"

	"github.com/firewatch-iot/firewatch/devices"
)

// LedgerName is the name a ledger built from the store carries in messages.
const LedgerName = "registry"

// Startup returns the registry firewatch starts with. The store is the
// truth; the YAML ledger at path (may be "") feeds it:
//   - a store that holds no registry yet is seeded from the file (one audit
//     record, source "ledger file <path>");
//   - a file whose content differs from the one last imported is imported
//     again as a change: what the file changed since that import (added,
//     edited, removed entries) is applied to the store and audited entry by
//     entry, so that changes made through the API to entries the file did
//     not touch are kept;
//   - an unchanged or missing file leaves the store as it is.
//
// A file with mistakes, or a change the store's registry cannot take, stops
// the start with every problem, as a bad ledger always has.
func (s *Store) Startup(ctx context.Context, path string, log *slog.Logger) (*devices.Ledger, error) {
	v, err := s.Version(ctx)
	if err != nil {
		return nil, err
	}
	// The file is hashed as it is read, not held: at a million devices it
	// is some 340 MB, and on a restart it is unchanged (issue 18: start-up
	// from the store within 5 s and 1 GiB).
	var fileHash string
	var ferr error = fs.ErrNotExist
	if path != "" {
		fileHash, ferr = hashFile(path)
	}
	switch {
	case v == 0 && ferr != nil:
		return nil, fmt.Errorf("registry: the store holds no registry and the ledger file cannot seed it: %w", ferr)
	case v == 0:
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("registry: ledger file: %w", err)
		}
		l, err := s.seed(ctx, path, b)
		if err != nil {
			return nil, err
		}
		log.Info("registry seeded from the ledger file", "file", path, "devices", len(l.Devices))
		s.setApplied(1) // the seed is version 1 (issue 15, follow.go)
		return l, nil   // what was just written: no need to read it back
	case ferr == nil:
		lastHash, err := s.lastImportHash(ctx, path)
		if err != nil {
			return nil, err
		}
		if lastHash != fileHash {
			// Changed (or never imported from this path): only now read
			// the file and the copy of its last import.
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("registry: ledger file: %w", err)
			}
			last, _, err := s.lastImport(ctx, path)
			if err != nil {
				return nil, err
			}
			n, err := s.reimport(ctx, path, last, b)
			if err != nil {
				return nil, err
			}
			log.Info("ledger file changed since its last import: imported its changes into the registry", "file", path, "entries", n)
		}
	case !errors.Is(ferr, fs.ErrNotExist):
		return nil, fmt.Errorf("registry: ledger file: %w", ferr)
	}
	l, v, err := s.loadLedger(ctx, s.name(ctx))
	if err == nil {
		s.setApplied(v) // issue 15: the follower goes on from here (follow.go)
	}
	return l, err
}

// name is the name the registry's messages carry: the ledger file it was
// last imported from, whose lines its devices keep, or LedgerName.
func (s *Store) name(ctx context.Context) string {
	var path string
	if err := s.db.QueryRowContext(ctx, `SELECT path FROM registry_imports ORDER BY at_ms DESC LIMIT 1`).Scan(&path); err != nil || path == "" {
		return LedgerName
	}
	return path
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// hashFile is hashOf the file at path, read in a stream.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lastImportHash is the hash of the file last imported from path, "" when
// none was.
func (s *Store) lastImportHash(ctx context.Context, path string) (string, error) {
	var hash string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT hash FROM registry_imports WHERE path = ?`), path).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("registry: last import: %w", err)
	}
	return hash, nil
}

func sourceOf(path string) string { return "ledger file " + path }

// parseLedgerFile reads the ledger file b (named path) as entries, checks
// that they make a valid registry and that the store can keep them, and
// returns both.
func parseLedgerFile(path string, b []byte) (*devices.Entries, *devices.Ledger, error) {
	e, err := devices.ParseEntries(path, b)
	if err != nil {
		return nil, nil, err
	}
	l, err := devices.Build(path, e)
	if err != nil {
		return nil, nil, err
	}
	if err := storable(e.Devices); err != nil {
		return nil, nil, err
	}
	return e, l, nil
}

// seed writes a whole ledger file into an empty store and returns the
// ledger it makes.
func (s *Store) seed(ctx context.Context, path string, b []byte) (*devices.Ledger, error) {
	e, l, err := parseLedgerFile(path, b)
	if err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("registry seed: %w", err)
	}
	defer tx.Rollback()
	w, err := s.begin(ctx, tx, "firewatch", sourceOf(path))
	if err != nil {
		return nil, err
	}
	if err := w.insertAll(e); err != nil {
		return nil, fmt.Errorf("registry seed: %w", err)
	}
	summary := map[string]int{"places": len(e.Places), "stations": len(e.Stations), "gateways": len(e.Gateways),
		"devices": len(e.Devices), "uitds": len(e.UITDs)}
	if err := w.record("registry", "", "import", nil, summary); err != nil {
		return nil, err
	}
	if err := w.setUITDs(e.UITDs); err != nil {
		return nil, err
	}
	if err := w.recordImport(path, b); err != nil {
		return nil, err
	}
	if err := w.commit(); err != nil {
		return nil, fmt.Errorf("registry seed: %w", err)
	}
	return l, nil
}

// insertAll inserts every entry of e into empty tables, without an audit
// record each: the seed is recorded as one import.
func (w *writer) insertAll(e *devices.Entries) error {
	tx, ctx, s := w.tx, w.ctx, w.s
	for code, name := range e.Places {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_places (code, name, rev) VALUES (?, ?, ?)`), code, name, w.version); err != nil {
			return err
		}
	}
	for i, st := range e.Stations {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_stations (seq, id, name, grids, endpoint, lat, lon, rev)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), i+1, st.ID, st.Name, joinGrids(st.Grids), st.Endpoint, st.Lat, st.Lon, w.version); err != nil {
			return err
		}
	}
	for i, g := range e.Gateways {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_gateways (seq, id, secret_hash, rev) VALUES (?, ?, ?, ?)`),
			i+1, g.ID, g.SecretHash, w.version); err != nil {
			return err
		}
	}
	for i := range e.Devices {
		d := &e.Devices[i]
		if err := w.add(&w.newDevices, append(deviceArgs(d), w.version, i+1, d.ID)...); err != nil {
			return fmt.Errorf("devices: %w", err)
		}
	}
	return w.flushBatch(&w.newDevices)
}

func (w *writer) setUITDs(u []devices.UITDEntry) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if u == nil {
		b = []byte("[]")
	}
	if _, err := w.tx.ExecContext(w.ctx, w.s.q(`DELETE FROM registry_meta WHERE key = ?`), "uitds"); err != nil {
		return err
	}
	_, err = w.tx.ExecContext(w.ctx, w.s.q(`INSERT INTO registry_meta (key, value) VALUES (?, ?)`), "uitds", string(b))
	return err
}

func decodeUITDs(s string) ([]devices.UITDEntry, error) {
	var u []devices.UITDEntry
	if err := json.Unmarshal([]byte(s), &u); err != nil || len(u) == 0 {
		return nil, err
	}
	return u, nil
}

// recordImport keeps the file just imported (compressed), the base of the
// next re-import's comparison.
func (w *writer) recordImport(path string, b []byte) error {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		return err
	}
	if _, err := w.tx.ExecContext(w.ctx, w.s.q(`DELETE FROM registry_imports WHERE path = ?`), path); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(w.ctx, w.s.q(`INSERT INTO registry_imports (path, hash, at_ms, body) VALUES (?, ?, ?, ?)`),
		path, hashOf(b), w.at, z.Bytes())
	return err
}

// lastImport returns the ledger file last imported from path and its
// hash; for a path never imported, the newest import of another file and
// ""; nil and "" when there was none. Imports are kept per path, so
// that a file imported by hand (firewatch registry import) is not undone by
// the configured ledger file at the next start.
func (s *Store) lastImport(ctx context.Context, path string) ([]byte, string, error) {
	var hash string
	var z []byte
	err := s.db.QueryRowContext(ctx, s.q(`SELECT hash, body FROM registry_imports WHERE path = ?`), path).Scan(&hash, &z)
	if errors.Is(err, sql.ErrNoRows) {
		// A file never imported (the ledger setting names another file
		// now): compare it with the newest import of any file, so that
		// what that one had and this one has not goes.
		hash = ""
		err = s.db.QueryRowContext(ctx, `SELECT body FROM registry_imports ORDER BY at_ms DESC LIMIT 1`).Scan(&z)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, "", nil
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("registry: last import: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, "", fmt.Errorf("registry: last import: %w", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, "", fmt.Errorf("registry: last import: %w", err)
	}
	return b, hash, nil
}

// reimport applies to the store what the ledger file changed since last
// (nil: no import recorded, then everything in the file that differs from
// the store). It returns the number of entries changed.
func (s *Store) reimport(ctx context.Context, path string, last, b []byte) (int, error) {
	old := &devices.Entries{}
	if last != nil {
		var err error
		if old, err = devices.ParseEntries(path+" (as last imported)", last); err != nil {
			old = &devices.Entries{} // compare with the store alone
		}
	}
	next, _, err := parseLedgerFile(path, b)
	if err != nil {
		return 0, err
	}
	cur, err := s.Load(ctx)
	if err != nil {
		return 0, err
	}
	c := ChangeBetween(old, next, cur)
	l, err := devices.Build(LedgerName, cur)
	if err != nil {
		return 0, fmt.Errorf("registry in the store: %w", err)
	}
	if _, _, err := l.Apply(c); err != nil {
		return 0, fmt.Errorf("re-import of %s into the registry (changes made through the API conflict with the file?): %w", path, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("registry re-import: %w", err)
	}
	defer tx.Rollback()
	w, err := s.begin(ctx, tx, "firewatch", sourceOf(path))
	if err != nil {
		return 0, err
	}
	if err := w.change(c); err != nil {
		return 0, fmt.Errorf("registry re-import: %w", err)
	}
	if !reflect.DeepEqual(old.UITDs, next.UITDs) {
		if err := w.setUITDs(next.UITDs); err != nil {
			return 0, err
		}
	}
	if err := w.recordImport(path, b); err != nil {
		return 0, err
	}
	if err := w.commit(); err != nil {
		return 0, fmt.Errorf("registry re-import: %w", err)
	}
	return Size(c), nil
}

// Import makes the registry in the store what the ledger file b (named
// path) says: entries missing from it are removed. It is for a store that
// no firewatch is running on (`firewatch registry import`); a running one
// takes changes through Commit. With dryRun it validates only. It returns
// the number of entries changed.
func (s *Store) Import(ctx context.Context, actor, path string, b []byte, dryRun bool) (int, error) {
	next, _, err := parseLedgerFile(path, b)
	if err != nil {
		return 0, err
	}
	v, err := s.Version(ctx)
	if err != nil {
		return 0, err
	}
	if v == 0 {
		if dryRun {
			return len(next.Places) + len(next.Stations) + len(next.Gateways) + len(next.Devices), nil
		}
		_, err := s.seed(ctx, path, b)
		return len(next.Places) + len(next.Stations) + len(next.Gateways) + len(next.Devices), err
	}
	cur, err := s.Load(ctx)
	if err != nil {
		return 0, err
	}
	c := ChangeBetween(cur, next, cur)
	l, err := devices.Build(LedgerName, cur)
	if err != nil {
		return 0, fmt.Errorf("registry in the store: %w", err)
	}
	if _, _, err := l.Apply(c); err != nil {
		return 0, err
	}
	if dryRun {
		return Size(c), nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("registry import: %w", err)
	}
	defer tx.Rollback()
	w, err := s.begin(ctx, tx, actor, sourceOf(path))
	if err != nil {
		return 0, err
	}
	if err := w.change(c); err != nil {
		return 0, fmt.Errorf("registry import: %w", err)
	}
	if err := w.setUITDs(next.UITDs); err != nil {
		return 0, err
	}
	if err := w.recordImport(path, b); err != nil {
		return 0, err
	}
	if err := w.commit(); err != nil {
		return 0, fmt.Errorf("registry import: %w", err)
	}
	return Size(c), nil
}

// Size is the number of entries a change touches.
func Size(c *devices.Change) int {
	return len(c.Places) + len(c.UpsertStations) + len(c.DeleteStations) + len(c.UpsertGateways) +
		len(c.DeleteGateways) + len(c.UpsertDevices) + len(c.DeleteDevices)
}

// ChangeBetween is the change that carries what next changed relative to
// old onto cur: entries of next that differ from old and from cur are
// upserted, entries of old missing from next and present in cur deleted.
// With old == cur it makes cur equal to next.
func ChangeBetween(old, next, cur *devices.Entries) *devices.Change {
	c := &devices.Change{Places: map[string]string{}}
	for code, name := range next.Places {
		if o, ok := old.Places[code]; (!ok || o != name) && cur.Places[code] != name {
			c.Places[code] = name
		}
	}
	for code := range old.Places {
		if _, ok := next.Places[code]; !ok && cur.Places[code] != "" {
			c.Places[code] = ""
		}
	}
	c.UpsertStations, c.DeleteStations = changed(old.Stations, next.Stations, cur.Stations, func(e devices.StationEntry) string { return e.ID })
	c.UpsertGateways, c.DeleteGateways = changed(old.Gateways, next.Gateways, cur.Gateways, func(e devices.GatewayEntry) string { return e.ID })
	c.UpsertDevices, c.DeleteDevices = changed(old.Devices, next.Devices, cur.Devices, func(e devices.DeviceEntry) string { return e.ID })
	return c
}

func changed[E any](old, next, cur []E, id func(E) string) (upsert []E, del []string) {
	index := func(es []E) map[string]*E {
		m := make(map[string]*E, len(es))
		for i := range es {
			m[id(es[i])] = &es[i]
		}
		return m
	}
	o, n, c := index(old), index(next), index(cur)
	for i := range next {
		k := id(next[i])
		if p := o[k]; p != nil && same(*p, next[i]) {
			continue
		}
		if p := c[k]; p != nil && same(*p, next[i]) {
			continue
		}
		upsert = append(upsert, next[i])
	}
	for i := range old {
		k := id(old[i])
		if n[k] == nil && c[k] != nil {
			del = append(del, k)
		}
	}
	slices.Sort(del)
	return upsert, del
}

// same compares two entries, ignoring where they stood in a file.
func same[E any](a, b E) bool {
	zeroLine(&a)
	zeroLine(&b)
	return reflect.DeepEqual(a, b)
}

// zeroLine clears the Line field of the entry p points to.
func zeroLine(p any) {
	if f := reflect.ValueOf(p).Elem().FieldByName("Line"); f.IsValid() && f.CanSet() && f.Kind() == reflect.Int {
		f.SetInt(0)
	}
}
