package gb26875

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var comment = regexp.MustCompile(`#[^\n]*`)

// hexFile reads a hand-written frame: hex bytes, whitespace and # comments.
func hexFile(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(comment.ReplaceAllString(string(raw), "")), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

var (
	uitd   = Address{1, 2, 3, 4, 5, 6}
	centre = Address{}
	t4922  = TimeLabel{0x31, 0x16, 0x0D, 0x01, 0x0C, 0x1A} // 13:22:49 1 Dec 2026
	t4950  = TimeLabel{0x32, 0x16, 0x0D, 0x01, 0x0C, 0x1A} // 13:22:50
)

func up(serial uint16, cmd Command) Header {
	return Header{Serial: serial, Major: 1, User: 1, Time: t4922, Src: uitd, Dst: centre, Command: cmd}
}

func down(serial uint16, cmd Command) Header {
	return Header{Serial: serial, Major: 1, User: 1, Time: t4950, Src: centre, Dst: uitd, Command: cmd}
}

func parse(t *testing.T, name string) (Frame, []byte) {
	t.Helper()
	b := hexFile(t, name)
	var f Frame
	if err := Parse(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f, b
}

func desc(s string, pad byte) (d [DescLen]byte) {
	for i := range d {
		d[i] = pad
	}
	copy(d[:], s)
	return d
}

func TestWorkedExample(t *testing.T) {
	f, raw := parse(t, "frames/worked_example.hex")
	if f.Header != up(1, CmdSend) {
		t.Fatalf("header %+v", f.Header)
	}
	var u Upload
	if err := u.Unmarshal(f.ADU); err != nil {
		t.Fatal(err)
	}
	if u.Type != TypeComponentState || len(u.ComponentStates) != 1 {
		t.Fatalf("upload %+v", u)
	}
	c := u.ComponentStates[0]
	want := Component{System: System{1, 1}, Type: 42, Addr: 0x105}
	if c.Component != want || c.State != CompNormal|CompFire || c.Time != t4922 || c.State.Test() {
		t.Fatalf("component %+v", c)
	}
	if got := string(Text(nil, c.Desc[:])); got != "3号楼2层走廊" {
		t.Fatalf("description %q", got)
	}
	if ComponentTypeName(c.Type) != "点型光电感烟火灾探测器" || SystemTypeName(c.System.Type) != "火灾报警系统" {
		t.Fatal("table names")
	}
	tm, ok := c.Time.Time(time.FixedZone("CST", 8*3600))
	if !ok || tm.Format(time.DateTime) != "2026-12-01 13:22:49" {
		t.Fatalf("time %v %v", tm, ok)
	}

	// Build: the same frame from the decoded objects and PutText, and the answers.
	var d [DescLen]byte
	if err := PutText(d[:], "3号楼2层走廊"); err != nil || d != c.Desc {
		t.Fatalf("PutText % x, %v", d, err)
	}
	adu, err := (&Upload{Type: TypeComponentState, ComponentStates: []ComponentState{{Component: want, State: 3, Desc: d, Time: t4922}}}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := up(1, CmdSend)
	if got := AppendFrame(nil, &h, adu); !bytes.Equal(got, raw) {
		t.Fatalf("built\n% x\nwant\n% x", got, raw)
	}
	if got, want := AppendConfirm(nil, &f.Header, t4950), hexFile(t, "frames/confirm.hex"); !bytes.Equal(got, want) {
		t.Fatalf("confirm % x, want % x", got, want)
	}
	if got, want := AppendDeny(nil, &f.Header, t4950), hexFile(t, "frames/deny.hex"); !bytes.Equal(got, want) {
		t.Fatalf("deny % x, want % x", got, want)
	}
	for _, name := range []string{"frames/confirm.hex", "frames/deny.hex"} {
		a, _ := parse(t, name)
		if a.Serial != 1 || a.Src != centre || a.Dst != uitd || len(a.ADU) != 0 {
			t.Fatalf("%s: %+v", name, a)
		}
	}
}

// TestUploads parses every hand-written upload frame, checks the decoded objects, and builds the same bytes
// back from them.
func TestUploads(t *testing.T) {
	t4930 := TimeLabel{0x30, 0x16, 0x0D, 0x01, 0x0C, 0x1A}
	cases := []struct {
		file string
		h    Header
		u    Upload
	}{
		{"type01_system_fire.hex", up(2, CmdSend), Upload{Type: 1, SystemStates: []SystemState{{System{1, 1}, SysNormal | SysFire, t4922}}}},
		{"type01_system_two.hex", up(3, CmdSend), Upload{Type: 1, SystemStates: []SystemState{
			{System{1, 1}, SysNormal | SysMainPower | SysBus, t4922}, {System{12, 2}, SysSupervisory, t4930}}}},
		{"type03_analog.hex", up(4, CmdSend), Upload{Type: 3, Analogs: []Analog{
			{Component{System{1, 1}, 31, 0x106}, 3, 253, t4922}, {Component{System{11, 1}, 99, 0x01020304}, 5, -50, t4922}}}},
		{"type04_operation.hex", up(5, CmdSend), Upload{Type: 4, Operations: []Operation{{System{1, 1}, OpReset | OpSilence, 7, t4922}}}},
		{"type05_version.hex", up(6, CmdReply), Upload{Type: 5, Version: Version{System{1, 1}, 2, 3}}},
		{"type06_sysconfig.hex", up(7, CmdReply), Upload{Type: 6, SystemConfigs: []SystemConfig{{System{1, 1}, []byte{0xD6, 0xF7, 0xBB, 0xFA}}}}},
		{"type07_compconfig.hex", up(8, CmdReply), Upload{Type: 7, ComponentConfigs: []ComponentConfig{
			{Component{System{1, 1}, 23, 0x201}, desc("1\xb2\xe3\xb4\xf3\xcc\xfc", ' ')}}}},
		{"type08_systime.hex", up(9, CmdReply), Upload{Type: 8, SystemTime: SystemTime{System{1, 1}, TimeLabel{0, 0, 8, 2, 1, 26}}}},
		{"type21_uitd_state.hex", up(10, CmdSend), Upload{Type: 21, UITDStates: []UITDState{{UITDNormal | UITDMainPower, t4922}}}},
		{"type24_uitd_duty.hex", up(11, CmdSend), Upload{Type: 24, UITDOperations: []UITDOperation{{UOpDutyAnswer, 3, t4922}}}},
		{"type25_uitd_version.hex", up(12, CmdReply), Upload{Type: 25, Version: Version{Major: 2, Minor: 5}}},
		{"type26_uitd_config.hex", up(13, CmdReply), Upload{Type: 26, UITDConfig: []byte("FW1")}},
		{"type28_uitd_time.hex", up(14, CmdReply), Upload{Type: 28, SystemTime: SystemTime{Time: t4922}}},
		{"keepalive.hex", up(15, CmdSend), Upload{}},
	}
	seen := map[TypeFlag]bool{}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f, raw := parse(t, "frames/"+c.file)
			if f.Header != c.h {
				t.Fatalf("header %+v, want %+v", f.Header, c.h)
			}
			var u Upload
			if err := u.Unmarshal(f.ADU); err != nil {
				t.Fatal(err)
			}
			if !sameUpload(&u, &c.u) {
				t.Fatalf("decoded %+v\nwant    %+v", u, c.u)
			}
			seen[u.Type] = true
			adu, err := c.u.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := AppendFrame(nil, &c.h, adu); !bytes.Equal(got, raw) {
				t.Fatalf("built\n% x\nwant\n% x", got, raw)
			}
		})
	}
	for _, ty := range []TypeFlag{1, 3, 4, 5, 6, 7, 8, 21, 24, 25, 26, 28} {
		if !seen[ty] {
			t.Errorf("no frame of upload type %d", ty)
		}
	}
	if got := string(Text(nil, cases[6].u.ComponentConfigs[0].Desc[:])); got != "1层大厅" {
		t.Errorf("space-padded description %q", got)
	}
	if got := string(Text(nil, cases[5].u.SystemConfigs[0].Text)); got != "主机" {
		t.Errorf("configuration text %q", got)
	}
	if v, in, ok := cases[2].u.Analogs[0].Value(); !ok || !in || v < 25.29 || v > 25.31 {
		t.Errorf("analog %v %v %v", v, in, ok)
	}
	if v, in, ok := cases[2].u.Analogs[1].Value(); !ok || in || v != -5 { // kPa range is 0…3200
		t.Errorf("analog %v %v %v", v, in, ok)
	}
}

func sameUpload(a, b *Upload) bool {
	if a.Type != b.Type || a.Len() != b.Len() || a.Version != b.Version || a.SystemTime != b.SystemTime ||
		!bytes.Equal(a.UITDConfig, b.UITDConfig) {
		return false
	}
	for i := range a.SystemStates {
		if a.SystemStates[i] != b.SystemStates[i] {
			return false
		}
	}
	for i := range a.ComponentStates {
		if a.ComponentStates[i] != b.ComponentStates[i] {
			return false
		}
	}
	for i := range a.Analogs {
		if a.Analogs[i] != b.Analogs[i] {
			return false
		}
	}
	for i := range a.Operations {
		if a.Operations[i] != b.Operations[i] {
			return false
		}
	}
	for i := range a.SystemConfigs {
		if a.SystemConfigs[i].System != b.SystemConfigs[i].System || !bytes.Equal(a.SystemConfigs[i].Text, b.SystemConfigs[i].Text) {
			return false
		}
	}
	for i := range a.ComponentConfigs {
		if a.ComponentConfigs[i] != b.ComponentConfigs[i] {
			return false
		}
	}
	for i := range a.UITDStates {
		if a.UITDStates[i] != b.UITDStates[i] {
			return false
		}
	}
	for i := range a.UITDOperations {
		if a.UITDOperations[i] != b.UITDOperations[i] {
			return false
		}
	}
	return true
}

// TestDownlinks builds every downlink type and compares with the hand-written frames, then decodes them.
func TestDownlinks(t *testing.T) {
	s1 := System{1, 1}
	dec1 := TimeLabel{0, 0, 0, 1, 12, 26}
	cases := []struct {
		file   string
		serial uint16
		d      Downlink
	}{
		{"down61_read_system.hex", 1, Downlink{Type: 61, Systems: []System{s1}}},
		{"down62_read_component.hex", 2, Downlink{Type: 62, Components: []Component{{System: s1, Addr: 0x105}}}},
		{"down63_read_analog.hex", 3, Downlink{Type: 63, Components: []Component{{System: s1, Addr: 0x106}, {System: s1, Addr: 0x107}}}},
		{"down64_read_operations.hex", 4, Downlink{Type: 64, Systems: []System{s1}, Records: 10, Start: dec1}},
		{"down65_read_version.hex", 5, Downlink{Type: 65, Systems: []System{s1}}},
		{"down66_read_sysconfig.hex", 6, Downlink{Type: 66, Systems: []System{s1, {12, 2}}}},
		{"down67_read_compconfig.hex", 7, Downlink{Type: 67, Components: []Component{{System: s1, Addr: 0x201}}}},
		{"down68_read_systime.hex", 8, Downlink{Type: 68, Systems: []System{s1}}},
		{"down81_read_uitd_state.hex", 9, Downlink{Type: 81}},
		{"down84_read_uitd_ops.hex", 10, Downlink{Type: 84, Records: 5, Start: dec1}},
		{"down85_read_uitd_version.hex", 11, Downlink{Type: 85}},
		{"down86_read_uitd_config.hex", 12, Downlink{Type: 86}},
		{"down88_read_uitd_time.hex", 13, Downlink{Type: 88}},
		{"down89_init_uitd.hex", 14, Downlink{Type: 89}},
		{"down90_sync_clock.hex", 15, Downlink{Type: 90, Start: t4950}},
		{"down91_duty_check.hex", 16, Downlink{Type: 91, Minutes: 10}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw := hexFile(t, "frames/"+c.file)
			adu, err := c.d.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			h := down(c.serial, c.d.Type.Command())
			if got := AppendFrame(nil, &h, adu); !bytes.Equal(got, raw) {
				t.Fatalf("built\n% x\nwant\n% x", got, raw)
			}
			f, _ := parse(t, "frames/"+c.file)
			var d Downlink
			if err := d.Unmarshal(f.ADU); err != nil {
				t.Fatal(err)
			}
			if d.Type != c.d.Type || d.Records != c.d.Records || d.Start != c.d.Start || d.Minutes != c.d.Minutes ||
				len(d.Systems) != len(c.d.Systems) || len(d.Components) != len(c.d.Components) {
				t.Fatalf("decoded %+v, want %+v", d, c.d)
			}
			for i := range d.Systems {
				if d.Systems[i] != c.d.Systems[i] {
					t.Fatalf("system %d: %+v", i, d.Systems[i])
				}
			}
			for i := range d.Components {
				if d.Components[i] != c.d.Components[i] {
					t.Fatalf("component %d: %+v", i, d.Components[i])
				}
			}
			if r := c.d.Type.Reply(); (r == 0) != (c.d.Type >= 89) || (r != 0 && r+60 != c.d.Type) {
				t.Fatalf("reply type %d", r)
			}
		})
	}
	bad := []Downlink{{Type: 61}, {Type: 62, Components: make([]Component, 23)}, {Type: 64}, {Type: 84, Records: 103}, {Type: 2}}
	for _, d := range bad {
		if _, err := d.Append(nil); err == nil {
			t.Errorf("built %+v", d)
		}
	}
}

// TestBadFrames checks that each hand-written bad frame fails for its reason, and that the header needed
// for the 否认 is there when the frame was delimited.
func TestBadFrames(t *testing.T) {
	cases := []struct {
		file   string
		want   error
		reason string
	}{
		{"checksum.hex", ErrChecksum, "checksum"},
		{"end.hex", ErrEnd, "end"},
		{"start.hex", ErrStart, "start"},
		{"too_long.hex", ErrTooLong, "too_long"},
		{"command.hex", ErrCommand, "command"},
		{"length.hex", ErrLength, "length"},
	}
	for _, c := range cases {
		var f Frame
		err := Parse(hexFile(t, "bad/"+c.file), &f)
		if !errors.Is(err, c.want) || Reason(err) != c.reason {
			t.Errorf("%s: %v (%s), want %v", c.file, err, Reason(err), c.want)
		}
		if f.Serial != 15 {
			t.Errorf("%s: serial %d, want 15 for the 否认", c.file, f.Serial)
		}
	}
	// A frame too short for a header leaves no header behind (not the previous frame's serial number).
	var f Frame
	if err := Parse(hexFile(t, "frames/worked_example.hex"), &f); err != nil {
		t.Fatal(err)
	}
	if err := Parse(make([]byte, 29), &f); !errors.Is(err, ErrShort) || f.Header != (Header{}) {
		t.Errorf("short: %v, header %+v", err, f.Header)
	}
	var u Upload
	for file, want := range map[string]error{"adu_count.hex": ErrADU, "adu_type.hex": ErrType} {
		f, _ := parse(t, "bad/"+file)
		if err := u.Unmarshal(f.ADU); !errors.Is(err, want) || u.Len() != 0 {
			t.Errorf("%s: %v, want %v", file, err, want)
		}
	}
}

func TestTimeLabel(t *testing.T) {
	loc := time.FixedZone("CST", 8*3600)
	at := time.Date(2026, 12, 1, 13, 22, 49, 0, loc)
	if l := MakeTimeLabel(at); l != t4922 {
		t.Fatalf("label % x", l)
	}
	bcd := TimeLabel{0x49, 0x22, 0x13, 0x01, 0x12, 0x26} // the same time in BCD
	if got, ok := bcd.Time(loc); !ok || !got.Equal(at) {
		t.Fatalf("BCD %v %v", got, ok)
	}
	for _, l := range []TimeLabel{{}, {0, 0, 0, 31, 4, 26}, {60, 0, 0, 1, 1, 26}, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}} {
		if _, ok := l.Time(loc); ok {
			t.Errorf("% x read as a time", l)
		}
	}
}

func TestText(t *testing.T) {
	for raw, want := range map[string]string{
		"ABC\x00\x00":              "ABC",
		"ABC   ":                   "ABC",
		"ABC\x00garbage":           "ABC",
		"\xb4\xf3\xcc\xfc":         "大厅",
		"\xb4\xf3\xcc":             "大\uFFFD", // a character cut at the end
		"\x81\x30\x81\x30\x00\x00": "\u0080",  // a 4-byte GB 18030 sequence
	} {
		if got := string(Text(nil, []byte(raw))); got != want {
			t.Errorf("Text(% x) = %q, want %q", raw, got, want)
		}
	}
	var d [DescLen]byte
	if err := PutText(d[:], strings.Repeat("走", 16)); err != nil { // 32 bytes: the 16th does not fit
		t.Fatal(err)
	}
	if d[30] != 0 || string(Text(nil, d[:])) != strings.Repeat("走", 15) {
		t.Fatalf("cut % x", d)
	}
}

func TestAddress(t *testing.T) {
	a, err := ParseAddress("010203040506")
	if err != nil || a != uitd || a.String() != "010203040506" || a.Uint64() != 0x060504030201 {
		t.Fatalf("%v %v %x", a, err, a.Uint64())
	}
	if _, err := ParseAddress("01020304050"); err == nil {
		t.Fatal("short address parsed")
	}
}

// TestDecodeNoAlloc pins the hot-path promise: parsing and decoding a status frame allocates nothing.
func TestDecodeNoAlloc(t *testing.T) {
	for _, name := range []string{"frames/worked_example.hex", "frames/type01_system_two.hex", "frames/type03_analog.hex", "frames/type21_uitd_state.hex"} {
		raw := hexFile(t, name)
		var f Frame
		var u Upload
		if n := testing.AllocsPerRun(100, func() {
			if Parse(raw, &f) != nil || u.Unmarshal(f.ADU) != nil {
				t.Fatal("decode failed")
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per decode", name, n)
		}
	}
}

func BenchmarkDecodeComponentState(b *testing.B) { benchDecode(b, "frames/worked_example.hex") }
func BenchmarkDecodeSystemState(b *testing.B)    { benchDecode(b, "frames/type01_system_two.hex") }
func BenchmarkDecodeAnalog(b *testing.B)         { benchDecode(b, "frames/type03_analog.hex") }

func benchDecode(b *testing.B, name string) {
	raw := hexFile(b, name)
	var f Frame
	var u Upload
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := Parse(raw, &f); err != nil {
			b.Fatal(err)
		}
		if err := u.Unmarshal(f.ADU); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConfirm(b *testing.B) {
	h := up(1, CmdSend)
	buf := make([]byte, 0, MinFrameLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendConfirm(buf[:0], &h, t4950)
	}
}
