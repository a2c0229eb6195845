package testenv

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/influxd"
)

// InfluxDB is a running InfluxDB 1.8 server on a loopback port with Flux
// enabled and the database firewatch created. Its data lives in a temporary
// directory and survives Stop and Start.
type InfluxDB struct {
	// URL is the HTTP API base URL: http://127.0.0.1:PORT.
	URL string
	// Port is the HTTP API port.
	Port int
	// Database is the InfluxQL database: "firewatch".
	Database string
	// Bucket is the v2-API bucket of the database's default retention
	// policy: "firewatch/autogen".
	Bucket string

	t    testing.TB
	conf string
	proc *process
	http *http.Client
}

const (
	// influxReadyTimeout bounds a start. influxd 1.8 spends about 5 s of
	// CPU compiling the Flux standard library before it opens its HTTP
	// port (70 ms without Flux); on a busy 2-core CI machine running
	// several test binaries that can triple.
	influxReadyTimeout = 60 * time.Second
	influxGrace        = 15 * time.Second
)

// StartInfluxDB starts an InfluxDB for the test and stops it when the test
// ends. It looks for influxd in $INFLUXD, then <repo root>/bin/influxd, then
// PATH, and skips the test (fails it under CI=true) when there is none.
func StartInfluxDB(t testing.TB) *InfluxDB {
	t.Helper()
	var candidates []string
	candidates = append(candidates, os.Getenv("INFLUXD"))
	if root, err := RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "bin", "influxd"))
	}
	bin, ok := findBinary("influxd", candidates)
	if !ok {
		Skip(t, "influxd not found in $INFLUXD, <repo>/bin/influxd or PATH: "+
			"GOBIN=$PWD/bin go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10")
	}
	dir := t.TempDir()
	i := &InfluxDB{
		Database: "firewatch",
		Bucket:   "firewatch/autogen",
		t:        t,
		conf:     filepath.Join(dir, "influxdb.conf"),
		http:     &http.Client{Timeout: 30 * time.Second},
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		i.Port = FreePort(t)
		i.URL = "http://127.0.0.1:" + strconv.Itoa(i.Port)
		rpc := FreePort(t)
		if err = os.WriteFile(i.conf, []byte(influxd.Config(dir, i.Port, rpc)), 0o644); err != nil {
			t.Fatalf("influxd: %v", err)
		}
		i.proc = newProcess("influxd", bin, "run", "-config", i.conf)
		if err = i.start(); !errors.Is(err, errExited) {
			break
		}
	}
	t.Cleanup(func() {
		i.proc.stop(influxGrace)
		if t.Failed() {
			t.Logf("influxd output:\n%s", i.proc.output())
		}
	})
	if err != nil {
		t.Fatalf("influxd: %v\n%s", err, i.proc.output())
	}
	return i
}

// Stop shuts InfluxDB down and waits for it to exit. It is a no-op when the
// server is not running.
func (i *InfluxDB) Stop() {
	i.t.Helper()
	i.proc.stop(influxGrace)
}

// Start starts InfluxDB again after Stop, on the same port with the same
// data, and waits until it answers /ping.
func (i *InfluxDB) Start() {
	i.t.Helper()
	if err := i.start(); err != nil {
		i.t.Fatalf("influxd: %v\n%s", err, i.proc.output())
	}
}

func (i *InfluxDB) start() error {
	if err := i.proc.start(); err != nil {
		return err
	}
	err := waitReady(i.proc, influxReadyTimeout, func() error {
		resp, err := i.http.Get(i.URL + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("GET /ping: %s", resp.Status)
		}
		return nil
	})
	if err == nil {
		err = i.query("CREATE DATABASE " + i.Database)
	}
	if err != nil {
		i.proc.stop(influxGrace)
		return fmt.Errorf("start on %s: %w", i.URL, err)
	}
	return nil
}

// query runs an InfluxQL statement and checks that it succeeded.
func (i *InfluxDB) query(q string) error {
	_, err := i.influxQL(q)
	return err
}

type influxQLResponse struct {
	Results []struct {
		Error  string `json:"error"`
		Series []struct {
			Name    string   `json:"name"`
			Columns []string `json:"columns"`
			Values  [][]any  `json:"values"`
		} `json:"series"`
	} `json:"results"`
	Error string `json:"error"`
}

func (i *InfluxDB) influxQL(q string) (*influxQLResponse, error) {
	form := url.Values{"q": {q}, "db": {i.Database}}
	resp, err := i.http.PostForm(i.URL+"/query", form)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	var r influxQLResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %s: %s", q, resp.Status, body)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("%s: %s", q, r.Error)
	}
	for _, res := range r.Results {
		if res.Error != "" {
			return nil, fmt.Errorf("%s: %s", q, res.Error)
		}
	}
	return &r, nil
}

// Write writes line protocol with millisecond timestamps into the database
// through the 1.x API, failing the test on error. It is for seeding data;
// code under test writes through its own client.
func (i *InfluxDB) Write(t testing.TB, lines string) {
	t.Helper()
	u := i.URL + "/write?precision=ms&db=" + url.QueryEscape(i.Database)
	resp, err := i.http.Post(u, "text/plain; charset=utf-8", strings.NewReader(lines))
	if err != nil {
		t.Fatalf("influx write: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("influx write: %s: %s", resp.Status, body)
	}
}

// Flux runs a Flux query through the v2-compatible API (/api/v2/query) and
// returns its rows, each a map from column name to the value as InfluxDB
// printed it in CSV. Rows of all result tables are concatenated in order.
// A failed query fails the test.
func (i *InfluxDB) Flux(t testing.TB, query string) []map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.URL+"/api/v2/query", strings.NewReader(query))
	if err != nil {
		t.Fatalf("flux: %v", err)
	}
	req.Header.Set("Content-Type", "application/vnd.flux")
	req.Header.Set("Accept", "application/csv")
	resp, err := i.http.Do(req)
	if err != nil {
		t.Fatalf("flux: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("flux: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		// InfluxDB 1.8 answers a bad query with 500 and the message both
		// in X-Influxdb-Error and as a one-column CSV.
		t.Fatalf("flux: %s: %s\nquery:\n%s", resp.Status, strings.TrimSpace(string(body)), query)
	}
	rows, err := parseFluxCSV(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("flux: %v\nquery:\n%s", err, query)
	}
	return rows
}

// parseFluxCSV parses annotated or plain Flux CSV. InfluxDB 1.8 repeats the
// annotations and the header for every table; 2.x without annotations
// repeats the header after a blank line when the schema changes. A header
// is thus the first row after annotations, or a row naming the result and
// table columns. An error table (columns error, reference) is an error.
func parseFluxCSV(r io.Reader) ([]map[string]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	var (
		header []string
		rows   []map[string]string
		afterA = true
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse CSV: %w", err)
		}
		if len(rec) > 0 && strings.HasPrefix(rec[0], "#") {
			afterA = true
			continue
		}
		if afterA || len(rec) >= 3 && rec[1] == "result" && rec[2] == "table" {
			header, afterA = rec, false
			continue
		}
		row := make(map[string]string, len(header))
		for c, name := range header {
			if name != "" && c < len(rec) {
				row[name] = rec[c]
			}
		}
		if _, ok := row["error"]; ok && len(row) <= 2 {
			return nil, fmt.Errorf("query failed: %s", row["error"])
		}
		rows = append(rows, row)
	}
}

// Count returns how many field values measurement holds over all time: in
// firewatch's schema one per stored reading, so that "no reading lost"
// is Count == readings sent. It uses InfluxQL count(*), which is fast even
// for millions of points.
func (i *InfluxDB) Count(t testing.TB, measurement string) int {
	t.Helper()
	q := `SELECT count(*) FROM ` + quoteIdent(i.Database) + `..` + quoteIdent(measurement)
	r, err := i.influxQL(q)
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	n := 0
	for _, res := range r.Results {
		for _, s := range res.Series {
			for _, v := range s.Values {
				for c := 1; c < len(v); c++ {
					if f, ok := v[c].(float64); ok {
						n += int(f)
					}
				}
			}
		}
	}
	return n
}

func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
