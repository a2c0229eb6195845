package dashboards

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// minSchemaVersion is the dashboard schema of Grafana 11.0; Grafana 11 and
// 12 load it and migrate it in memory.
const minSchemaVersion = 39

// pluginQueryTypes are the queries the firewatch data source plugin answers
// (plugin/pkg/plugin/query.go).
var pluginQueryTypes = []string{"alarms", "devices", "grid", "open_by_severity", "stats", "transitions"}

// dashboard is the part of a dashboard JSON the tests look at; panels and
// targets stay generic so that every datasource reference is found.
type dashboard struct {
	file          string
	UID           string           `json:"uid"`
	Title         string           `json:"title"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []map[string]any `json:"panels"`
	Templating    struct {
		List []map[string]any `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []map[string]any `json:"list"`
	} `json:"annotations"`
}

// query is one query of a dashboard: a panel target, a template variable or
// an annotation, with the data source it goes to.
type query struct {
	where  string
	dsType string
	dsUID  string
	target map[string]any
	text   string // Flux or PromQL; empty for the plugin
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("want the 4 dashboards, found %v", files)
	}
	var ds []dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard{file: f}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// allPanels flattens rows.
func allPanels(ps []map[string]any) []map[string]any {
	var out []map[string]any
	for _, p := range ps {
		out = append(out, p)
		if sub, ok := p["panels"].([]any); ok {
			for _, s := range sub {
				if m, ok := s.(map[string]any); ok {
					out = append(out, allPanels([]map[string]any{m})...)
				}
			}
		}
	}
	return out
}

func dsRef(v any) (typ, uid string, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap {
		return "", "", false
	}
	typ, _ = m["type"].(string)
	uid, _ = m["uid"].(string)
	return typ, uid, true
}

// queries lists every query of d. A target without its own datasource
// inherits the panel's, as in Grafana.
func (d dashboard) queries(t *testing.T) []query {
	t.Helper()
	var qs []query
	add := func(where string, ds any, target map[string]any) {
		typ, uid, ok := dsRef(ds)
		if !ok {
			t.Errorf("%s: %s: no datasource reference", d.file, where)
			return
		}
		q := query{where: d.file + ": " + where, dsType: typ, dsUID: uid, target: target}
		switch typ {
		case "influxdb":
			q.text, _ = target["query"].(string)
		case "prometheus":
			q.text, _ = target["expr"].(string)
		}
		qs = append(qs, q)
	}
	for _, p := range allPanels(d.Panels) {
		title, _ := p["title"].(string)
		targets, _ := p["targets"].([]any)
		if p["type"] != "row" && len(targets) == 0 {
			t.Errorf("%s: panel %q has no queries", d.file, title)
		}
		for _, tg := range targets {
			m := tg.(map[string]any)
			ds := m["datasource"]
			if ds == nil {
				ds = p["datasource"]
			}
			add(fmt.Sprintf("panel %q target %v", title, m["refId"]), ds, m)
		}
	}
	for _, v := range d.Templating.List {
		if v["type"] != "query" {
			continue
		}
		target := map[string]any{}
		switch q := v["query"].(type) {
		case string:
			target["query"], target["expr"] = q, q
		case map[string]any:
			target["query"], target["expr"] = q["query"], q["query"]
		}
		add(fmt.Sprintf("variable %v", v["name"]), v["datasource"], target)
	}
	for _, a := range d.Annotations.List {
		if a["builtIn"] != nil {
			continue
		}
		target, _ := a["target"].(map[string]any)
		if target == nil {
			t.Errorf("%s: annotation %v has no target", d.file, a["name"])
			continue
		}
		add(fmt.Sprintf("annotation %v", a["name"]), a["datasource"], target)
	}
	return qs
}

// provisioned reads the data sources of provisioning/datasources/*.yaml:
// uid → type.
func provisioned(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("provisioning/datasources/*.yaml")
	if len(files) == 0 {
		t.Fatal("no data source provisioning files")
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			APIVersion  int `yaml:"apiVersion"`
			Datasources []struct {
				Name, UID, Type string
				URL             string `yaml:"url"`
			} `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if p.APIVersion != 1 {
			t.Errorf("%s: apiVersion %d, want 1", f, p.APIVersion)
		}
		for _, ds := range p.Datasources {
			if ds.UID == "" || ds.Type == "" || ds.Name == "" {
				t.Errorf("%s: data source %+v lacks a name, uid or type", f, ds)
			}
			out[ds.UID] = ds.Type
		}
	}
	return out
}

func TestDashboardsStructure(t *testing.T) {
	sources := provisioned(t)
	var plugin struct{ ID, Type string }
	b, err := os.ReadFile("plugin/src/plugin.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &plugin); err != nil {
		t.Fatalf("plugin.json: %v", err)
	}
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q title %q: both are needed for provisioning and links", d.file, d.UID, d.Title)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %q", d.file, other, d.UID)
		}
		uids[d.UID] = d.file
		if d.SchemaVersion < minSchemaVersion {
			t.Errorf("%s: schemaVersion %d, want ≥ %d (Grafana 11)", d.file, d.SchemaVersion, minSchemaVersion)
		}
		ids := map[float64]string{}
		for _, p := range allPanels(d.Panels) {
			id, ok := p["id"].(float64)
			if !ok {
				t.Errorf("%s: panel %q has no id", d.file, p["title"])
				continue
			}
			if other, dup := ids[id]; dup {
				t.Errorf("%s: panels %q and %q share id %v", d.file, other, p["title"], id)
			}
			ids[id], _ = p["title"].(string)
			if _, ok := p["gridPos"].(map[string]any); !ok {
				t.Errorf("%s: panel %q has no gridPos", d.file, p["title"])
			}
		}
		for _, q := range d.queries(t) {
			typ, ok := sources[q.dsUID]
			switch {
			case !ok:
				t.Errorf("%s: data source uid %q is not provisioned", q.where, q.dsUID)
			case typ != q.dsType:
				t.Errorf("%s: data source %q has type %q, provisioned as %q", q.where, q.dsUID, q.dsType, typ)
			}
			switch q.dsType {
			case plugin.ID:
				qt, _ := q.target["queryType"].(string)
				if !slices.Contains(pluginQueryTypes, qt) {
					t.Errorf("%s: plugin queryType %q, want one of %v", q.where, qt, pluginQueryTypes)
				}
			case "influxdb", "prometheus":
				if strings.TrimSpace(q.text) == "" {
					t.Errorf("%s: empty query", q.where)
				}
			default:
				t.Errorf("%s: unexpected data source type %q", q.where, q.dsType)
			}
		}
	}
	if sources["firewatch-api"] != plugin.ID || plugin.Type != "datasource" {
		t.Errorf("provisioned firewatch-api has type %q; plugin.json says id %q type %q", sources["firewatch-api"], plugin.ID, plugin.Type)
	}
}

// Template variable values used when running the queries: the grid of the
// test ledger (devices/testdata/ledger.yaml) and a device with alarms.
var vars = map[string]string{
	"county": "450204", "town": "450204002", "village": "450204002003", "device": "el-1",
	"metric": "cable_temp_c", "grid": "450204", "severity": "all", "state": "open", "instance": ".*",
}

var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// interpolate does what Grafana does to a Flux query before sending it:
// template variables become their values, and v.timeRangeStart,
// v.timeRangeStop and v.windowPeriod become the panel's time range and
// interval.
func interpolate(t *testing.T, q string, from, to time.Time) string {
	t.Helper()
	q = varRef.ReplaceAllStringFunc(q, func(s string) string {
		m := varRef.FindStringSubmatch(s)
		name := m[1] + m[2]
		v, ok := vars[name]
		if !ok {
			t.Errorf("unknown template variable %s in query:\n%s", s, q)
		}
		return v
	})
	r := strings.NewReplacer(
		"v.timeRangeStart", from.UTC().Format(time.RFC3339Nano),
		"v.timeRangeStop", to.UTC().Format(time.RFC3339Nano),
		"v.windowPeriod", "1m")
	return r.Replace(q)
}

// seed writes readings of every kind and alarm transitions for the devices
// of the test ledger through the real encoder, from start on.
func seed(t *testing.T, db *testenv.InfluxDB, start time.Time) {
	t.Helper()
	l, err := devices.LoadLedger("../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	enc := influx.NewEncoder(l)
	var buf []byte
	for i := range l.Devices {
		d := &l.Devices[i]
		for step := range 30 {
			ts := start.Add(time.Duration(step) * time.Minute).UnixMilli()
			var ms []devices.Metric
			var vs []float64
			for j, m := range d.Kind.Metrics() {
				ms = append(ms, m)
				vs = append(vs, float64(j+1)+float64(step)/10)
			}
			chans := 1
			if d.Kind == devices.KindElectrical || d.Kind == devices.KindCharger {
				chans = 2
			}
			for ch := 1; ch <= chans; ch++ {
				buf = enc.AppendLine(buf, d.Index, uint8(ch), ms, vs, ts)
			}
		}
		for k, state := range []string{"raised", "cleared"} {
			buf = enc.AppendAlarm(buf, influx.AlarmPoint{
				Device: d.Index, Rule: d.Kind.String() + ".test.alarm", Severity: "alarm", State: state,
				Value: 75, Threshold: 70, AlarmID: fmt.Sprintf("alm-%06d", i+1),
				Message: "【报警】测试 " + d.ID, Time: start.Add(time.Duration(10+k*5) * time.Minute).UnixMilli(),
			})
		}
		yes := true
		buf = enc.AppendResponse(buf, influx.ResponsePoint{
			Device: d.Index, Station: "st-tanxi", Rule: d.Kind.String() + ".test.alarm", Severity: "alarm",
			Outcome: "resolved", AlarmID: fmt.Sprintf("alm-%06d", i+1),
			Seconds:         [influx.NumResponseFields]float64{1, 1.5, 20, 30 + float64(i), 40, 150 + float64(i), 900},
			RespondedInTime: &yes, ArrivedInTime: &yes, Time: start.Add(20 * time.Minute).UnixMilli(),
		})
	}
	if len(buf) == 0 {
		t.Fatal("the encoder wrote nothing")
	}
	db.Write(t, string(buf))
}

// TestFluxQueries runs every Flux query of every dashboard, variables
// substituted, against a real InfluxDB seeded through the real encoder,
// and wants rows from each.
func TestFluxQueries(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	to := time.Now()
	from := to.Add(-time.Hour)
	seed(t, db, from.Add(5*time.Minute))
	n := 0
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries(t) {
			if q.dsType != "influxdb" {
				continue
			}
			n++
			flux := interpolate(t, q.text, from, to)
			rows := db.Flux(t, flux)
			if len(rows) == 0 {
				t.Errorf("%s: no rows from\n%s", q.where, flux)
			}
		}
	}
	if n < 8 {
		t.Errorf("ran %d Flux queries, the dashboards have more", n)
	}
}

var promName = regexp.MustCompile(`\bfirewatch_[a-z0-9_]+`)

// TestPromQLMetricsExist checks that every metric name in the PromQL of
// the dashboards is one firewatch exports: it builds firewatch, runs it
// with its embedded broker on free loopback ports, and reads /metrics.
func TestPromQLMetricsExist(t *testing.T) {
	want := map[string][]string{}
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries(t) {
			if q.dsType != "prometheus" {
				continue
			}
			names := promName.FindAllString(q.text, -1)
			if len(names) == 0 {
				t.Errorf("%s: no firewatch metric in %q", q.where, q.text)
			}
			for _, n := range names {
				want[n] = append(want[n], q.where)
			}
		}
	}
	have := scrapeFirewatch(t)
	for name, where := range want {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && have[b] == "histogram" {
				base = b
			}
		}
		if _, ok := have[base]; !ok {
			t.Errorf("metric %s (in %s) is not in firewatch's /metrics", name, strings.Join(where, "; "))
		}
	}
}

// scrapeFirewatch builds and starts firewatch (testenv.StartFirewatch) and returns the metric
// families of its /metrics: name → type.
func scrapeFirewatch(t *testing.T) map[string]string {
	t.Helper()
	db := testenv.StartInfluxDB(t)
	fw := testenv.StartFirewatch(t, "..", append([]string{"-influx.url", db.URL, "-influx.bucket", db.Bucket}, withUITD(t)...)...)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fw.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	have := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			have[f[2]] = f[3]
		}
	}
	if len(have) == 0 {
		t.Fatal("empty /metrics")
	}
	t.Logf("firewatch exports %d metric families", len(have))
	return have
}
