package sheet

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// baseLedger is the registry the imports apply to: two stations, a gateway
// and three devices.
const baseLedger = `places:
  "450204": 柳州市柳南区
stations:
  - {id: st-tanxi, name: 潭西微型消防站, grids: ["450204002"], endpoint: "http://127.0.0.1:1/tanxi", lat: 24.3, lon: 109.4}
  - {id: st-ehu, name: 鹅湖微型消防站, grids: ["450204003"], endpoint: "http://127.0.0.1:1/ehu"}
gateways:
  - {id: gw-1, secret_hash: ""}
devices:
  - {id: el-1, kind: electrical, model: ACREL-ARCM300, grid: "450204002003", address: 潭西路1号, lat: 24.31, lon: 109.41, unit: 潭西小学, phone: "0772-3800001", gateway: gw-1, channels: 2}
  - {id: sm-1, kind: smoke, grid: "450204002003", heartbeat: 6h, nbiot: {imei: "861234567890123", product: jt-smoke}}
  - {id: hy-1, kind: hydrant, grid: "450204003001", station: st-ehu, rules: {hydrant_low: {above: 0.2}}}
`

func ledger(t testing.TB) *devices.Ledger {
	t.Helper()
	l, err := devices.ParseLedger("base.yaml", []byte(baseLedger))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// want is a problem the test expects: sheet, row, column letter and a part of the reason.
type want struct {
	sheet  string
	row    int
	column string
	reason string
}

func checkProblems(t *testing.T, got []Problem, wants []want) {
	t.Helper()
	for _, w := range wants {
		if !slices.ContainsFunc(got, func(p Problem) bool {
			return p.Sheet == w.sheet && p.Row == w.row && p.Column == w.column && strings.Contains(p.Reason, w.reason)
		}) {
			t.Errorf("no problem at %s row %d column %q with %q", w.sheet, w.row, w.column, w.reason)
		}
	}
	if len(got) != len(wants) {
		t.Errorf("got %d problems, want %d", len(got), len(wants))
	}
	if t.Failed() {
		for _, p := range got {
			t.Logf("got %+v", p)
		}
	}
}

// workbook builds an XLSX cell by cell: sheet → rows of cells ("" no cell).
// Values that parse as numbers are written as number cells, as a user's
// typing makes them.
func workbook(t *testing.T, sheets map[string][][]any) []byte {
	t.Helper()
	f := excelize.NewFile()
	names := make([]string, 0, len(sheets))
	for n := range sheets {
		names = append(names, n)
	}
	slices.Sort(names)
	for i, n := range names {
		if i == 0 {
			f.SetSheetName("Sheet1", n)
		} else if _, err := f.NewSheet(n); err != nil {
			t.Fatal(err)
		}
		for r, row := range sheets[n] {
			for c, v := range row {
				if v == "" || v == nil {
					continue
				}
				cell, _ := excelize.CoordinatesToCellName(c+1, r+1)
				if err := f.SetCellValue(n, cell, v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var devHeader = []any{"设备编号", "设备类型", "型号", "行政区划代码", "地址", "经度", "纬度", "责任单位", "联系电话", "微型消防站", "网关", "通道数", "心跳周期", "操作"}

// Mistakes of the sheets themselves: each at its sheet, row and column.
func TestParseXLSXProblems(t *testing.T) {
	b := workbook(t, map[string][][]any{
		SheetDevices: {
			devHeader,
			{"sm-2", "独立式感烟火灾探测报警器", "JTY-GD", "450204002003", "鹅山路5号", 109.42, 24.32, "某超市", "13800000000", "", "", "", "6h"},
			{"sm-3", "烟感器", "", "450204002003"},                                                     // row 3: unknown kind
			{"sm-4", "smoke", "", "450204002003", "", "一百零九", 24.3},                                 // row 4: longitude not a number
			{"sm-2", "smoke", "", "450204002003"},                                                   // row 5: duplicate id
			{"sm-5", "smoke", "", "450204002003", "", 109.4, 124.3},                                 // row 6: latitude out of range
			{"", "smoke", "", "450204002003"},                                                       // row 7: no id
			{"el-9", "electrical", "", "450204002003", "", "", "", "", "", "", "gw-1", "五", "30分钟"}, // row 8: channels, heartbeat
			{},
			{"sm-1", "", "", "", "", "", "", "", "", "", "", "", "", "拆除"}, // row 10: unknown operation
		},
		SheetGateways: {
			{"编号", "密钥哈希"}, // wrong header: unknown column, required 网关编号 missing
			{"gw-2"},
		},
		SheetStations: {
			{"站点编号", "站点名称", "覆盖区划", "推送地址", "经度", "纬度", "值班电话"}, // G1: unknown column
		},
		"Sheet9": {{"x"}},
	})
	p := ParseXLSX(b, ledger(t))
	checkProblems(t, p.Problems, []want{
		{SheetDevices, 3, "B", "unknown device kind"},
		{SheetDevices, 4, "F", "is not a number"},
		{SheetDevices, 5, "A", "appears twice in the file (first at row 2)"},
		{SheetDevices, 6, "G", "lat 124.3 is outside"},
		{SheetDevices, 7, "A", "设备编号 is empty"},
		{SheetDevices, 8, "L", "not a whole number"},
		{SheetDevices, 8, "M", "not a duration"},
		{SheetDevices, 10, "N", "is not 删除"},
		{SheetGateways, 1, "A", `unknown column "编号"`},
		{SheetGateways, 1, "", "required column 网关编号 is missing"},
		{SheetStations, 1, "G", `unknown column "值班电话"`},
		{"Sheet9", 0, "", "unknown sheet"},
	})
}

// A title row above the headers is skipped; codes typed as numbers are read
// back as their digits.
func TestParseXLSXTitleAndNumbers(t *testing.T) {
	b := workbook(t, map[string][][]any{
		SheetDevices: {
			{"柳南区电气火灾监控设备台账（2026年12月）"},
			{},
			{"设备编号", "设备类型", "行政区划代码", "IMEI", "联系电话"},
			{"sm-2", "smoke", 450204002003, 861234567890123, 13800000000},
		},
	})
	p := ParseXLSX(b, nil)
	if len(p.Problems) > 0 {
		t.Fatal(p.Problems)
	}
	d := p.Change.UpsertDevices[0]
	if d.Grid != "450204002003" || d.NBIoT.IMEI != "861234567890123" || d.Phone != "13800000000" {
		t.Fatalf("%+v", d)
	}
	if got := p.loc["devices"].byID["sm-2"]; got != 4 {
		t.Fatalf("sm-2 at row %d, want 4", got)
	}
	for in, want := range map[string]string{"4.50204002003E+11": "450204002003", "8.61234567890123E+14": "861234567890123"} {
		if !sciNumber(in) {
			t.Errorf("sciNumber(%s) = false", in)
		}
		if got, ok := integral(in); !ok || got != want {
			t.Errorf("integral(%s) = %s, %v", in, got, ok)
		}
	}
	if _, ok := integral("1.5E+0"); ok {
		t.Error("1.5E+0 read as a whole code")
	}
	for _, in := range []string{"4.5E-3", "sm-1E+5", "abc", "450204002003"} {
		if sciNumber(in) {
			t.Errorf("sciNumber(%s) = true", in)
		}
	}
}

// Mistakes only the registry's validation finds are placed at the row of
// the entry and the column of the field; the change applies nothing.
func TestImportXLSXValidationProblems(t *testing.T) {
	lv := devices.NewLive(ledger(t))
	im := &Importer{Commit: LiveCommit(lv), Current: lv.Load}
	b := workbook(t, map[string][][]any{
		SheetDevices: {
			devHeader,
			{"sm-2", "smoke", "", "450204002003"},
			{"sm-3", "smoke", "", "4502"}, // row 3: short grid
			{"sm-4", "smoke", "", "450204002003", "", "", "", "", "", "st-nowhere"},         // row 4: unknown station
			{"sm-5", "smoke", "", "450204009001"},                                           // row 5: no station covers it
			{"hy-1", "", "", "", "", "", "", "", "", "", "", "", "", "删除"},                  // row 6: fine
			{"el-1", "electrical", "", "450204002003", "", "", "", "", "", "", "gw-bad id"}, // row 7: bad gateway id
		},
		SheetStations: {
			{"站点编号", "站点名称", "覆盖区划", "推送地址"},
			{"st-new", "新站", "450204004", "ftp://x"}, // row 2: endpoint not http
		},
	})
	before := lv.Load()
	res, err := im.Import(context.Background(), "admin", XLSX, b, false)
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{SheetDevices, 3, "D", "4502"},
		{SheetDevices, 4, "J", "unknown station"},
		{SheetDevices, 5, "D", "no micro fire station covers"},
		{SheetDevices, 7, "K", "gateway"},
		{SheetStations, 2, "D", "not an http(s) URL"},
	})
	if res.Applied || lv.Load() != before {
		t.Fatal("an import with problems changed the registry")
	}
	if _, ok := lv.Load().LookupID("sm-2"); ok {
		t.Fatal("sm-2 added although other rows have problems")
	}
}

// A CSV written by hand, with its mistakes at the right rows and columns;
// the rows are numbered as a spreadsheet shows them (a quoted field over two
// lines is one row).
func TestParseCSVProblems(t *testing.T) {
	const text = "\ufeff设备编号,设备类型,行政区划代码,地址,经度,纬度,联系电话,通道数\n" +
		"sm-2,独立式感烟火灾探测报警器,450204002003,\"鹅山路5号\n2栋\",109.42,24.32,13800000000,\n" + // row 2 spans two lines
		"sm-3,smoke,450204002003,,109.4.1,24.3,,\n" + // row 3: bad longitude
		"sm-4,smoke,4.50204E+11,,,,,\n" + // row 4: a code Excel shortened
		"sm-5,charger,450204002003,,,,,13\n" + // row 5: channels above 12
		"sm-2,smoke,450204002003,,,,,\n" + // row 6: duplicate
		",,,,,,,\n" + // row 7: blank, skipped
		"sm-6,smoke,450204002003,,,,,\n"
	p := ParseCSV([]byte(text), ledger(t))
	checkProblems(t, p.Problems, []want{
		{SheetDevices, 3, "E", "is not a number"},
		{SheetDevices, 4, "C", "scientific notation"},
		{SheetDevices, 5, "H", "channels 13 is outside"},
		{SheetDevices, 6, "A", "appears twice in the file (first at row 2)"},
	})
	if got := p.Change.UpsertDevices[0].Address; got != "鹅山路5号\n2栋" {
		t.Errorf("address %q", got)
	}

	// 责任人 on a device without an NB-IoT binding is its contact (issue
	// 18); the binding's own NB-IoT责任人 on such a device: said plainly.
	p = ParseCSV([]byte("设备编号,设备类型,行政区划代码,责任单位,责任人,联系电话\nel-2,electrical,450204002003,潭西小学,张三,13800000000\n"), nil)
	checkProblems(t, p.Problems, nil)
	if d := p.Change.UpsertDevices[0]; d.Contact != "张三" || d.Unit != "潭西小学" || d.Phone != "13800000000" || d.NBIoT != (devices.NBIoT{}) {
		t.Errorf("el-2 read as %+v", d)
	}
	p = ParseCSV([]byte("设备编号,设备类型,行政区划代码,责任人,NB-IoT责任人\nel-2,electrical,450204002003,张三,张三\n"), nil)
	checkProblems(t, p.Problems, []want{{SheetDevices, 2, "E", "kept only for NB-IoT devices"}})

	// A missing required header.
	p = ParseCSV([]byte("设备类型,行政区划代码\nsmoke,450204002003\n"), nil)
	checkProblems(t, p.Problems, []want{{SheetDevices, 1, "", "required column 设备编号 is missing"}})
}

// Chinese Excel saves “CSV (逗号分隔)” in GB18030 (GBK): it is read as such.
func TestParseCSVGB18030(t *testing.T) {
	text := "设备编号,设备类型,行政区划代码,地址,责任单位\nsm-2,独立式感烟火灾探测报警器,450204002003,鹅山路5号,柳南区某超市\n"
	gbk, err := simplifiedchinese.GB18030.NewEncoder().Bytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := ParseCSV(gbk, nil)
	if len(p.Problems) > 0 {
		t.Fatal(p.Problems)
	}
	d := p.Change.UpsertDevices[0]
	if d.Kind != "smoke" || d.Address != "鹅山路5号" || d.Unit != "柳南区某超市" {
		t.Fatalf("%+v", d)
	}
	p = ParseCSV([]byte{0xFF, 0xFE, 'a', 0}, nil)
	checkProblems(t, p.Problems, []want{{SheetDevices, 0, "", "UTF-16"}})
}

// roundTripEntries is a registry with every field of every section set.
func roundTripEntries() *devices.Entries {
	return &devices.Entries{
		Places:   map[string]string{"450204": "柳州市柳南区", "450204002": "潭西街道"},
		Stations: []devices.StationEntry{{ID: "st-1", Name: "潭西微型消防站", Grids: []string{"450204002", "450204003001"}, Endpoint: "https://dispatch.example/st-1", Lat: 24.3, Lon: 109.4}},
		Gateways: []devices.GatewayEntry{{ID: "gw-1", SecretHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"}},
		Devices: []devices.DeviceEntry{
			{ID: "el-1", Kind: "electrical", Model: "ACREL, \"ARCM300\"", Grid: "450204002003", Address: "潭西路1号\n二楼", Lat: 24.312345678, Lon: 109.4000001,
				Unit: "潭西小学", Phone: "07723800001", Station: "st-1", Gateway: "gw-1", Channels: 2, Heartbeat: 90 * time.Minute,
				Rules: "residual_current: {above: 500}\n"},
			{ID: "sm-1", Kind: "smoke", Grid: "450204002003", SecretHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
				NBIoT: devices.NBIoT{IMEI: "861234567890123", PlatformID: "abc-1", Serial: "00012345", Product: "jt-smoke", Responsible: "张三", Mobile: "13800000000"}, Heartbeat: 6 * time.Hour},
			{ID: "cab-1", Kind: "charger", Grid: "450204002003", Address: "=HYPERLINK(\"http://x\")", Unit: "@unit", Phone: "+86 772 3800001", Model: "-"},
			{ID: "0042", Kind: "hydrant", Grid: "450204003001", Lat: -0.5, Lon: -179.25, Heartbeat: 45 * time.Second},
		},
	}
}

// Export → import gives back every entry field for field.
func TestExportImportIdentity(t *testing.T) {
	e := roundTripEntries()
	var xb, cb bytes.Buffer
	if err := WriteXLSX(&xb, e); err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(&cb, e); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cb.String(), ",=HYPERLINK") || strings.Contains(cb.String(), ",\"=HYPERLINK") || !strings.Contains(cb.String(), "'@unit") {
		t.Errorf("CSV export runs formulas: %s", cb.String())
	}
	px := ParseXLSX(xb.Bytes(), nil)
	pc := ParseCSV(cb.Bytes(), nil)
	for name, p := range map[string]*Parsed{"xlsx": px, "csv": pc} {
		if len(p.Problems) > 0 {
			t.Fatalf("%s: %v", name, p.Problems)
		}
		if !reflect.DeepEqual(p.Change.UpsertDevices, e.Devices) {
			t.Errorf("%s devices:\n got %+v\nwant %+v", name, p.Change.UpsertDevices, e.Devices)
		}
		if len(p.Change.DeleteDevices)+len(p.Generate["devices"]) > 0 {
			t.Errorf("%s: deletes or secrets from an export", name)
		}
	}
	c := px.Change
	if !reflect.DeepEqual(c.UpsertStations, e.Stations) || !reflect.DeepEqual(c.UpsertGateways, e.Gateways) || !reflect.DeepEqual(c.Places, e.Places) {
		t.Errorf("xlsx: stations %+v gateways %+v places %+v", c.UpsertStations, c.UpsertGateways, c.Places)
	}
}

// The template has the sheets, the headers and the drop-downs, and reads
// back as an empty change.
func TestTemplate(t *testing.T) {
	var b bytes.Buffer
	if err := WriteXLSX(&b, nil); err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.GetSheetList(); !reflect.DeepEqual(got, []string{SheetDevices, SheetGateways, SheetStations, SheetPlaces, SheetHelp}) {
		t.Fatalf("sheets %v", got)
	}
	rows, _ := f.GetRows(SheetDevices)
	for i, h := range []string{"设备编号", "设备类型", "型号", "行政区划代码", "地址", "经度", "纬度", "责任单位", "责任人", "联系电话", "微型消防站", "网关", "通道数", "心跳周期"} {
		if rows[0][i] != h {
			t.Errorf("header %s is %q, want %q", letter(i), rows[0][i], h)
		}
	}
	dvs, err := f.GetDataValidations(SheetDevices)
	if err != nil || !slices.ContainsFunc(dvs, func(dv *excelize.DataValidation) bool {
		return strings.HasPrefix(dv.Sqref, "B2:") && strings.Contains(dv.Formula1, "独立式感烟火灾探测报警器")
	}) {
		t.Errorf("no drop-down of kinds on 设备!B: %v %v", dvs, err)
	}
	if p := ParseXLSX(b.Bytes(), nil); len(p.Problems) > 0 || !reflect.DeepEqual(p.Change, devices.Change{}) {
		t.Errorf("template reads as %+v, %v", p.Change, p.Problems)
	}
	var c bytes.Buffer
	if err := WriteCSV(&c, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(c.Bytes(), []byte("\ufeff设备编号,设备类型,型号,")) {
		t.Errorf("csv template %q", c.String())
	}
}

// Columns a sheet leaves out keep the entry's values; so does an empty 密钥哈希.
func TestPartialSheetKeeps(t *testing.T) {
	l := ledger(t)
	p := ParseCSV([]byte("设备编号,联系电话\nel-1,13900000000\n"), l)
	if len(p.Problems) > 0 {
		t.Fatal(p.Problems)
	}
	cur := l.Entries()
	wantDev := cur.Devices[0]
	wantDev.Phone = "13900000000"
	if got := p.Change.UpsertDevices[0]; !reflect.DeepEqual(got, wantDev) {
		t.Fatalf("got  %+v\nwant %+v", got, wantDev)
	}
}
