package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/firmware-sim/uitd"
	"github.com/firewatch-iot/firewatch/ingest/gb26875"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

var hexComment = regexp.MustCompile(`#[^\n]*`)

// uitdFrame reads a frame written by hand from GB/T 26875.3 (hex, # comments) from the codec's or the
// server's testdata.
func uitdFrame(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("../../ingest/gb26875", path))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(hexComment.ReplaceAllString(string(raw), "")), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readCentreFrame reads the centre's next frame by its length field and returns its serial number and
// command; the centre's own commands (a clock synchronisation: command 1) are skipped.
func readCentreFrame(t *testing.T, c net.Conn) (serial uint16, cmd byte) {
	t.Helper()
	for {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		h := make([]byte, 27)
		if _, err := io.ReadFull(c, h); err != nil {
			t.Fatalf("no answer from firewatch: %v", err)
		}
		rest := make([]byte, int(h[24])|int(h[25])<<8+3)
		if _, err := io.ReadFull(c, rest); err != nil {
			t.Fatal(err)
		}
		if h[0] != '@' || h[1] != '@' || rest[len(rest)-1] != '#' || rest[len(rest)-2] != '#' {
			t.Fatalf("not a frame: %x %x", h, rest)
		}
		if h[26] != 1 {
			return uint16(h[2]) | uint16(h[3])<<8, h[26]
		}
	}
}

// uitdService runs firewatch (embedded broker) with the GB/T 26875.3 test ledger (one UITD, one listed
// smoke detector) and its TCP endpoint on a free port.
func uitdService(t *testing.T, rcv *receiver, tune func(ledger string, c *Config) string) *service {
	t.Helper()
	b, err := os.ReadFile("../../ingest/gb26875/server/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ledger := strings.ReplaceAll(string(b), "http://127.0.0.1:8090", rcv.URL)
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	s, _, _ := embeddedService(t, rcv, func(c *Config) {
		if tune != nil {
			ledger = tune(ledger, c)
		}
		if err := os.WriteFile(path, []byte(ledger), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Ledger = path
		c.GB26875.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	})
	return s
}

func dialUITD(t *testing.T, s *service) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.gb.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGB26875EndToEnd: a UITD connects to a running firewatch over TCP and sends frames written by hand
// from the standard. Its fire alarm is stored before the 确认 comes back and pushed to the station with
// the building and the point; a garbled frame is denied and counted while the connection goes on; the
// controller's reset (复位) ends the alarm's condition.
func TestGB26875EndToEnd(t *testing.T) {
	rcv := newReceiver(t)
	s := uitdService(t, rcv, nil)
	c := dialUITD(t, s)

	// The worked example: smoke detector 0x00000105 of system 1 in fire alarm, serial 1.
	if _, err := c.Write(uitdFrame(t, "testdata/frames/worked_example.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 1 || cmd != 3 {
		t.Fatalf("answer: serial %d command %d, want the 确认 of serial 1", serial, cmd)
	}
	// The 确认 came after the alarm was stored.
	var list struct{ Alarms []alarms.Alarm }
	getJSON(t, s.httpURL()+"/api/v1/alarms?device=fa-1-0105&severity=fire", &list)
	if len(list.Alarms) != 1 {
		t.Fatalf("when the 确认 arrived, fire alarms of fa-1-0105 in the store: %d, want 1", len(list.Alarms))
	}
	isFire := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			dev, _ := b["device"].(map[string]any)
			return b["severity"] == "fire" && b["transition"] == transition && dev["id"] == "fa-1-0105"
		}
	}
	push, _ := rcv.nextPush(t, 20*time.Second, "fire push", isFire("raised"))
	msg, _ := push["message"].(string)
	// The building and the point as the example names them: where the controller is, the system,
	// the component type and address, and the point's place.
	for _, want := range []string{"【火警】", "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105 3号楼2层走廊", "fa-1-0105", "火警", "潭西街道微型消防站"} {
		if !strings.Contains(msg, want) {
			t.Errorf("push message %q lacks %q", msg, want)
		}
	}

	// A frame with a wrong checksum (serial 15) is denied; the connection stays.
	if _, err := c.Write(uitdFrame(t, "testdata/bad/checksum.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 15 || cmd != 6 {
		t.Fatalf("answer to a bad checksum: serial %d command %d, want the 否认 of serial 15", serial, cmd)
	}
	if n := metric(t, s, `firewatch_gb26875_refused_total{reason="checksum"}`); n != 1 {
		t.Errorf("refused{checksum} = %v, want 1", n)
	}

	// The controller resets system 1 (type 4, serial 5): the fire alarm is cleared.
	if _, err := c.Write(uitdFrame(t, "testdata/frames/type04_operation.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 5 || cmd != 3 {
		t.Fatalf("answer to the reset: serial %d command %d", serial, cmd)
	}
	// A fire is never closed automatically (docs/alarms.md): the end of its condition is recorded, before
	// the 确认, and a person closes it.
	getJSON(t, s.httpURL()+"/api/v1/alarms?device=fa-1-0105&severity=fire", &list)
	if len(list.Alarms) != 1 || list.Alarms[0].ConditionEndedAt == nil {
		t.Fatalf("after the reset's 确认: %+v, want one fire alarm with its condition ended", list.Alarms)
	}
	if n := metric(t, s, "firewatch_gb26875_confirmed_total"); n != 2 {
		t.Errorf("confirmed %v, want 2", n)
	}
	// Every message the endpoint made is one the pipeline takes.
	for _, r := range []string{"malformed", "unknown_metric", "unknown_device", "bad_topic", "out_of_range"} {
		if n := metric(t, s, `firewatch_ingest_rejected_total{reason="`+r+`"}`); n != 0 {
			t.Errorf("ingest rejected %v messages as %s", n, r)
		}
	}
}

// TestGB26875Offline: a UITD silent for its patrol period (1 s here) is raised offline (巡检), and cleared
// when it speaks again.
func TestGB26875Offline(t *testing.T) {
	rcv := newReceiver(t)
	s := uitdService(t, rcv, func(ledger string, c *Config) string {
		c.Liveness.Tick = 100 * time.Millisecond
		return strings.Replace(ledger, "patrol: 2h", "patrol: 1s", 1)
	})
	c := dialUITD(t, s)
	if _, err := c.Write(uitdFrame(t, "testdata/frames/keepalive.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 15 || cmd != 3 {
		t.Fatalf("answer to the keep-alive: serial %d command %d", serial, cmd)
	}
	isOffline := func(transition string) func(map[string]any) bool {
		return func(b map[string]any) bool {
			dev, _ := b["device"].(map[string]any)
			return b["severity"] == "offline" && b["transition"] == transition && dev["id"] == "uitd-1"
		}
	}
	rcv.nextPush(t, 20*time.Second, "offline push of the UITD", isOffline("raised"))
	// A patrol answer again: the same keep-alive frame with serial 16 (and its checksum one more).
	f := uitdFrame(t, "testdata/frames/keepalive.hex")
	f[2]++
	f[len(f)-3]++
	if _, err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 16 || cmd != 3 {
		t.Fatalf("answer to the second keep-alive: serial %d command %d", serial, cmd)
	}
	rcv.nextPush(t, 20*time.Second, "the UITD back online", isOffline("cleared"))
}

// TestGB26875Analog: analog values (type 3, hand-written) become readings of their devices in a real
// InfluxDB with Table 6's units; a value outside its type's range is counted and not stored.
func TestGB26875Analog(t *testing.T) {
	db := testenv.StartInfluxDB(t)
	rcv := newReceiver(t)
	s := uitdService(t, rcv, func(ledger string, c *Config) string {
		c.Influx.URL, c.Influx.Bucket = db.URL, db.Bucket
		c.Influx.FlushInterval = 100 * time.Millisecond
		return ledger
	})
	c := dialUITD(t, s)
	// 0x00000106 (not listed: the UITD's device) at 25.3 °C; system 11's pressure switch at -5.0 kPa, below
	// the table's range.
	if _, err := c.Write(uitdFrame(t, "testdata/frames/type03_analog.hex")); err != nil {
		t.Fatal(err)
	}
	if serial, cmd := readCentreFrame(t, c); serial != 4 || cmd != 3 {
		t.Fatalf("answer: serial %d command %d", serial, cmd)
	}
	if n := metric(t, s, "firewatch_gb26875_analog_dropped_total"); n != 1 {
		t.Errorf("analog values dropped %v, want 1", n)
	}
	var rows []map[string]string
	testenv.WaitFor(t, 20*time.Second, "the temperature in InfluxDB", func() bool {
		rows = db.Flux(t, `from(bucket: "`+db.Bucket+`") |> range(start: 0) |> filter(fn: (r) => r._measurement == "facility" and r._field == "temperature_c")`)
		return len(rows) > 0
	})
	if len(rows) != 1 || rows[0]["device"] != "uitd-1" || rows[0]["_value"] != "25.3" {
		t.Errorf("temperature rows %v, want one of uitd-1 at 25.3", rows)
	}
}

// TestGB26875Simulator: the simulated UITD (firmware-sim/uitd, over UDP) reports a shielded detector and an
// unlisted point's fire and its own main power fault; each reaches the receiver as a signed push on the
// right device: 屏蔽 as a warning of the listed point, the unlisted fire and the power fault on the UITD's
// device (the building).
func TestGB26875Simulator(t *testing.T) {
	rcv := newReceiver(t)
	s := uitdService(t, rcv, func(ledger string, c *Config) string {
		c.GB26875.ListenUDP = "127.0.0.1:0"
		c.Alarms.StormWindow = 0 // each alarm pushed on its own (a warning and a fault would form an incident)
		return ledger
	})
	u, err := uitd.Dial(context.Background(), "udp", s.gb.UDPAddr().String(), uitd.Config{Addr: gb26875.Address{1, 2, 3, 4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	listed := uitd.Point{Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 42, Addr: 0x105}, Desc: "3号楼2层走廊"}
	unlisted := uitd.Point{Component: gb26875.Component{System: gb26875.System{Type: 1, Addr: 1}, Type: 23, Addr: 0x301}, Desc: "1号楼大堂手报"}
	if _, err := u.Shield(listed); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Fire(unlisted); err != nil {
		t.Fatal(err)
	}
	if _, err := u.PowerFault(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ device, rule, severity, text string }{
		{"fa-1-0105", "facility.disabled", "warning", "屏蔽"},
		{"uitd-1", "facility.fire_alarm", "fire", "柳石家园 消防控制室"},
		{"uitd-1", "facility.main_power_fault", "fault", "主电故障"},
	} {
		p, _ := rcv.nextPush(t, 20*time.Second, want.rule+" of "+want.device, func(b map[string]any) bool {
			dev, _ := b["device"].(map[string]any)
			return b["rule"] == want.rule && dev["id"] == want.device && b["transition"] == "raised"
		})
		if msg, _ := p["message"].(string); p["severity"] != want.severity || !strings.Contains(msg, want.text) {
			t.Errorf("%s push: severity %v, message %q; want %s and %q", want.rule, p["severity"], msg, want.severity, want.text)
		}
	}
	for _, p := range rcv.all() {
		if p.sig != nil {
			t.Errorf("push to %s not signed right: %v", p.path, p.sig)
		}
	}
}
