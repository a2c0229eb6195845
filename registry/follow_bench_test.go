package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// BenchmarkFollow measures the follower on a real PostgreSQL: idle, one
// look at a store whose version has not moved (what every instance pays
// every follow_interval); change, making live one device another instance
// edited (its commit is outside the timing).
func BenchmarkFollow(b *testing.B) {
	pg := testenv.StartPostgres(b)
	location := pg.NewDatabase(b)
	dir := b.TempDir()
	ledger := filepath.Join(dir, "ledger.yaml")
	if body, err := os.ReadFile("../devices/testdata/ledger.yaml"); err != nil {
		b.Fatal(err)
	} else if err := os.WriteFile(ledger, body, 0o600); err != nil {
		b.Fatal(err)
	}
	start := func() (*Store, *devices.Live) {
		s, err := Open(location)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		l, err := s.Startup(context.Background(), ledger, quiet)
		if err != nil {
			b.Fatal(err)
		}
		lv := devices.NewLive(l)
		s.Attach(lv)
		return s, lv
	}
	a, _ := start()
	f, _ := start()
	ctx := context.Background()
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("change", func(b *testing.B) {
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			c := &devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: "sm-1", Kind: "smoke", Grid: "450204002003",
				Address: fmt.Sprintf("鹅山路%d号", i), Gateway: "gw-1"}}}
			if _, _, err := a.Commit(ctx, "admin", c, CommitOptions{Source: "api"}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := f.Sync(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
