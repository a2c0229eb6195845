package sheet

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// FuzzParseCSV: any bytes give problems or a change, never a panic; and a
// change without problems, written back as CSV, reads as the same change.
func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("设备编号,设备类型,行政区划代码,经度,纬度\nsm-1,smoke,450204002003,109.4,24.3\n"))
	f.Add([]byte("\ufeff设备编号,通道数,心跳周期,规则覆盖,操作\nel-1,4,30m,\"a: {above: 1}\n\",\nel-2,,,,删除\n"))
	f.Add([]byte("id;kind\nx;charger\n"))
	f.Add([]byte("设备编号,行政区划代码\n\"unterminated,4.5E+11\n"))
	f.Add([]byte{0xc9, 0xe8, 0xb1, 0xb8, 0xb1, 0xe0, 0xba, 0xc5, '\n', 'a', '\n'}) // 设备编号 in GBK
	f.Fuzz(func(t *testing.T, b []byte) {
		p := ParseCSV(b, nil)
		if len(p.Problems) > 0 || len(p.Change.DeleteDevices) > 0 {
			return
		}
		var out bytes.Buffer
		if err := WriteCSV(&out, &devices.Entries{Devices: p.Change.UpsertDevices}); err != nil {
			t.Fatal(err)
		}
		q := ParseCSV(out.Bytes(), nil)
		if len(q.Problems) > 0 {
			t.Fatalf("written back: %v\n%q", q.Problems, out.String())
		}
		if (len(q.Change.UpsertDevices) > 0 || len(p.Change.UpsertDevices) > 0) && !reflect.DeepEqual(q.Change.UpsertDevices, p.Change.UpsertDevices) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", q.Change.UpsertDevices, p.Change.UpsertDevices)
		}
	})
}
