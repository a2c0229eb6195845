package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Alarm is an alarm as the API lists it (docs/api.md). Only the fields the
// plugin shows are decoded; fields added to the API later are ignored.
type Alarm struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Open       *bool      `json:"open"`
	Severity   string     `json:"severity"`
	SeverityZH string     `json:"severity_zh"`
	Rule       string     `json:"rule"`
	Device     string     `json:"device"`
	Kind       string     `json:"kind"`
	Metric     string     `json:"metric"`
	Unit       string     `json:"unit"`
	Channel    int64      `json:"channel"`
	Grid       string     `json:"grid"`
	Station    string     `json:"station"`
	Value      float64    `json:"value"`
	Threshold  float64    `json:"threshold"`
	RaisedAt   time.Time  `json:"raised_at"`
	ClearedAt  *time.Time `json:"cleared_at"`
	ClosedAt   *time.Time `json:"closed_at"`
	Message    string     `json:"message"`
	History    []Change   `json:"history"`
}

// Change is one entry of an alarm's history.
type Change struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	Note  string    `json:"note"`
}

// closedStates are the states in which an alarm is no longer open, for an
// API that does not send "open" (the first version did not).
var closedStates = map[string]bool{"resolved": true, "false_alarm": true, "test": true, "auto_cleared": true, "cleared": true}

// IsOpen reports whether the alarm still needs a person.
func (a *Alarm) IsOpen() bool {
	if a.Open != nil {
		return *a.Open
	}
	return !closedStates[a.State]
}

// Device is a device of the devices API with its liveness.
type Device struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	Grid       string     `json:"grid"`
	Station    string     `json:"station"`
	Online     bool       `json:"online"`
	LastSeen   *time.Time `json:"last_seen"`
	BatteryPct *float64   `json:"battery_pct"`
	RSSIdBm    *float64   `json:"rssi_dbm"`
	// Lat and Lon are sent by APIs that expose the ledger's coordinates;
	// without them the map has nothing to place.
	Lat *float64 `json:"lat"`
	Lon *float64 `json:"lon"`
}

// ErrNoDevicesAPI is returned when firewatch does not serve the devices
// API (an older version, or one with tokens that does not serve it yet).
var ErrNoDevicesAPI = errors.New("this firewatch does not serve the devices API (GET /api/v1/devices)")

// ErrUnauthorized is returned for 401 and 403 answers.
var ErrUnauthorized = errors.New("firewatch rejected the API token")

// Client talks to one firewatch.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the firewatch at base (http://host:9090).
func NewClient(base, token string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("firewatch URL %q: want http(s)://host:port", base)
	}
	return &Client{base: u.String(), token: token, http: &http.Client{Timeout: timeout}}, nil
}

// apiError is a non-2xx answer.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("firewatch: HTTP %d: %s", e.status, e.msg) }

func (c *Client) get(ctx context.Context, path string, q url.Values, v any) (http.Header, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.Header, err
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return resp.Header, ErrUnauthorized
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return resp.Header, &apiError{status: resp.StatusCode, msg: msg}
	}
	if v == nil {
		return resp.Header, nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.Header, fmt.Errorf("firewatch %s: %w", path, err)
	}
	return resp.Header, nil
}

// AlarmFilter selects alarms; empty fields select everything.
type AlarmFilter struct {
	State, Severity, Grid, Device string
	Since, Until                  time.Time
	Limit                         int
}

// Alarms lists alarms, newest first.
func (c *Client) Alarms(ctx context.Context, f AlarmFilter) ([]Alarm, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("severity", f.Severity)
	set("grid", f.Grid)
	set("device", f.Device)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339))
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(min(f.Limit, 1000)))
	}
	var out struct {
		Alarms []Alarm `json:"alarms"`
	}
	_, err := c.get(ctx, "/api/v1/alarms", q, &out)
	return out.Alarms, err
}

// Alarm returns one alarm with its history.
func (c *Client) Alarm(ctx context.Context, id string) (Alarm, error) {
	var a Alarm
	_, err := c.get(ctx, "/api/v1/alarms/"+url.PathEscape(id), nil, &a)
	return a, err
}

// Devices lists devices under a grid prefix (all when empty), at most 1000.
func (c *Client) Devices(ctx context.Context, grid string, offlineOnly bool) ([]Device, error) {
	q := url.Values{"limit": {"1000"}}
	if grid != "" {
		q.Set("grid", grid)
	}
	if offlineOnly {
		q.Set("offline", "true")
	}
	var out struct {
		Devices []Device `json:"devices"`
	}
	_, err := c.get(ctx, "/api/v1/devices", q, &out)
	var ae *apiError
	if errors.As(err, &ae) && (ae.status == http.StatusNotFound || ae.status == http.StatusMethodNotAllowed) {
		return nil, ErrNoDevicesAPI
	}
	return out.Devices, err
}

// Device returns one device.
func (c *Client) Device(ctx context.Context, id string) (Device, error) {
	var d Device
	_, err := c.get(ctx, "/api/v1/devices/"+url.PathEscape(id), nil, &d)
	return d, err
}

// Health is what /healthz reports.
type Health struct {
	Status  string `json:"status"`
	Devices int    `json:"devices"`
	Rules   int    `json:"rules"`
	Version string `json:"version"`
}

// Health reads /healthz. The version comes from its "version" field or an
// X-Firewatch-Version header, whichever the firewatch sends.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	hdr, err := c.get(ctx, "/healthz", nil, &h)
	if h.Version == "" && hdr != nil {
		h.Version = hdr.Get("X-Firewatch-Version")
	}
	return h, err
}
