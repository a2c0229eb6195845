package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// benchFleet is a ledger of n devices of the four kinds (ids like a real
// registry's, 12–14 characters) with the default rules, each device having
// reported once (its rule state begun: a pending for, firing flags, rate
// windows, a sequence window).
func benchFleet(b *testing.B, n int) (*Pipeline, *devices.Ledger) {
	b.Helper()
	var y strings.Builder
	y.WriteString("places:\n  \"450204\": 柳南区\n  \"450204002\": 潭西街道\n  \"450204002003\": 鹅山村\n" +
		"stations:\n  - {id: st-1, name: 潭西街道微型消防站, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n")
	kinds := []string{"electrical", "smoke", "hydrant", "charger"}
	for i := range n {
		fmt.Fprintf(&y, "  - {id: dev-450204-%05d, kind: %s, model: M, grid: \"450204002003\"}\n", i, kinds[i%4])
	}
	l, err := devices.ParseLedger("bench", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	p, _ := partitionPipeline(b, l)
	now := time.Now().UnixMilli()
	body := map[devices.Kind]string{
		devices.KindElectrical: `"m":{"residual_current_ma":320,"cable_temp_c":45}`,
		devices.KindSmoke:      `"event":"smoke_alarm","active":false`,
		devices.KindHydrant:    `"m":{"pressure_mpa":0.3}`,
		devices.KindCharger:    `"m":{"temp_c":30}`,
	}
	for i := range l.Devices {
		d := &l.Devices[i]
		topic := "fw/v1/up/" + d.ID + "/telemetry"
		if d.Kind == devices.KindSmoke {
			topic = "fw/v1/up/" + d.ID + "/event"
		}
		p.clock.ms.Store(now)
		p.Handle(topic, fmt.Appendf(nil, `{"ts":%d,"seq":1,%s}`, now, body[d.Kind]))
	}
	return p, l
}

// BenchmarkPartitionSnapshot is one partition's checkpoint (cluster mode,
// issue 15) of a 10,000-device fleet: the whole fleet in one partition
// (one instance, P = 1) and one of 16 partitions. held is the part under
// the pipeline's lock (the copy), the rest is the encoding.
func BenchmarkPartitionSnapshot(b *testing.B) {
	p, l := benchFleet(b, 10_000)
	for _, parts := range []int{1, 16} {
		var devs []devices.Index
		for i := range l.Devices {
			if i%parts == 0 {
				devs = append(devs, devices.Index(i))
			}
		}
		b.Run(fmt.Sprintf("devices=%d", len(devs)), func(b *testing.B) {
			var st PartitionState
			var size int
			b.ReportAllocs()
			cpu := testenv.CPUMetric(b)
			n := 0
			for b.Loop() {
				n++
				blob, err := p.SnapshotPartition(devs, &st)
				if err != nil {
					b.Fatal(err)
				}
				size = len(blob)
			}
			cpu(n, "op")
			b.ReportMetric(float64(size)/float64(len(devs)), "bytes/device")
			b.ReportMetric(float64(size), "bytes")
		})
		b.Run(fmt.Sprintf("held/devices=%d", len(devs)), func(b *testing.B) {
			var st PartitionState
			cpu := testenv.CPUMetric(b)
			n := 0
			for b.Loop() {
				n++
				p.mu.Lock()
				st.snap = p.eng.SnapshotDevices(st.snap, l, devs)
				p.mu.Unlock()
			}
			cpu(n, "op")
		})
	}
}

// BenchmarkPartitionResume is the restore of a partition's checkpoint by
// its new owner (no replay): 625 devices (10,000 in 16 partitions).
func BenchmarkPartitionResume(b *testing.B) {
	p, l := benchFleet(b, 10_000)
	var devs []devices.Index
	for i := 0; i < len(l.Devices); i += 16 {
		devs = append(devs, devices.Index(i))
	}
	var st PartitionState
	blob, err := p.SnapshotPartition(devs, &st)
	if err != nil {
		b.Fatal(err)
	}
	blob = slices.Clone(blob)
	q, _ := partitionPipeline(b, l)
	none := func(func(Replayed) error) error { return nil }
	cpu := testenv.CPUMetric(b)
	n := 0
	for b.Loop() {
		n++
		commit, _, err := q.ResumePartition(context.Background(), devs, blob, none)
		if err != nil {
			b.Fatal(err)
		}
		commit()
	}
	cpu(n, "op")
}
