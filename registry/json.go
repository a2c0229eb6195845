package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/firewatch-iot/firewatch/devices"
)

// The API's JSON forms of the registry's entities, named as the YAML
// ledger's keys. Secrets never leave the store: an entity shows whether it
// has one and a short fingerprint of its hash, so that an audit record
// shows a rotated secret without revealing anything.

// Device is a device as the API shows and takes it.
type Device struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Model     string          `json:"model,omitempty"`
	Grid      string          `json:"grid"`
	Address   string          `json:"address,omitempty"`
	Lat       float64         `json:"lat"`
	Lon       float64         `json:"lon"`
	Unit      string          `json:"unit,omitempty"`
	Phone     string          `json:"phone,omitempty"`
	Contact   string          `json:"contact,omitempty"`
	Station   string          `json:"station,omitempty"`
	Gateway   string          `json:"gateway,omitempty"`
	Channels  int             `json:"channels,omitempty"`
	Rules     json.RawMessage `json:"rules,omitempty"`
	Heartbeat string          `json:"heartbeat,omitempty"`
	NBIoT     *devices.NBIoT  `json:"nbiot,omitempty"`
	// SecretHash is taken (a hash made with `firewatch hash-secret`),
	// never shown.
	SecretHash string `json:"secret_hash,omitempty"`
	// GenerateSecret asks the server to make the secret: the answer
	// carries it once in Secret; only its hash is stored.
	GenerateSecret bool   `json:"generate_secret,omitempty"`
	Secret         string `json:"secret,omitempty"`
	HasSecret      bool   `json:"has_secret"`
	Fingerprint    string `json:"secret_fingerprint,omitempty"`
	ETag           string `json:"etag,omitempty"`
}

// Gateway is a gateway box as the API shows and takes it.
type Gateway struct {
	ID             string `json:"id"`
	SecretHash     string `json:"secret_hash,omitempty"`
	GenerateSecret bool   `json:"generate_secret,omitempty"`
	Secret         string `json:"secret,omitempty"`
	HasSecret      bool   `json:"has_secret"`
	Fingerprint    string `json:"secret_fingerprint,omitempty"`
	ETag           string `json:"etag,omitempty"`
}

// Station is a micro fire station as the API shows and takes it.
type Station struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Grids    []string `json:"grids"`
	Endpoint string   `json:"endpoint"`
	Lat      float64  `json:"lat"`
	Lon      float64  `json:"lon"`
	ETag     string   `json:"etag,omitempty"`
}

// Place names an administrative code.
type Place struct {
	Code string `json:"code"`
	Name string `json:"name"`
	ETag string `json:"etag,omitempty"`
}

func fingerprint(hash string) string {
	if hash == "" {
		return ""
	}
	s := sha256.Sum256([]byte(hash))
	return hex.EncodeToString(s[:4])
}

func etagOf(rev int64) string {
	if rev == 0 {
		return ""
	}
	return ETag(rev)
}

func deviceJSON(d *devices.DeviceEntry, rev int64) Device {
	out := Device{
		ID: d.ID, Kind: d.Kind, Model: d.Model, Grid: d.Grid, Address: d.Address, Lat: d.Lat, Lon: d.Lon,
		Unit: d.Unit, Phone: d.Phone, Contact: d.Contact, Station: d.Station, Gateway: d.Gateway, Channels: d.Channels,
		HasSecret: d.SecretHash != "", Fingerprint: fingerprint(d.SecretHash), ETag: etagOf(rev),
	}
	if d.Heartbeat != 0 {
		out.Heartbeat = d.Heartbeat.String()
	}
	if d.NBIoT != (devices.NBIoT{}) {
		n := d.NBIoT
		out.NBIoT = &n
	}
	if d.Rules != "" {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d.Rules), &m); err == nil {
			if b, err := json.Marshal(m); err == nil {
				out.Rules = b
			}
		}
	}
	return out
}

// entry turns the API's device into the registry's entry; problems are
// reported as the ledger's are, by field.
func (d *Device) entry() (devices.DeviceEntry, []devices.Problem) {
	e := devices.DeviceEntry{
		ID: d.ID, Kind: d.Kind, Model: d.Model, Grid: d.Grid, Address: d.Address, Lat: d.Lat, Lon: d.Lon,
		Unit: d.Unit, Phone: d.Phone, Contact: d.Contact, Station: d.Station, Gateway: d.Gateway, Channels: d.Channels,
		SecretHash: d.SecretHash,
	}
	var probs []devices.Problem
	bad := func(field, format string, args ...any) {
		probs = append(probs, problem("devices", d.ID, field, fmt.Sprintf(format, args...)))
	}
	if d.NBIoT != nil {
		e.NBIoT = *d.NBIoT
	}
	if d.Heartbeat != "" {
		hb, err := time.ParseDuration(d.Heartbeat)
		if err != nil {
			bad("heartbeat", "heartbeat %q is not a duration such as 30m", d.Heartbeat)
		}
		e.Heartbeat = hb
	}
	if r := bytes.TrimSpace(d.Rules); len(r) > 0 && !bytes.Equal(r, []byte("null")) {
		var m map[string]any
		if r[0] != '{' || json.Unmarshal(r, &m) != nil {
			bad("rules", "rules must be an object: rule id → {above, clear, for} or {off: true}")
		} else if len(m) > 0 {
			// JSON is YAML: the overrides keep their text.
			e.Rules = string(r)
		}
	}
	return e, probs
}

func gatewayJSON(g *devices.GatewayEntry, rev int64) Gateway {
	return Gateway{ID: g.ID, HasSecret: g.SecretHash != "", Fingerprint: fingerprint(g.SecretHash), ETag: etagOf(rev)}
}

func stationJSON(s *devices.StationEntry, rev int64) Station {
	g := s.Grids
	if g == nil {
		g = []string{}
	}
	return Station{ID: s.ID, Name: s.Name, Grids: g, Endpoint: s.Endpoint, Lat: s.Lat, Lon: s.Lon, ETag: etagOf(rev)}
}

func problem(section, id, field, reason string) devices.Problem {
	return devices.Problem{Section: section, Index: -1, ID: id, Field: field, Reason: reason}
}
