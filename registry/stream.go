package registry

import (
	"context"
	"fmt"

	"github.com/firewatch-iot/firewatch/devices"
)

// streamBatch devices at a time, streamBatches batches at most in flight,
// go from LoadLedger's scan to its build.
var streamBatch, streamBatches = 1024, 4

// LoadLedger builds the registry in the store as a ledger named name, each
// device built as its row is read (devices.Stream): what Load then
// devices.Build make, without a million entries held beside the ledger
// (issue 18: start-up from the store in under 1 GiB).
func (s *Store) LoadLedger(ctx context.Context, name string) (*devices.Ledger, error) {
	l, _, err := s.loadLedger(ctx, name)
	return l, err
}

// loadLedger is LoadLedger, also returning the registry version it read:
// one snapshot of the database (issue 15: the version a follower starts
// from must be the one the ledger reflects).
func (s *Store) loadLedger(ctx context.Context, name string) (*devices.Ledger, uint64, error) {
	tx, err := s.reader().BeginTx(ctx, s.snapshot())
	if err != nil {
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	defer tx.Rollback()
	v, err := metaVersion(ctx, tx, s)
	if err != nil {
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	head := &devices.Entries{Places: map[string]string{}}
	n, err := s.loadHead(ctx, tx, head)
	if err != nil {
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	st := devices.NewStream(name, head, n)
	rows, err := tx.QueryContext(ctx, `SELECT `+deviceColumns+` FROM registry_devices ORDER BY seq`)
	if err != nil {
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	// The rows are scanned on this goroutine and built on another, a batch
	// at a time in order: the two halves of the work run on two cores.
	free, full, built := make(chan []devices.DeviceEntry, streamBatches), make(chan []devices.DeviceEntry, streamBatches), make(chan struct{})
	for range streamBatches {
		free <- make([]devices.DeviceEntry, 0, streamBatch)
	}
	go func() {
		defer close(built)
		for ds := range full {
			for i := range ds {
				st.Device(&ds[i])
			}
			free <- ds[:0]
		}
	}()
	var sc deviceScan
	cur := <-free
	for rows.Next() {
		if err = sc.scan(rows); err != nil {
			break
		}
		cur = append(cur, sc.d)
		if len(cur) == cap(cur) {
			full <- cur
			cur = <-free
		}
	}
	if len(cur) > 0 {
		full <- cur
	}
	close(full)
	<-built
	if err != nil {
		rows.Close()
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	if err := closeRows(rows); err != nil {
		return nil, 0, fmt.Errorf("load registry: %w", err)
	}
	l, err := st.Finish(head.UITDs)
	return l, v, err
}
