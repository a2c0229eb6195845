package sheet

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/registry"
)

// Format is the kind of a spreadsheet file.
type Format int

// Formats of an import.
const (
	XLSX Format = iota + 1
	CSV
)

func (f Format) String() string {
	if f == CSV {
		return "csv"
	}
	return "xlsx"
}

// CommitFunc validates a change of the registry and, unless dryRun, applies
// it all-or-nothing (registry.Store.Commit with CommitOptions{DryRun,
// Source}). Validation failures come back as *devices.LoadError.
type CommitFunc func(ctx context.Context, actor string, c *devices.Change, dryRun bool, source string) (*devices.Ledger, *devices.Diff, error)

// Importer imports spreadsheets into the registry.
type Importer struct {
	// Commit validates and applies a change.
	Commit CommitFunc
	// Current returns the registry now in effect (devices.Live.Load).
	Current func() *devices.Ledger
	// Hash makes the stored hash of a generated secret; nil: broker.HashSecret.
	Hash func(secret []byte) (string, error)
}

// Secret is a secret generated on import, shown once.
type Secret struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"` // "device" or "gateway"
	Secret string `json:"secret"`
}

// Result is the outcome of an import: JSON as the HTTP API answers it.
type Result struct {
	// Applied is true when the change is in effect (never for a dry run).
	Applied bool `json:"applied"`
	DryRun  bool `json:"dry_run"`
	// Added, Updated and Removed count devices (an upsert identical to
	// the current entry is not counted as updated).
	Added   int `json:"added"`
	Updated int `json:"updated"`
	Removed int `json:"removed"`
	// Stations and Gateways count stations and gateways added, changed or removed.
	Stations int `json:"stations"`
	Gateways int `json:"gateways"`
	// Problems lists every problem (an import with any applies nothing).
	Problems []Problem `json:"problems"`
	// Secrets are the secrets generated for devices and gateways: shown
	// in this answer only; the registry keeps their hashes.
	Secrets []Secret `json:"secrets"`
	// SecretsCSV is Secrets as a CSV file (id,secret) for download; "" none.
	SecretsCSV string `json:"secrets_csv"`
	// NewSecrets counts the secrets the import makes (on a dry run: would make).
	NewSecrets int `json:"new_secrets"`
}

// Import parses b (of format f) and commits it on behalf of actor: with
// dryRun, validates only and writes nothing. A change with problems,
// found in the file or by the registry's validation, applies nothing;
// they are in the Result, each at its sheet, row and column. The error is
// for failures other than problems of the file (the store).
func (im *Importer) Import(ctx context.Context, actor string, f Format, b []byte, dryRun bool) (*Result, error) {
	// The file is read against the registry in effect (columns it lacks keep
	// current values; "new" decides secrets): if another change lands
	// meanwhile, read it again against that one rather than undo the change.
	for attempt := 1; ; attempt++ {
		res, err := im.importOnce(ctx, actor, f, b, dryRun, attempt < maxAttempts)
		if err != errStale {
			return res, err
		}
	}
}

// maxAttempts bounds the reads of a file against a registry that keeps
// changing under it; the last one commits whatever happens meanwhile.
const maxAttempts = 3

var errStale = errors.New("the registry changed while the file was read")

func (im *Importer) importOnce(ctx context.Context, actor string, f Format, b []byte, dryRun, retry bool) (*Result, error) {
	cur := im.Current()
	var p *Parsed
	if f == CSV {
		p = ParseCSV(b, cur)
	} else {
		p = ParseXLSX(b, cur)
	}
	res := &Result{DryRun: dryRun, Problems: p.Problems, Secrets: []Secret{}}
	source := f.String() + " import"
	if len(p.Problems) > 0 {
		// Nothing will be written; the registry's validation of the rows
		// without problems finds the rest, so that one pass shows all.
		return res, im.alsoValidate(ctx, actor, p, res, source)
	}
	if c := &p.Change; len(c.Places)+len(c.UpsertStations)+len(c.DeleteStations)+len(c.UpsertGateways)+
		len(c.DeleteGateways)+len(c.UpsertDevices)+len(c.DeleteDevices) == 0 {
		res.Problems = []Problem{{Reason: "the file has no rows to import: fill in the template's sheets below their headers"}}
		return res, nil
	}
	gen := p.secretsToMake(cur)
	res.NewSecrets = len(gen)
	// Validate before making secrets: hashing is slow on purpose.
	if dryRun || len(gen) > 0 {
		_, d, err := im.Commit(ctx, actor, &p.Change, true, source)
		if err != nil {
			return res, p.located(res, err)
		}
		if dryRun {
			res.count(d)
			return res, nil
		}
	}
	if len(gen) > 0 {
		var err error
		if res.Secrets, err = im.makeSecrets(&p.Change, gen); err != nil {
			return res, err
		}
	}
	if retry && im.Current() != cur {
		return nil, errStale
	}
	_, d, err := im.Commit(ctx, actor, &p.Change, false, source)
	if err != nil {
		res.Secrets = []Secret{}
		return res, p.located(res, err)
	}
	res.Applied = true
	res.count(d)
	res.SecretsCSV = secretsCSV(res.Secrets)
	return res, nil
}

// alsoValidate adds to res the problems the registry's validation finds in
// the rows of p that have none of the sheet (not on rows that have).
func (im *Importer) alsoValidate(ctx context.Context, actor string, p *Parsed, res *Result, source string) error {
	q := p.sound()
	_, _, err := im.Commit(ctx, actor, &q.Change, true, source)
	if err == nil {
		return nil
	}
	var more []Problem
	if p.dropped > 0 {
		more, res.Problems = res.Problems[len(res.Problems)-1:], res.Problems[:len(res.Problems)-1]
	}
	v := &Result{}
	if err := q.located(v, err); err != nil {
		return err
	}
	for _, pr := range v.Problems {
		if pr.Row == 0 || !p.badRows[pr.Sheet][pr.Row] {
			res.Problems = append(res.Problems, pr)
		}
	}
	sortProblems(res.Problems)
	if n := len(res.Problems) - MaxProblems; n > 0 {
		res.Problems, more = res.Problems[:MaxProblems], []Problem{{Reason: fmt.Sprintf("%d more problems not shown: fix those above and import again", n+p.dropped)}}
	}
	res.Problems = append(res.Problems, more...)
	return nil
}

func (r *Result) count(d *devices.Diff) {
	if d == nil {
		return
	}
	r.Added, r.Updated, r.Removed = len(d.Added), len(d.Edited), len(d.Removed)
	r.Stations, r.Gateways = len(d.Stations), len(d.Gateways)
}

// located turns a validation failure into problems of res (nil error) and
// passes any other error on.
func (p *Parsed) located(res *Result, err error) error {
	var le *devices.LoadError
	if !errors.As(err, &le) {
		return err
	}
	for i, lp := range le.Problems {
		if i == MaxProblems {
			res.Problems = append(res.Problems, Problem{Reason: fmt.Sprintf("%d more problems not shown: fix those above and import again", len(le.Problems)-i)})
			break
		}
		res.Problems = append(res.Problems, p.locate(lp))
	}
	return nil
}

// locate places a problem of the registry's validation in the file: the
// row of the entry it names (by id, else by its position in the change)
// and the column of its field.
func (p *Parsed) locate(lp devices.Problem) Problem {
	pr := Problem{Reason: lp.Reason}
	loc := p.loc[lp.Section]
	if loc == nil && lp.Section == "" && lp.ID != "" {
		for _, l := range p.loc {
			if _, ok := l.byID[lp.ID]; ok {
				loc = l
			}
		}
	}
	if loc == nil {
		return pr
	}
	pr.Sheet = loc.sheet
	switch row, ok := loc.byID[lp.ID]; {
	case lp.ID != "" && ok:
		pr.Row = row
	case lp.ID == "" && lp.Index >= 0 && lp.Index < len(loc.upserts):
		pr.Row = loc.upserts[lp.Index]
	}
	if pr.Row == 0 {
		return pr // an entry the file does not name, say a device of a deleted station
	}
	if c, ok := loc.cols[lp.Field]; ok {
		pr.Column, pr.Header = c.letter, c.header
	} else if lp.Field != "" {
		// "nbiot" for a binding: the first of its columns the sheet has.
		for _, key := range []string{"imei", "platform_id", "serial", "product", "mobile", "responsible"} {
			if c, ok := loc.cols[lp.Field+"."+key]; ok {
				pr.Column, pr.Header = c.letter, c.header
				break
			}
		}
	}
	return pr
}

// target is an entry that gets a new secret.
type target struct {
	gateway bool
	i       int // index in the change's UpsertDevices or UpsertGateways
}

// secretsToMake lists the upserts that get a generated secret: those that
// asked (生成密钥 = 是), new gateways without a secret hash, and new devices
// without one that connect themselves: no gateway forwards them, no NB-IoT
// platform or UITD speaks for them.
func (p *Parsed) secretsToMake(cur *devices.Ledger) []target {
	var ts []target
	askD, askG := set(p.Generate["devices"]), set(p.Generate["gateways"])
	for i := range p.Change.UpsertDevices {
		e := &p.Change.UpsertDevices[i]
		isNew := cur == nil
		if cur != nil {
			_, ok := cur.LookupID(e.ID)
			isNew = !ok
		}
		if askD[e.ID] || isNew && e.SecretHash == "" && e.Gateway == "" &&
			e.NBIoT == (devices.NBIoT{}) && e.Kind != devices.KindFacility.String() {
			ts = append(ts, target{false, i})
		}
	}
	for i := range p.Change.UpsertGateways {
		e := &p.Change.UpsertGateways[i]
		isNew := cur == nil || cur.Gateways[e.ID] == nil
		if askG[e.ID] || isNew && e.SecretHash == "" {
			ts = append(ts, target{true, i})
		}
	}
	return ts
}

// makeSecrets generates a secret for each target (broker.GenerateSecret:
// 128 bits from crypto/rand, base64url) and sets its hash in c, hashing on
// every core.
func (im *Importer) makeSecrets(c *devices.Change, ts []target) ([]Secret, error) {
	hash := im.Hash
	if hash == nil {
		hash = broker.HashSecret
	}
	out := make([]Secret, len(ts))
	hashes := make([]string, len(ts))
	errs := make([]error, len(ts))
	for i, t := range ts {
		out[i] = Secret{Kind: "device", Secret: broker.GenerateSecret()}
		if t.gateway {
			out[i].Kind, out[i].ID = "gateway", c.UpsertGateways[t.i].ID
		} else {
			out[i].ID = c.UpsertDevices[t.i].ID
		}
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				hashes[i], errs[i] = hash([]byte(out[i].Secret))
			}
		})
	}
	for i := range ts {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hash secrets: %w", err)
	}
	for i, t := range ts {
		if t.gateway {
			c.UpsertGateways[t.i].SecretHash = hashes[i]
		} else {
			c.UpsertDevices[t.i].SecretHash = hashes[i]
		}
	}
	return out, nil
}

func set(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func secretsCSV(s []Secret) string {
	if len(s) == 0 {
		return ""
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write([]string{"id", "kind", "secret"})
	for _, x := range s {
		w.Write([]string{x.ID, x.Kind, x.Secret})
	}
	w.Flush()
	return b.String()
}

// StoreCommit is the CommitFunc of the registry's store: a change is
// validated, written with its audit (Source "xlsx import" or "csv import")
// and made live in one step, or not at all.
func StoreCommit(s *registry.Store) CommitFunc {
	return func(ctx context.Context, actor string, c *devices.Change, dryRun bool, source string) (*devices.Ledger, *devices.Diff, error) {
		return s.Commit(ctx, actor, c, registry.CommitOptions{DryRun: dryRun, Source: source})
	}
}
