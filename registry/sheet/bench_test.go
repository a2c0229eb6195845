package sheet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/registry"
)

// millionCSV is a CSV of n devices as a county's installers fill it in:
// every column of the everyday template, all forwarded by gateway gw-1
// (so no secrets are hashed: argon2id is slow on purpose).
func millionCSV(n int) []byte {
	var b bytes.Buffer
	b.WriteString("\ufeff设备编号,设备类型,型号,行政区划代码,地址,经度,纬度,责任单位,联系电话,网关,通道数,心跳周期\n")
	kinds := []string{"电气火灾监控探测器", "独立式感烟火灾探测报警器", "消火栓水压监测装置", "电动自行车充电柜"}
	for i := range n {
		fmt.Fprintf(&b, "dev-%07d,%s,MODEL-%d,4502040020%02d,柳南区鹅山路%d号,109.%06d,24.%06d,柳南区单位%d,0772-%07d,gw-1,%d,%s\n",
			i, kinds[i%4], i%7, 1+i%60, i%5000, i%999999, (i*7)%999999, i%20000, i%9999999, 1+i%4, []string{"", "30m", "6h"}[i%3])
	}
	return b.Bytes()
}

// BenchmarkImportCSV1M imports a CSV of 1,000,000 new devices into a
// registry in SQLite: parse, validate and commit (write the rows and the
// audit, adopt the new snapshot). Issue 18 asks for under a minute.
func BenchmarkImportCSV1M(b *testing.B) {
	const n = 1_000_000
	text := millionCSV(n)
	dir := b.TempDir()
	base := filepath.Join(dir, "ledger.yaml")
	if err := os.WriteFile(base, []byte(baseLedger), 0o600); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db := filepath.Join(dir, fmt.Sprintf("registry-%d.db", i))
		st, err := registry.Open(db)
		if err != nil {
			b.Fatal(err)
		}
		l, err := st.Startup(context.Background(), base, log)
		if err != nil {
			b.Fatal(err)
		}
		lv := devices.NewLive(l)
		st.Attach(lv)
		im := &Importer{Commit: StoreCommit(st), Current: lv.Load}
		b.StartTimer()
		c0 := cpuTime()
		res, err := im.Import(context.Background(), "bench", CSV, text, false)
		cpu += cpuTime() - c0
		b.StopTimer()
		if err != nil || len(res.Problems) > 0 || res.Added != n {
			b.Fatalf("import: %v %v added %d", err, res.Problems, res.Added)
		}
		st.Close()
		for _, f := range []string{db, db + "-wal", db + "-shm"} {
			os.Remove(f) // a million devices and their audit take a few hundred MB
		}
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/import")
	// CPU seconds of the process (every core, GC included) per import: the
	// figure that does not depend on how busy a shared machine is.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/import")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkParseCSV1M is the parse alone of BenchmarkImportCSV1M's file.
func BenchmarkParseCSV1M(b *testing.B) {
	text := millionCSV(1_000_000)
	l := ledger(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if p := ParseCSV(text, l); len(p.Problems) > 0 {
			b.Fatal(p.Problems[0])
		}
	}
}

// BenchmarkXLSX100k writes 100,000 devices as a workbook and reads it back
// (WriteXLSX, ParseXLSX), the export and the parse of an XLSX import.
func BenchmarkXLSX100k(b *testing.B) {
	p := ParseCSV(millionCSV(100_000), ledger(b))
	e := &devices.Entries{Devices: p.Change.UpsertDevices}
	var buf bytes.Buffer
	if err := WriteXLSX(&buf, e); err != nil {
		b.Fatal(err)
	}
	file := bytes.Clone(buf.Bytes())
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := WriteXLSX(&buf, e); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len()), "bytes/file")
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		c0 := cpuTime()
		for b.Loop() {
			if q := ParseXLSX(file, nil); len(q.Problems) > 0 || len(q.Change.UpsertDevices) != 100_000 {
				b.Fatal(q.Problems)
			}
		}
		b.ReportMetric((cpuTime()-c0).Seconds()/float64(b.N), "cpu-s/op")
	})
}
