package registry

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/firewatch-iot/firewatch/devices"
)

// LoadLedger builds the registry in the store as a ledger named name, each
// device built as its row is read (devices.Stream): what Load then
// devices.Build make, without a million entries held beside the ledger
// (issue 18: start-up from the store in under 1 GiB).
func (s *Store) LoadLedger(ctx context.Context, name string) (*devices.Ledger, error) {
	tx, err := s.reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: s.pg})
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	defer tx.Rollback()
	head := &devices.Entries{Places: map[string]string{}}
	n, err := s.loadHead(ctx, tx, head)
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	st := devices.NewStream(name, head, n)
	rows, err := tx.QueryContext(ctx, `SELECT `+deviceColumns+` FROM registry_devices ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	var sc deviceScan
	for rows.Next() {
		if err := sc.scan(rows); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load registry: %w", err)
		}
		st.Device(&sc.d)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	return st.Finish(head.UITDs)
}
