package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
)

// ID is the plugin id of plugin.json.
const ID = "firewatch-api-datasource"

// Settings is the data source configuration: jsonData plus the token from
// secureJsonData.
type Settings struct {
	// URL is firewatch's HTTP API base, e.g. http://127.0.0.1:9090.
	URL string `json:"url"`
	// TimeoutSeconds bounds each API request (default 15).
	TimeoutSeconds int `json:"timeoutSeconds"`
	// PollSeconds is the polling period of the alarm stream (default 2).
	PollSeconds int `json:"pollSeconds"`
	// Token is a bearer token of role viewer (secureJsonData.token).
	Token string `json:"-"`
}

// ParseSettings reads the instance settings Grafana passes.
func ParseSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var st Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &st); err != nil {
			return st, fmt.Errorf("jsonData: %w", err)
		}
	}
	if st.URL == "" {
		st.URL = s.URL
	}
	if st.URL == "" {
		return st, errors.New("no firewatch URL configured")
	}
	st.Token = s.DecryptedSecureJSONData["token"]
	if st.TimeoutSeconds <= 0 {
		st.TimeoutSeconds = 15
	}
	if st.PollSeconds <= 0 {
		st.PollSeconds = 2
	}
	return st, nil
}

// Datasource is one configured firewatch data source.
type Datasource struct {
	client *Client
	poll   time.Duration
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.StreamHandler         = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory Grafana calls for each data source
// configured with this plugin.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	st, err := ParseSettings(s)
	if err != nil {
		return nil, err
	}
	return New(st)
}

// New returns a data source for st.
func New(st Settings) (*Datasource, error) {
	c, err := NewClient(st.URL, st.Token, time.Duration(st.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return &Datasource{client: c, poll: time.Duration(st.PollSeconds) * time.Second}, nil
}

// Dispose is called when the settings change; the client holds nothing that
// needs closing beyond idle connections.
func (d *Datasource) Dispose() { d.client.http.CloseIdleConnections() }

// CheckHealth reports whether firewatch answers, its version, and whether
// the token is accepted.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	h, err := d.client.Health(ctx)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.status == 503:
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: "firewatch is reachable but still starting (not yet subscribed to MQTT)"}, nil
	case err != nil:
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: fmt.Sprintf("firewatch at %s is not reachable: %v", d.client.base, err)}, nil
	}
	if _, err := d.client.Alarms(ctx, AlarmFilter{Limit: 1}); err != nil {
		msg := fmt.Sprintf("firewatch answers, but listing alarms failed: %v", err)
		if errors.Is(err, ErrUnauthorized) {
			msg = "firewatch answers, but rejected the API token: set a token of role viewer or higher"
		}
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: msg}, nil
	}
	version := h.Version
	if version == "" {
		version = "unknown (this firewatch does not report a version)"
	}
	details, _ := json.Marshal(map[string]any{"version": h.Version, "devices": h.Devices, "rules": h.Rules, "status": h.Status})
	return &backend.CheckHealthResult{
		Status:      backend.HealthStatusOk,
		Message:     fmt.Sprintf("firewatch %s: %s, %d devices, %d rules; version %s", d.client.base, h.Status, h.Devices, h.Rules, version),
		JSONDetails: details,
	}, nil
}
