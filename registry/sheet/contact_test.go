package sheet

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/xuri/excelize/v2"
)

// A county sheet that fills 责任人 for every device — here an electrical
// monitor and a smoke detector without NB-IoT — imports: 责任人 is each
// device's contact; exported, the sheet has it in 责任人 again and
// imports back as no change (issue 18).
func TestImportContactEveryDevice(t *testing.T) {
	im, lv := liveImporter(t)
	x := workbook(t, map[string][][]any{SheetDevices: {
		{"设备编号", "设备类型", "行政区划代码", "地址", "责任单位", "责任人", "联系电话"},
		{"el-7", "电气火灾监控探测器", "450204002003", "潭西路7号", "潭西农贸市场", "韦建国", "13800000007"},
		{"el-1", "electrical", "450204002003", "潭西路1号", "潭西小学", "覃秀兰", "0772-3800001"},
	}})
	res, err := im.Import(context.Background(), "admin", XLSX, x, false)
	if err != nil || len(res.Problems) > 0 || !res.Applied {
		t.Fatalf("import: %+v %v", res, err)
	}
	for id, want := range map[string]string{"el-7": "韦建国", "el-1": "覃秀兰"} {
		if d, ok := lv.Load().LookupID(id); !ok || d.Contact != want || d.NBIoT != nil {
			t.Errorf("%s contact %q, want %q (binding %v)", id, d.Contact, want, d.NBIoT)
		}
	}

	var b bytes.Buffer
	if err := WriteXLSX(&b, lv.Load().Entries()); err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := f.GetRows(SheetDevices)
	col := -1
	for i, h := range rows[0] {
		if h == "责任人" {
			col = i
		}
	}
	found := false
	for _, r := range rows[1:] {
		if len(r) > col && r[0] == "el-7" {
			found = r[col] == "韦建国"
		}
	}
	if col < 0 || !found {
		t.Errorf("the export has no 责任人 韦建国 for el-7: %v", rows)
	}
	res, err = im.Import(context.Background(), "admin", XLSX, b.Bytes(), false)
	if err != nil || len(res.Problems) > 0 || res.Added+res.Updated+res.Removed != 0 {
		t.Errorf("export → import: %+v %v", res, err)
	}
}

// The binding's own responsible person (NB-IoT责任人) and the device's
// contact (责任人) are two columns: every combination exports and imports
// back as it was. A sheet without the NB-IoT责任人 column names the
// binding's person with 责任人 where the binding has none.
func TestContactAndNBIoTResponsible(t *testing.T) {
	nb := devices.NBIoT{IMEI: "861234567890123", Product: "jt-smoke"}
	with := func(resp string) devices.NBIoT { n := nb; n.Responsible = resp; return n }
	e := &devices.Entries{Devices: []devices.DeviceEntry{
		{ID: "sm-1", Kind: "smoke", Grid: "450204002003", Contact: "王五", NBIoT: with("张三")},
		{ID: "sm-2", Kind: "smoke", Grid: "450204002003", Contact: "王五", NBIoT: with("")},
		{ID: "sm-3", Kind: "smoke", Grid: "450204002003", NBIoT: with("张三")},
		{ID: "el-1", Kind: "electrical", Grid: "450204002003", Contact: "李四", Phone: "13800000000"},
	}}
	var xb, cb bytes.Buffer
	if err := WriteXLSX(&xb, e); err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(&cb, e); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Parsed{"xlsx": ParseXLSX(xb.Bytes(), nil), "csv": ParseCSV(cb.Bytes(), nil)} {
		if len(p.Problems) > 0 {
			t.Fatalf("%s: %v", name, p.Problems)
		}
		if !reflect.DeepEqual(p.Change.UpsertDevices, e.Devices) {
			t.Errorf("%s devices:\n got %+v\nwant %+v", name, p.Change.UpsertDevices, e.Devices)
		}
	}

	p := ParseCSV([]byte("设备编号,设备类型,行政区划代码,责任人,IMEI\nsm-9,smoke,450204002003,韦建国,861234567890129\n"), nil)
	checkProblems(t, p.Problems, nil)
	if d := p.Change.UpsertDevices[0]; d.Contact != "韦建国" || d.NBIoT.Responsible != "韦建国" {
		t.Errorf("sm-9 without an NB-IoT责任人 column: contact %q, binding's %q", d.Contact, d.NBIoT.Responsible)
	}
}
