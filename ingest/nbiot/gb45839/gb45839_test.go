package gb45839

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSerial(t *testing.T) {
	id, err := ParseSerial("FW0101251130A0000012300013F9C")
	if err != nil {
		t.Fatal(err)
	}
	if id.Company != "FW01" || id.Net != NetNBIoT || id.Number != "A00000123" || id.TAC != 1 || id.Check != "3F9C" ||
		!id.Made.Equal(time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("%+v", id)
	}
	raw := "FW0101251130A00000123\x12\x343F9C"
	if id, err := ParseSerial(raw); err != nil || id.TAC != 0x1234 {
		t.Errorf("27-byte form: %+v %v", id, err)
	}
	for _, bad := range []string{
		"",
		"FW0101251130A0000012300013F9",      // 28
		"fw0101251130A0000012300013F9C",     // lower-case company
		"FW01-1251130A0000012300013F9C",     // network type
		"FW0101251330A0000012300013F9C",     // month 13
		"FW0101251131A0000012300013F9C",     // 31 November
		"FW01012511x0A0000012300013F9C",     // date not digits
		"FW0101251130A000001_300013F9C",     // serial number
		"FW0101251130A000001230G013F9C",     // TAC not hex
		"FW0101251130A0000012300013f9c",     // check code lower-case
		"FW0101251130A00000123\x00\x013F9Z", // 27, check code
	} {
		if _, err := ParseSerial(bad); !errors.Is(err, nbiot.ErrBadDeviceID) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestDecodeStatus(t *testing.T) {
	type val struct {
		name string
		v    float64
	}
	for _, c := range []struct {
		file     string
		when     string
		vals     []val
		signal   int
		sigSet   bool
		disabled bool
	}{
		{"status_alarm.json", "2026-12-01T10:40:05Z", []val{{"smoke_alarm", 1}, {"battery_pct", 76}}, -87, true, false},
		{"status_normal.json", "2019-06-10T23:25:55Z", []val{{"smoke_alarm", 0}, {"fault", 0}, {"battery_pct", 100}}, 21, true, false},
		{"status_fault.json", "2026-12-01T01:00:00Z", []val{{"fault", 1}, {"battery_pct", 8}}, 0, false, false},
		{"status_disabled.json", "2026-12-01T01:05:00Z", []val{{"battery_pct", 60}}, 15, true, true},
	} {
		t.Run(c.file, func(t *testing.T) {
			r, err := DecodeStatus(fixture(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			when, _ := time.Parse(time.RFC3339, c.when)
			if r.Platform != nbiot.PlatformGB45839 || r.Type != nbiot.TypeStatus || !r.Time.Equal(when) || r.Device.Serial == "" {
				t.Errorf("%+v", r)
			}
			if len(r.Values) != len(c.vals) {
				t.Fatalf("values %+v, want %v", r.Values, c.vals)
			}
			for i, v := range c.vals {
				if r.Values[i].Metric.Info().Name != v.name || r.Values[i].Value != v.v {
					t.Errorf("value %d: %s=%v, want %s=%v", i, r.Values[i].Metric.Info().Name, r.Values[i].Value, v.name, v.v)
				}
			}
			if r.Signal != c.signal || r.SignalSet != c.sigSet || r.Disabled != c.disabled {
				t.Errorf("signal %d/%v disabled %v", r.Signal, r.SignalSet, r.Disabled)
			}
		})
	}
}

func TestDecodeStatusRejects(t *testing.T) {
	const ok = `"serial":"FW0101251130A0000012300013F9C"`
	for _, c := range []struct {
		name, body string
		want       error
	}{
		{"not json", `{`, nbiot.ErrMalformed},
		{"no serial", `{"status":1}`, nbiot.ErrNoDevice},
		{"bad serial", `{"serial":"12345","status":1}`, nbiot.ErrBadDeviceID},
		{"no status", `{` + ok + `}`, nbiot.ErrMalformed},
		{"status 0", `{` + ok + `,"status":0}`, nbiot.ErrBadValue},
		{"status 5", `{` + ok + `,"status":5}`, nbiot.ErrBadValue},
		{"status 1.5", `{` + ok + `,"status":1.5}`, nbiot.ErrBadValue},
		{"status text", `{` + ok + `,"status":"alarm"}`, nbiot.ErrMalformed},
		{"battery 101", `{` + ok + `,"status":1,"batteryPercentage":101}`, nbiot.ErrBadValue},
		{"battery -1", `{` + ok + `,"status":1,"batteryPercentage":-1}`, nbiot.ErrBadValue},
		{"datetime iso", `{` + ok + `,"status":1,"datetime":"2026-12-01T10:00:00Z"}`, nbiot.ErrBadValue},
		{"signal 1.5", `{` + ok + `,"status":1,"signalStrength":1.5}`, nbiot.ErrBadValue},
	} {
		_, err := DecodeStatus([]byte(c.body))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestDecodeInstall(t *testing.T) {
	r, err := DecodeInstall(fixture(t, "install.json"))
	if err != nil {
		t.Fatal(err)
	}
	in := r.Install
	if r.Type != nbiot.TypeInstall || in == nil || in.Serial != "FW0101251130A0000012300013F9C" || in.Area != "450204" ||
		in.Longitude != 109.38 || in.Latitude != 24.31 || in.Mobile != "13800000000" || in.DeviceAddress != "一楼厨房顶部" || in.ProductionDate != "2025-11-30" {
		t.Errorf("%+v", in)
	}
	for _, bad := range []string{
		`{"serial":"FW0101251130A0000012300013F9C","longitude":190,"latitude":24}`,
		`{"serial":"FW0101251130A0000012300013F9C","longitude":109}`,
		`{"serial":"x"}`,
		`{"name":"x"}`,
		`[]`,
	} {
		if _, err := DecodeInstall([]byte(bad)); err == nil || nbiot.Reason(err) == "other" {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestAnswer(t *testing.T) {
	if !bytes.Equal(Answer(true), []byte(`{"success":1}`)) || !bytes.Equal(Answer(false), []byte(`{"success":0}`)) {
		t.Error("answer")
	}
}

func FuzzDecodeStatus(f *testing.F) {
	files, _ := filepath.Glob("testdata/status_*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeStatus(b)
		if err != nil {
			if nbiot.Reason(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if _, err := ParseSerial(r.Device.Serial); err != nil {
			t.Fatalf("accepted serial %q: %v", r.Device.Serial, err)
		}
		for _, v := range r.Values {
			if info := v.Metric.Info(); v.Value < info.Min || v.Value > info.Max {
				t.Fatalf("%s=%v outside the catalog range", info.Name, v.Value)
			}
		}
	})
}

func FuzzDecodeInstall(f *testing.F) {
	f.Add(fixture(f, "install.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeInstall(b)
		if err != nil {
			if nbiot.Reason(err) == "other" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if r.Install == nil || r.Install.Serial != r.Device.Serial {
			t.Fatalf("%+v", r)
		}
	})
}

func FuzzParseSerial(f *testing.F) {
	f.Add("FW0101251130A0000012300013F9C")
	f.Add("FW0101251130A00000123\x00\x013F9C")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSerial(s)
		if err != nil {
			return
		}
		if len(id.Company) != 4 || len(id.Net) != 2 || len(id.Number) != 9 || len(id.Check) != 4 {
			t.Fatalf("%q: %+v", s, id)
		}
	})
}

func BenchmarkDecodeStatus(b *testing.B) {
	body := fixture(b, "status_alarm.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeStatus(body); err != nil {
			b.Fatal(err)
		}
	}
}
