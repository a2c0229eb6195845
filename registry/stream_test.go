package registry

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// LoadLedger, each device built as its row is read, makes the ledger that
// Load and devices.Build make; a restart on an unchanged ledger file
// (Startup hashing the file as it reads it) starts from the same registry.
func TestLoadLedgerMatchesBuild(t *testing.T) {
	stores(t, func(t *testing.T, location string) {
		ctx := context.Background()
		path := ledgerFile(t, t.TempDir(), nil)
		s, _ := started(t, location, path)
		e, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, err := devices.Build("x", e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.LoadLedger(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		sameLedger(t, got, want)
		// Batches smaller than the registry: the order and every device kept.
		defer func(b int) { streamBatch = b }(streamBatch)
		streamBatch = 2
		if got, err = s.LoadLedger(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		sameLedger(t, got, want)
		// Restart on the unchanged file: nothing imported, same registry.
		v, _ := s.Version(ctx)
		again, err := s.Startup(ctx, path, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if v2, _ := s.Version(ctx); v2 != v {
			t.Errorf("version %d after a restart on the unchanged file, was %d", v2, v)
		}
		sameLedger(t, again, want)
	})
}

// A device the builder refuses (here: a duplicate id written straight into
// the store) stops the streamed load with the same problem as Build.
func TestLoadLedgerReportsProblems(t *testing.T) {
	ctx := context.Background()
	location := t.TempDir() + "/registry.db"
	path := ledgerFile(t, t.TempDir(), nil)
	s, _ := started(t, location, path)
	if _, err := s.db.ExecContext(ctx, `UPDATE registry_devices SET kind = 'teapot' WHERE id = 'hy-1'`); err != nil {
		t.Fatal(err)
	}
	e, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, berr := devices.Build("x", e)
	_, serr := s.LoadLedger(ctx, "x")
	if berr == nil || serr == nil || berr.Error() != serr.Error() || !strings.Contains(serr.Error(), "hy-1") {
		t.Fatalf("streamed: %v\nbuilt: %v", serr, berr)
	}
}

func sameLedger(t *testing.T, got, want *devices.Ledger) {
	t.Helper()
	if len(got.Devices) == 0 || !reflect.DeepEqual(got.Devices, want.Devices) {
		t.Errorf("devices differ: %d vs %d", len(got.Devices), len(want.Devices))
	}
	if !reflect.DeepEqual(got.Stations, want.Stations) || !reflect.DeepEqual(got.Gateways, want.Gateways) ||
		!reflect.DeepEqual(got.Places, want.Places) {
		t.Error("stations, gateways or places differ")
	}
	for i := range want.Devices {
		id := want.Devices[i].ID
		if d, ok := got.LookupID(id); !ok || d.Index != want.Devices[i].Index {
			t.Errorf("LookupID(%s) = %v, %v", id, d, ok)
		}
	}
}
