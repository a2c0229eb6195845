package ctwing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Message types of a push.
const (
	TypeDataReport    = "dataReport"
	TypeOnlineOffline = "deviceOnlineOfflineReport"
	TypeEventReport   = "eventReport"
	TypeCommandResult = "commandResponse"
)

// flexInt is an integer CTWing sends as a number, a numeric string or "".
// Absent or "" is -1, CTWing's own "no sequence number".
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	f.v, f.set = -1, true
	b, empty, err := nbiot.NumberText(b)
	if err != nil || empty {
		return err
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %s", b)
	}
	f.v = n
	return nil
}

func (f flexInt) or(def int64) int64 {
	if !f.set {
		return def
	}
	return f.v
}

// flexString is a string CTWing sometimes sends as a number (serviceId).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		*f = flexString(s)
		return err
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n)
	return nil
}

type push struct {
	MessageType  string          `json:"messageType"`
	UpPacketSN   flexInt         `json:"upPacketSN"`
	UpDataSN     flexInt         `json:"upDataSN"`
	Timestamp    flexInt         `json:"timestamp"`
	EventTime    flexInt         `json:"eventTime"`
	TenantID     flexString      `json:"tenantId"`
	ProductID    flexString      `json:"productId"`
	ServiceID    flexString      `json:"serviceId"`
	DeviceID     string          `json:"deviceId"`
	IMEI         string          `json:"IMEI"`
	IMEILower    string          `json:"imei"`
	Payload      json.RawMessage `json:"payload"`
	EventType    flexInt         `json:"eventType"`
	EventContent json.RawMessage `json:"eventContent"`
	TaskID       flexString      `json:"taskId"`
	Result       *struct {
		ResultCode   string `json:"resultCode"`
		ResultDetail any    `json:"resultDetail"`
	} `json:"result"`
}

// Decode decodes one push body. Errors wrap the sentinels of package nbiot.
func Decode(body []byte) (nbiot.Report, error) {
	var p push
	r := nbiot.Report{Platform: nbiot.PlatformCTWing, Seq: -1}
	if err := json.Unmarshal(body, &p); err != nil {
		return r, fmt.Errorf("%w: %v", nbiot.ErrMalformed, err)
	}
	r.Device = nbiot.DeviceKey{IMEI: p.IMEI, PlatformID: p.DeviceID}
	if r.Device.IMEI == "" {
		r.Device.IMEI = p.IMEILower
	}
	if r.Device.IMEI == "undefined" {
		r.Device.IMEI = ""
	}
	if r.Device.IMEI == "" && r.Device.PlatformID == "" {
		return r, fmt.Errorf("%w: no IMEI or deviceId", nbiot.ErrNoDevice)
	}
	r.Tenant, r.Product, r.Service = string(p.TenantID), string(p.ProductID), string(p.ServiceID)
	if ms := p.Timestamp.or(-1); ms > 0 {
		r.Time = time.UnixMilli(ms)
	} else if ms := p.EventTime.or(-1); ms > 0 {
		r.Time = time.UnixMilli(ms)
	}
	// upDataSN counts data reports; upPacketSN counts uplink packets.
	// Either identifies a retried push; -1 (CTWing's "none") leaves Seq -1.
	if sn := p.UpDataSN.or(-1); sn >= 0 {
		r.Seq = sn
	} else if sn := p.UpPacketSN.or(-1); sn >= 0 {
		r.Seq = sn
	}
	switch p.MessageType {
	case TypeDataReport:
		r.Type = nbiot.TypeData
		return r, decodePayload(&r, p.Payload)
	case TypeOnlineOffline:
		r.Type = nbiot.TypePresence
		switch p.EventType.or(-1) {
		case 1:
			r.Presence = nbiot.Online
		case 0:
			r.Presence = nbiot.Offline
		default:
			return r, fmt.Errorf("%w: eventType %d is neither 1 (online) nor 0 (offline)", nbiot.ErrBadValue, p.EventType.or(-1))
		}
		return r, nil
	case TypeEventReport:
		r.Type = nbiot.TypeEvent
		r.EventType = int(p.EventType.or(0))
		if !isObject(p.EventContent) {
			return r, fmt.Errorf("%w: eventContent is not an object", nbiot.ErrBadPayload)
		}
		r.JSON = bytes.Clone(p.EventContent)
		return r, nil
	case TypeCommandResult:
		r.Type = nbiot.TypeCommand
		if p.Result == nil || p.Result.ResultCode == "" {
			return r, fmt.Errorf("%w: commandResponse without result.resultCode", nbiot.ErrMalformed)
		}
		c := &nbiot.Command{ID: string(p.TaskID), Result: p.Result.ResultCode}
		if p.Result.ResultDetail != nil {
			d, _ := json.Marshal(p.Result.ResultDetail)
			c.Detail = string(d)
		}
		r.Command = c
		return r, nil
	case "":
		return r, fmt.Errorf("%w: messageType missing", nbiot.ErrMalformed)
	}
	return r, fmt.Errorf("%w: messageType %q", nbiot.ErrUnknownType, p.MessageType)
}

// decodePayload fills Payload (passthrough APPdata) or JSON (thing-model
// properties: serviceData, or the flat payload object).
func decodePayload(r *nbiot.Report, raw json.RawMessage) error {
	if !isObject(raw) {
		return fmt.Errorf("%w: payload is not an object", nbiot.ErrBadPayload)
	}
	var p struct {
		APPdata     *string         `json:"APPdata"`
		ServiceID   flexString      `json:"serviceId"`
		ServiceData json.RawMessage `json:"serviceData"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("%w: %v", nbiot.ErrBadPayload, err)
	}
	switch {
	case p.APPdata != nil:
		b, err := base64.StdEncoding.DecodeString(*p.APPdata)
		if err != nil {
			return fmt.Errorf("%w: APPdata is not base64: %v", nbiot.ErrBadPayload, err)
		}
		if len(b) == 0 {
			return fmt.Errorf("%w: APPdata is empty", nbiot.ErrBadPayload)
		}
		r.Payload = b
	case p.ServiceData != nil:
		if !isObject(p.ServiceData) {
			return fmt.Errorf("%w: serviceData is not an object", nbiot.ErrBadPayload)
		}
		r.JSON = bytes.Clone(p.ServiceData)
		if p.ServiceID != "" {
			r.Service = string(p.ServiceID)
		}
	default:
		r.JSON = bytes.Clone(raw) // flat thing-model properties
	}
	return nil
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) >= 2 && b[0] == '{'
}
