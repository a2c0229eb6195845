package nbiot

import (
	"errors"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// Platform is where a report came from.
type Platform uint8

// Platforms.
const (
	PlatformInvalid Platform = iota
	PlatformCTWing           // China Telecom CTWing / AEP subscription push
	PlatformOneNET           // China Mobile OneNET HTTP push
	PlatformGB45839          // a platform calling GB/T 45839-2025 Appendix D
)

var platformNames = [...]string{"", "ctwing", "onenet", "gb45839"}

func (p Platform) String() string {
	if int(p) >= len(platformNames) {
		return "invalid"
	}
	return platformNames[p]
}

// Type is what a report says.
type Type uint8

// Report types.
const (
	TypeInvalid  Type = iota
	TypeData          // device data: Payload or JSON to be mapped by a product codec, or Values already
	TypePresence      // the platform saw the device come online or go offline
	TypeEvent         // a thing-model event (CTWing eventReport)
	TypeCommand       // the outcome of a downlink command
	TypeStatus        // GB/T 45839 status_info: Values already in the catalog
	TypeInstall       // GB/T 45839 Install_info: a proposed installation, never trusted automatically
)

var typeNames = [...]string{"", "data", "presence", "event", "command", "status", "install"}

func (t Type) String() string {
	if int(t) >= len(typeNames) {
		return "invalid"
	}
	return typeNames[t]
}

// Presence is a device's online state as a platform saw it.
type Presence uint8

// Presence values.
const (
	PresenceUnknown Presence = iota
	Online
	Offline
)

// DeviceKey names a device the ways the platforms do; the ledger matches any
// of them. Empty fields are unknown.
type DeviceKey struct {
	IMEI       string // the module's IMEI (CTWing)
	PlatformID string // the platform's device id: CTWing deviceId, OneNET dev_id
	Serial     string // the 27-byte GB/T 45839 Appendix B id
}

// Value is one catalog metric or event of a report. Events carry 1 (active)
// or 0 (cleared).
type Value struct {
	Metric devices.Metric
	Ch     int
	Value  float64
}

// Command is the outcome of a downlink command.
type Command struct {
	ID     string // CTWing taskId, OneNET cmd_id
	Result string // CTWing resultCode (SENT, DELIVERED, SUCCESSFUL, FAILED); OneNET "ack" or "confirm"
	Detail string
}

// Report is one decoded platform message. Strings and byte slices are owned
// by the report (they do not alias the request body).
type Report struct {
	Platform Platform
	Type     Type
	Device   DeviceKey
	Tenant   string // CTWing tenantId
	Product  string // CTWing productId
	// Time is the platform's (or, for GB/T 45839, the reporting platform's
	// stated) time of the report; zero when the message carries none.
	Time time.Time
	// Seq is the platform's sequence number, -1 when it has none (CTWing
	// often sends -1): dedupe then falls back to device, time and content.
	Seq int64
	// Service is the thing-model service (CTWing serviceId) or data stream
	// (OneNET ds_id) the data belongs to.
	Service string
	// EventType is CTWing's eventType of an eventReport.
	EventType int
	// Payload holds passthrough bytes (CTWing APPdata after base64), for a
	// binary product codec.
	Payload []byte
	// JSON holds thing-model properties as a JSON object (CTWing
	// serviceData or flat payload, eventContent; a OneNET data point as
	// {"<ds_id>": value}), for a JSON product codec.
	JSON []byte
	// Values are catalog metrics and events already known without a
	// product codec (GB/T 45839 status_info), or those a codec produced.
	Values   []Value
	Presence Presence
	Command  *Command
	// Signal is GB/T 45839's signalStrength, unit not stated by the
	// standard; SignalSet tells a zero from an absent value.
	Signal    int
	SignalSet bool
	// Disabled is GB/T 45839 status 4 (屏蔽): the device is shut off by its
	// owner and its silence or faults mean nothing.
	Disabled bool
	Install  *Install
}

// Install is a GB/T 45839 Install_info: an installation a platform proposes.
// It is a pending ledger entry for an administrator to accept, never a
// device firewatch trusts by itself.
// Its JSON form uses the standard's field names.
type Install struct {
	Company        string  `json:"company"`
	Serial         string  `json:"serial"`
	Name           string  `json:"name"`
	Category       string  `json:"categoryName"`
	NetType        string  `json:"netType"`
	Client         string  `json:"client"`
	Address        string  `json:"address"`
	DeviceAddress  string  `json:"deviceAddress"`
	ProductionDate string  `json:"productingDate"` // as sent (format unconfirmed)
	Longitude      float64 `json:"longitude"`
	Latitude       float64 `json:"latitude"`
	ActiveTime     string  `json:"activeTime"` // as sent (format unconfirmed)
	Organization   string  `json:"organizationName"`
	Area           string  `json:"area"`
	Responsible    string  `json:"responsible"`
	Mobile         string  `json:"mobile"`
}

// Sentinel errors by reason, for counting rejections
// (firewatch_nbiot_rejected_total{reason}). Decoders wrap them with detail;
// Reason maps an error back to its label.
var (
	ErrMalformed   = errors.New("malformed message")                // not JSON, or a field of the wrong type
	ErrUnknownType = errors.New("unknown message type")             // a messageType / type this decoder does not know
	ErrNoDevice    = errors.New("message names no device")          // no IMEI, deviceId, dev_id or serial
	ErrBadDeviceID = errors.New("device id not in GB/T 45839 form") // Appendix B format check failed
	ErrBadPayload  = errors.New("bad payload")                      // APPdata not base64, payload not an object
	ErrSignature   = errors.New("signature mismatch")               // OneNET signature over token+nonce+msg
	ErrDecrypt     = errors.New("cannot decrypt")                   // OneNET AES mode
	ErrBadValue    = errors.New("value out of range")               // status, battery, time outside their domain
	ErrCodec       = errors.New("payload does not fit the product codec")
)

var reasons = []struct {
	err  error
	name string
}{
	{ErrMalformed, "malformed"}, {ErrUnknownType, "unknown_type"}, {ErrNoDevice, "no_device"},
	{ErrBadDeviceID, "bad_device_id"}, {ErrBadPayload, "bad_payload"}, {ErrSignature, "signature"},
	{ErrDecrypt, "decrypt"}, {ErrBadValue, "bad_value"}, {ErrCodec, "codec"},
}

// Reason returns the bounded metric label of a decoder error: one of the
// sentinel names above, or "other".
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
