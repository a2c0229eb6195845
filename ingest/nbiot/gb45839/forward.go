package gb45839

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/firewatch-iot/firewatch/devices"
)

// Forward is the nbiot.forward section: firewatch as the on-site or
// manufacturer platform reporting its NB-IoT detectors' alarms, faults and
// returns to normal to a 中心级 remote platform in Appendix D's
// status_info (alarms.Centre delivers them through the outbox).
type Forward struct {
	URL     string `yaml:"url" help:"status_info endpoint of the 中心级 remote platform (GB/T 45839 Appendix D), its path token included: alarms and faults of the ledger's NB-IoT detectors (nbiot.serial set) go there in < 10 s; empty: off" secret:"true"`
	Company string `yaml:"company" help:"the company field of the status_info reports (the manufacturer or operator, as the centre knows it)"`
}

// Enabled reports whether forwarding is configured.
func (f Forward) Enabled() bool { return f.URL != "" }

// Vitals tells the last signal strength and battery percentage a device
// reported (bridge.Bridge.Vitals); each ok false when unknown.
type Vitals func(device string) (signal int, signalOK bool, battery int, batteryOK bool)

// Forwarder renders status_info reports (alarms.CentreFormat).
type Forwarder struct {
	company string
	vitals  Vitals
}

// NewForwarder makes the status_info renderer of f; vitals may be nil.
func NewForwarder(f Forward, vitals Vitals) *Forwarder {
	return &Forwarder{company: f.Company, vitals: vitals}
}

// statusOut is status_info, its fields in Appendix D's order. The vitals
// are left out when the device never reported them.
type statusOut struct {
	Company  string `json:"company"`
	Serial   string `json:"serial"`
	Status   int    `json:"status"`
	Signal   *int   `json:"signalStrength,omitempty"`
	Battery  *int   `json:"batteryPercentage,omitempty"`
	DateTime string `json:"datetime"`
}

// StatusBody renders device d's status at time at (China Standard Time).
// A device without a serial, or with one a JSON string cannot carry (a
// 27-byte id whose binary TAC is not UTF-8), is not forwarded.
func (f *Forwarder) StatusBody(d *devices.Device, status int, at time.Time) ([]byte, bool, error) {
	if d.NBIoT == nil || d.NBIoT.Serial == "" || !utf8.ValidString(d.NBIoT.Serial) {
		return nil, false, nil
	}
	if status < StatusNormal || status > StatusDisabled {
		return nil, false, fmt.Errorf("status %d is not 1…4", status)
	}
	s := statusOut{Company: f.company, Serial: d.NBIoT.Serial, Status: status, DateTime: at.In(CST).Format(DateTimeLayout)}
	if f.vitals != nil {
		sig, sok, bat, bok := f.vitals(d.ID)
		if sok {
			s.Signal = &sig
		}
		if bok {
			s.Battery = &bat
		}
	}
	b, err := json.Marshal(s)
	return b, err == nil, err
}

// CheckForward checks the serials of the ledger's NB-IoT detectors for
// forwarding: a serial that is set must be a valid Appendix B id that a
// JSON string carries (29 characters with TAC in hex, or 27 bytes whose
// TAC bytes are below 0x80). It returns the bound detectors that have no
// serial, which are not forwarded.
func CheckForward(l *devices.Ledger) (noSerial []string, err error) {
	var bad []string
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.NBIoT == nil {
			continue
		}
		if d.NBIoT.Serial == "" {
			noSerial = append(noSerial, d.ID)
			continue
		}
		if _, err := ParseSerial(d.NBIoT.Serial); err != nil {
			bad = append(bad, fmt.Sprintf("device %q: %v", d.ID, err))
		} else if !utf8.ValidString(d.NBIoT.Serial) {
			bad = append(bad, fmt.Sprintf("device %q: serial's TAC is binary, not UTF-8: write it as 4 hex digits (29 characters)", d.ID))
		}
	}
	if len(bad) > 0 {
		return noSerial, fmt.Errorf("nbiot.forward: %s", strings.Join(bad, "; "))
	}
	return noSerial, nil
}

// Validate checks the section.
func (f Forward) Validate() error {
	if f.URL == "" {
		return nil
	}
	if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("nbiot.forward.url: not an http(s) URL")
	}
	if f.Company == "" {
		return errors.New("nbiot.forward.company: the status_info reports need the company the centre knows")
	}
	return nil
}
