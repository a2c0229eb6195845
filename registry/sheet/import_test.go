package sheet

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
	"golang.org/x/crypto/argon2"
)

func liveImporter(t testing.TB) (*Importer, *devices.Live) {
	t.Helper()
	lv := devices.NewLive(ledger(t))
	return &Importer{Commit: LiveCommit(lv), Current: lv.Load}, lv
}

// verify checks secret against a PHC argon2id hash as the broker does.
func verify(t *testing.T, hash, secret string) bool {
	t.Helper()
	if err := broker.CheckSecretHash(hash); err != nil {
		t.Fatalf("hash %q: %v", hash, err)
	}
	f := strings.Split(hash, "$") // "", argon2id, v=19, m=…,t=…,p=…, salt, key
	var m, tm uint32
	var p uint8
	fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &tm, &p)
	salt, _ := base64.RawStdEncoding.DecodeString(f[4])
	key, _ := base64.RawStdEncoding.DecodeString(f[5])
	return subtle.ConstantTimeCompare(argon2.IDKey([]byte(secret), salt, tm, m, p, uint32(len(key))), key) == 1
}

// One bad row: nothing is written, the rest of the file included; the
// same file fixed applies as a whole.
func TestImportAllOrNothing(t *testing.T) {
	im, lv := liveImporter(t)
	before := lv.Load()
	bad := "设备编号,设备类型,行政区划代码,网关,操作\n" +
		"sm-2,smoke,450204002003,gw-1,\n" +
		"sm-3,smoke,450204002003,gw-1,\n" +
		"hy-1,,,,删除\n" +
		"sm-4,smoke,450204099001,gw-1,\n" // row 5: no station covers it
	res, err := im.Import(context.Background(), "admin", CSV, []byte(bad), false)
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{{SheetDevices, 5, "C", "no micro fire station covers"}})
	if res.Applied || lv.Load() != before || res.Added+res.Removed != 0 {
		t.Fatalf("applied %v added %d removed %d; registry changed: %v", res.Applied, res.Added, res.Removed, lv.Load() != before)
	}
	// Dry run of the fixed file: counts, nothing written.
	good := strings.Replace(bad, "450204099001", "450204002001", 1)
	res, err = im.Import(context.Background(), "admin", CSV, []byte(good), true)
	if err != nil || len(res.Problems) > 0 {
		t.Fatal(err, res.Problems)
	}
	if res.Applied || !res.DryRun || res.Added != 3 || res.Removed != 1 || lv.Load() != before {
		t.Fatalf("dry run: %+v", res)
	}
	res, err = im.Import(context.Background(), "admin", CSV, []byte(good), false)
	if err != nil || len(res.Problems) > 0 || !res.Applied || res.Added != 3 || res.Removed != 1 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	l := lv.Load()
	for _, id := range []string{"sm-2", "sm-3", "sm-4"} {
		if _, ok := l.LookupID(id); !ok {
			t.Errorf("%s not added", id)
		}
	}
	if _, ok := l.LookupID("hy-1"); ok {
		t.Error("hy-1 not removed")
	}
}

// Problems of the sheet and of the registry's validation come in one pass;
// a row with a problem of the sheet is not validated again (no echo).
func TestImportAllProblemsInOnePass(t *testing.T) {
	im, lv := liveImporter(t)
	before := lv.Load()
	text := "设备编号,设备类型,行政区划代码,经度,网关\n" +
		"sm-2,smoke,450204002003,一百零九,gw-1\n" + // row 2: the sheet's problem
		"sm-3,smoke,450204099001,109.4,gw-1\n" + // row 3: validation's problem
		"sm-4,烟感,4502,,gw-1\n" + // row 4: the sheet's (kind); its bad grid is not echoed
		"sm-5,smoke,450204002003,,gw-9 x\n" // row 5: validation's (gateway id)
	res, err := im.Import(context.Background(), "admin", CSV, []byte(text), true)
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{SheetDevices, 2, "D", "is not a number"},
		{SheetDevices, 3, "C", "no micro fire station covers"},
		{SheetDevices, 4, "B", "unknown device kind"},
		{SheetDevices, 5, "E", "gateway"},
	})
	if lv.Load() != before {
		t.Fatal("registry changed")
	}
}

// The template as it is downloaded has nothing to import: said so.
func TestImportEmpty(t *testing.T) {
	im, lv := liveImporter(t)
	before := lv.Load()
	var b bytes.Buffer
	WriteXLSX(&b, nil)
	res, err := im.Import(context.Background(), "admin", XLSX, b.Bytes(), false)
	if err != nil || res.Applied || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Reason, "no rows") || lv.Load() != before {
		t.Fatalf("%+v %v", res, err)
	}
}

// Export of the registry in effect, imported into it, changes nothing.
func TestExportImportNoChange(t *testing.T) {
	im, lv := liveImporter(t)
	for _, f := range []Format{XLSX, CSV} {
		var b bytes.Buffer
		write := WriteXLSX
		if f == CSV {
			write = WriteCSV
		}
		if err := write(&b, lv.Load().Entries()); err != nil {
			t.Fatal(err)
		}
		res, err := im.Import(context.Background(), "admin", f, b.Bytes(), false)
		if err != nil || len(res.Problems) > 0 {
			t.Fatal(f, err, res.Problems)
		}
		if res.Added+res.Updated+res.Removed+res.Stations+res.Gateways+res.NewSecrets != 0 {
			t.Errorf("%v: export → import changed %+v", f, res)
		}
	}
	// And into an empty registry it builds the same one (but UITDs, which
	// spreadsheets do not carry).
	var b bytes.Buffer
	want := lv.Load().Entries()
	if err := WriteXLSX(&b, want); err != nil {
		t.Fatal(err)
	}
	p := ParseXLSX(b.Bytes(), nil)
	got := &devices.Entries{Places: p.Change.Places, Stations: p.Change.UpsertStations, Gateways: p.Change.UpsertGateways, Devices: p.Change.UpsertDevices}
	for i := range want.Devices {
		want.Devices[i].Line = 0
	}
	want.UITDs = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("export → import:\n got %+v\nwant %+v", got, want)
	}
}

// Secrets: made for new devices that connect themselves, new gateways and
// rows that ask (生成密钥 = 是); returned once, only the hash kept.
func TestImportSecrets(t *testing.T) {
	im, lv := liveImporter(t)
	text := "设备编号,设备类型,行政区划代码,网关,IMEI,生成密钥\n" +
		"sm-direct,smoke,450204002003,,,\n" + // new, connects itself: secret
		"sm-gw,smoke,450204002003,gw-1,,\n" + // forwarded by gw-1: none
		"sm-nb,smoke,450204002003,,861234567890124,\n" + // NB-IoT: none
		"el-1,electrical,450204002003,gw-1,,是\n" // asked: a new one
	res, err := im.Import(context.Background(), "admin", CSV, []byte(text), true)
	if err != nil || len(res.Problems) > 0 || res.NewSecrets != 2 || len(res.Secrets) != 0 {
		t.Fatalf("dry run %+v %v", res, err)
	}
	res, err = im.Import(context.Background(), "admin", CSV, []byte(text), false)
	if err != nil || len(res.Problems) > 0 || !res.Applied {
		t.Fatalf("%+v %v", res, err)
	}
	got := map[string]string{}
	for _, s := range res.Secrets {
		got[s.ID] = s.Secret
	}
	if len(got) != 2 || got["sm-direct"] == "" || got["el-1"] == "" {
		t.Fatalf("secrets %+v", res.Secrets)
	}
	l := lv.Load()
	for id, sec := range got {
		d, _ := l.LookupID(id)
		if d.SecretHash == sec || !verify(t, d.SecretHash, sec) {
			t.Errorf("%s: stored %q does not verify its secret", id, d.SecretHash)
		}
	}
	for _, id := range []string{"sm-gw", "sm-nb"} {
		if d, _ := l.LookupID(id); d.SecretHash != "" {
			t.Errorf("%s got a secret", id)
		}
	}
	recs, err := csv.NewReader(strings.NewReader(res.SecretsCSV)).ReadAll()
	if err != nil || len(recs) != 3 || recs[0][0] != "id" {
		t.Fatalf("secrets CSV %q %v", res.SecretsCSV, err)
	}
	// The export carries the hash, never the secret; importing it again keeps the hashes.
	var b bytes.Buffer
	WriteCSV(&b, l.Entries())
	if strings.Contains(b.String(), got["sm-direct"]) {
		t.Fatal("export holds a secret")
	}
	res, err = im.Import(context.Background(), "admin", CSV, b.Bytes(), false)
	if err != nil || res.NewSecrets != 0 || res.Updated != 0 {
		t.Fatalf("re-import %+v %v", res, err)
	}
	// A new gateway without a hash gets one too.
	wb := workbook(t, map[string][][]any{SheetGateways: {{"网关编号"}, {"gw-9"}}})
	res, err = im.Import(context.Background(), "admin", XLSX, wb, false)
	if err != nil || len(res.Secrets) != 1 || res.Secrets[0].ID != "gw-9" || res.Secrets[0].Kind != "gateway" {
		t.Fatalf("gateway %+v %v", res, err)
	}
	if !verify(t, lv.Load().Gateways["gw-9"].SecretHash, res.Secrets[0].Secret) {
		t.Fatal("gateway hash")
	}
}

// The HTTP endpoints: admin only, template and export downloads, import as
// raw body and multipart, 422 with located problems.
func TestRoutes(t *testing.T) {
	im, lv := liveImporter(t)
	mux := http.NewServeMux()
	admin := func(h func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer admin" {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			h(w, r, "admin")
		}
	}
	Routes(mux, im, admin)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	do := func(method, path, ctype string, body io.Reader, auth bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if auth {
			req.Header.Set("Authorization", "Bearer admin")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := do("GET", "/api/v1/registry/export.csv", "", nil, false); r.StatusCode != http.StatusForbidden {
		t.Fatalf("export without a token: %d", r.StatusCode)
	}
	for _, p := range []string{"template.xlsx", "template.csv", "export.xlsx", "export.csv"} {
		r := do("GET", "/api/v1/registry/"+p, "", nil, true)
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 || len(b) == 0 || !strings.Contains(r.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("%s: %d %q", p, r.StatusCode, r.Header)
		}
		if p == "export.xlsx" {
			if pr := ParseXLSX(b, lv.Load()); len(pr.Problems) > 0 || len(pr.Change.UpsertDevices) != 3 {
				t.Fatalf("export.xlsx reads as %+v", pr)
			}
		}
	}
	decode := func(r *http.Response) Result {
		t.Helper()
		var res Result
		if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	before := lv.Load()
	r := do("POST", "/api/v1/registry/import?dry_run=1", "text/csv", strings.NewReader("设备编号,设备类型,行政区划代码,网关\nsm-2,smoke,450204002003,gw-1\n"), true)
	if res := decode(r); r.StatusCode != 200 || res.Applied || res.Added != 1 || lv.Load() != before {
		t.Fatalf("dry run: %d %+v", r.StatusCode, res)
	}
	// Empty lists answer [], not null (docs/api.yaml).
	r = do("POST", "/api/v1/registry/import?dry_run=1", "text/csv", strings.NewReader("设备编号,设备类型,行政区划代码,网关\nsm-2,smoke,450204002003,gw-1\n"), true)
	if b, _ := io.ReadAll(r.Body); !strings.Contains(string(b), `"problems":[]`) || !strings.Contains(string(b), `"secrets":[]`) {
		t.Fatalf("empty lists of a clean dry run: %s", b)
	}
	r = do("POST", "/api/v1/registry/import", "text/csv", strings.NewReader("设备编号,设备类型,行政区划代码\nsm-2,smoke,4502\n"), true)
	if res := decode(r); r.StatusCode != http.StatusUnprocessableEntity || len(res.Problems) != 1 ||
		res.Problems[0] != (Problem{Sheet: SheetDevices, Row: 2, Column: "C", Header: "行政区划代码", Reason: res.Problems[0].Reason}) {
		t.Fatalf("bad grid: %d %+v", r.StatusCode, res)
	}
	var mb bytes.Buffer
	mw := multipart.NewWriter(&mb)
	fw, _ := mw.CreateFormFile("file", "台账.xlsx")
	fw.Write(workbook(t, map[string][][]any{SheetDevices: {{"设备编号", "设备类型", "行政区划代码", "网关"}, {"sm-2", "烟感", "450204002003", "gw-1"}}}))
	mw.Close()
	r = do("POST", "/api/v1/registry/import", mw.FormDataContentType(), &mb, true)
	if res := decode(r); r.StatusCode != http.StatusUnprocessableEntity || len(res.Problems) != 1 || res.Problems[0].Column != "B" {
		t.Fatalf("multipart xlsx: %d %+v", r.StatusCode, res)
	}
	r = do("POST", "/api/v1/registry/import", "application/vnd.ms-excel", strings.NewReader("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"), true)
	if b, _ := io.ReadAll(r.Body); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), ".xls") {
		t.Fatalf("xls: %d %s", r.StatusCode, b)
	}
	r = do("POST", "/api/v1/registry/import", TypeCSV, strings.NewReader("设备编号,设备类型,行政区划代码\nsm-2,smoke,450204002003\n"), true)
	if res := decode(r); r.StatusCode != 200 || !res.Applied || res.Added != 1 || len(res.Secrets) != 1 || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("apply: %d %+v", r.StatusCode, res)
	}
	if _, ok := lv.Load().LookupID("sm-2"); !ok {
		t.Fatal("sm-2 not added")
	}
}

// Stations, gateways and place names come in their own sheets, in one
// change with the devices that need them.
func TestImportOtherSheets(t *testing.T) {
	im, lv := liveImporter(t)
	hash := "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"
	wb := workbook(t, map[string][][]any{
		SheetStations: {{"站点编号", "站点名称", "覆盖区划", "推送地址", "经度", "纬度"}, {"st-new", "鹅山微型消防站", "450204004、450204005001", "https://dispatch.example/st-new", 109.5, 24.2}},
		SheetGateways: {{"网关编号", "密钥哈希"}, {"gw-2", hash}},
		SheetPlaces:   {{"行政区划代码", "名称", "操作"}, {"450204004", "鹅山街道"}, {"450204", "", "删除"}},
		SheetDevices:  {{"设备编号", "设备类型", "行政区划代码", "网关"}, {"el-9", "electrical", "450204004001", "gw-2"}},
	})
	res, err := im.Import(context.Background(), "admin", XLSX, wb, false)
	if err != nil || len(res.Problems) > 0 || !res.Applied || res.NewSecrets != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if res.Added != 1 || res.Stations != 1 || res.Gateways != 1 {
		t.Errorf("counts %+v", res)
	}
	l := lv.Load()
	d, ok := l.LookupID("el-9")
	if !ok || d.Station == nil || d.Station.ID != "st-new" {
		t.Fatalf("el-9 %+v", d)
	}
	if st := l.Station("st-new"); st == nil || !reflect.DeepEqual(st.Grids, []string{"450204004", "450204005001"}) || st.Lat != 24.2 {
		t.Errorf("station %+v", st)
	}
	if g := l.Gateways["gw-2"]; g == nil || g.SecretHash != hash {
		t.Errorf("gateway %+v", g)
	}
	if _, ok := l.Places["450204"]; ok || l.Places["450204004"] != "鹅山街道" {
		t.Errorf("places %v", l.Places)
	}
}

// A change that lands while a file is read (here: while its secrets are
// hashed) is not undone by the columns the file lacks: the file is read
// again against the registry then in effect.
func TestImportConcurrentChangeKept(t *testing.T) {
	im, lv := liveImporter(t)
	first := true
	im.Hash = func(secret []byte) (string, error) {
		if first {
			first = false
			e := lv.Load().Entries()
			for _, d := range e.Devices {
				if d.ID == "el-1" {
					d.Phone = "13900000000"
					if _, _, err := lv.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{d}}); err != nil {
						t.Error(err)
					}
				}
			}
		}
		return broker.HashSecret(secret)
	}
	res, err := im.Import(context.Background(), "admin", CSV, []byte("设备编号,型号,生成密钥\nel-1,NEW-MODEL,是\n"), false)
	if err != nil || !res.Applied || len(res.Secrets) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	d, _ := lv.Load().LookupID("el-1")
	if d.Model != "NEW-MODEL" || d.Phone != "13900000000" || !verify(t, d.SecretHash, res.Secrets[0].Secret) {
		t.Fatalf("el-1 model %q phone %q", d.Model, d.Phone)
	}
}
