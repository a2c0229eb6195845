package pipeline

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// BenchmarkLedgerChange is one live registry change in a registry of n
// electrical monitors, as the registry's API makes it: Live.Apply through
// to the pipeline's adoption. edit changes one device's address (the
// engine stays), add adds a device (the engine is compiled again and takes
// the old one's state). stall-µs is how long the pipeline held messages
// back for it (the hand-over between two messages); the rest is off the
// hot path.
func BenchmarkLedgerChange(b *testing.B) {
	for _, bc := range []struct {
		op string
		n  int
	}{{"edit", 10_000}, {"edit", 100_000}, {"add", 10_000}, {"add", 100_000}} {
		n := bc.n
		b.Run(bc.op+"/"+strconv.Itoa(n), func(b *testing.B) {
			e := &devices.Entries{Stations: []devices.StationEntry{{ID: "st", Name: "站", Grids: []string{"450204002"}, Endpoint: "http://127.0.0.1:1/x"}}}
			for i := range n {
				e.Devices = append(e.Devices, devices.DeviceEntry{ID: fmt.Sprintf("el-%07d", i), Kind: "electrical", Grid: "450204002003", Address: "路"})
			}
			l, err := devices.Build("bench", e)
			if err != nil {
				b.Fatal(err)
			}
			p, err := New(Options{Ledger: l, Lines: discardLines{}, Alarms: &lockedAlarms{}, Liveness: DefaultLiveness(), Logger: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			live := devices.NewLive(l)
			p.Follow(live)
			var stall time.Duration
			b.ResetTimer()
			for i := range b.N {
				c := &devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: "el-0000001", Kind: "electrical", Grid: "450204002003", Address: "路" + strconv.Itoa(i)}}}
				if bc.op == "add" {
					c.UpsertDevices[0].ID = fmt.Sprintf("new-%07d", i)
				}
				if _, _, err := live.Apply(c); err != nil {
					b.Fatal(err)
				}
				stall += time.Duration(p.reg.stall.Load())
			}
			b.ReportMetric(float64(stall.Microseconds())/float64(b.N), "stall-µs/op")
		})
	}
}
