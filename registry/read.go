package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// The admin API reads the store, not the live snapshot: each entity comes
// with the ETag of its row. Lists go in id order, a page at a time.

// Devices returns up to limit devices with ids after after, in id order.
func (s *Store) Devices(ctx context.Context, after string, limit int) ([]Device, error) {
	rows, err := s.reader().QueryContext(ctx, s.q(`SELECT `+deviceColumns+` FROM registry_devices WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := []Device{}
	for rows.Next() {
		var e devices.DeviceEntry
		var rev int64
		if err := scanDevice(rows, &e, &rev); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, deviceJSON(&e, rev))
	}
	return out, closeRows(rows)
}

// Device returns the device id, or ok false.
func (s *Store) Device(ctx context.Context, id string) (d Device, ok bool, err error) {
	var e devices.DeviceEntry
	var rev int64
	err = scanDevice(s.reader().QueryRowContext(ctx, s.q(`SELECT `+deviceColumns+` FROM registry_devices WHERE id = ?`), id), &e, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("device %s: %w", id, err)
	}
	return deviceJSON(&e, rev), true, nil
}

// DeviceEntry returns the stored entry of device id, secret hash included.
func (s *Store) DeviceEntry(ctx context.Context, id string) (e devices.DeviceEntry, etag string, ok bool, err error) {
	var rev int64
	err = scanDevice(s.reader().QueryRowContext(ctx, s.q(`SELECT `+deviceColumns+` FROM registry_devices WHERE id = ?`), id), &e, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return e, "", false, nil
	}
	if err != nil {
		return e, "", false, fmt.Errorf("device %s: %w", id, err)
	}
	return e, ETag(rev), true, nil
}

// Gateways lists gateways as Devices lists devices.
func (s *Store) Gateways(ctx context.Context, after string, limit int) ([]Gateway, error) {
	rows, err := s.reader().QueryContext(ctx, s.q(`SELECT id, secret_hash, rev FROM registry_gateways WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list gateways: %w", err)
	}
	out := []Gateway{}
	for rows.Next() {
		var g devices.GatewayEntry
		var rev int64
		if err := rows.Scan(&g.ID, &g.SecretHash, &rev); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, gatewayJSON(&g, rev))
	}
	return out, closeRows(rows)
}

// GatewayEntry returns the stored entry of gateway id.
func (s *Store) GatewayEntry(ctx context.Context, id string) (g devices.GatewayEntry, etag string, ok bool, err error) {
	var rev int64
	err = s.reader().QueryRowContext(ctx, s.q(`SELECT id, secret_hash, rev FROM registry_gateways WHERE id = ?`), id).Scan(&g.ID, &g.SecretHash, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return g, "", false, nil
	}
	if err != nil {
		return g, "", false, fmt.Errorf("gateway %s: %w", id, err)
	}
	return g, ETag(rev), true, nil
}

// Stations lists stations as Devices lists devices.
func (s *Store) Stations(ctx context.Context, after string, limit int) ([]Station, error) {
	rows, err := s.reader().QueryContext(ctx, s.q(`SELECT id, name, grids, endpoint, lat, lon, rev FROM registry_stations WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list stations: %w", err)
	}
	out := []Station{}
	for rows.Next() {
		var st devices.StationEntry
		var grids string
		var rev int64
		if err := rows.Scan(&st.ID, &st.Name, &grids, &st.Endpoint, &st.Lat, &st.Lon, &rev); err != nil {
			rows.Close()
			return nil, err
		}
		st.Grids = splitGrids(grids)
		out = append(out, stationJSON(&st, rev))
	}
	return out, closeRows(rows)
}

// StationEntry returns the stored entry of station id.
func (s *Store) StationEntry(ctx context.Context, id string) (st devices.StationEntry, etag string, ok bool, err error) {
	var grids string
	var rev int64
	err = s.reader().QueryRowContext(ctx, s.q(`SELECT id, name, grids, endpoint, lat, lon, rev FROM registry_stations WHERE id = ?`), id).
		Scan(&st.ID, &st.Name, &grids, &st.Endpoint, &st.Lat, &st.Lon, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return st, "", false, nil
	}
	if err != nil {
		return st, "", false, fmt.Errorf("station %s: %w", id, err)
	}
	st.Grids = splitGrids(grids)
	return st, ETag(rev), true, nil
}

// Places lists places in code order.
func (s *Store) Places(ctx context.Context, after string, limit int) ([]Place, error) {
	rows, err := s.reader().QueryContext(ctx, s.q(`SELECT code, name, rev FROM registry_places WHERE code > ? ORDER BY code LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list places: %w", err)
	}
	out := []Place{}
	for rows.Next() {
		var p Place
		var rev int64
		if err := rows.Scan(&p.Code, &p.Name, &rev); err != nil {
			rows.Close()
			return nil, err
		}
		p.ETag = ETag(rev)
		out = append(out, p)
	}
	return out, closeRows(rows)
}

// Place returns the place code.
func (s *Store) Place(ctx context.Context, code string) (p Place, ok bool, err error) {
	var rev int64
	err = s.reader().QueryRowContext(ctx, s.q(`SELECT code, name, rev FROM registry_places WHERE code = ?`), code).Scan(&p.Code, &p.Name, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("place %s: %w", code, err)
	}
	p.ETag = ETag(rev)
	return p, true, nil
}

// AuditRecord is one entry of the registry's audit history: who changed
// what, when, through what.
type AuditRecord struct {
	ID       int64           `json:"id"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Source   string          `json:"source"`
	Version  int64           `json:"version"`
	Entity   string          `json:"entity"`
	EntityID string          `json:"entity_id"`
	Action   string          `json:"action"` // create, update, delete, import
	Before   json.RawMessage `json:"before"`
	After    json.RawMessage `json:"after"`
}

// Audit returns up to limit audit records, newest first, with ids below
// before (0: from the newest), of entity and id when they are not "".
func (s *Store) Audit(ctx context.Context, entity, id string, before int64, limit int) ([]AuditRecord, error) {
	q := `SELECT id, at_ms, actor, source, version, entity, entity_id, action, before, after FROM registry_audit WHERE 1 = 1`
	var args []any
	if entity != "" {
		q += ` AND entity = ?`
		args = append(args, entity)
	}
	if id != "" {
		q += ` AND entity_id = ?`
		args = append(args, id)
	}
	if before > 0 {
		q += ` AND id < ?`
		args = append(args, before)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.reader().QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("registry audit: %w", err)
	}
	out := []AuditRecord{}
	for rows.Next() {
		var r AuditRecord
		var at int64
		var b, a string
		if err := rows.Scan(&r.ID, &at, &r.Actor, &r.Source, &r.Version, &r.Entity, &r.EntityID, &r.Action, &b, &a); err != nil {
			rows.Close()
			return nil, err
		}
		r.At = time.UnixMilli(at).UTC()
		r.Before, r.After = rawOrNull(b), rawOrNull(a)
		out = append(out, r)
	}
	return out, closeRows(rows)
}

func rawOrNull(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage("null")
	}
	return json.RawMessage(s)
}
