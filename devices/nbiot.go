package devices

import (
	"fmt"
	"strings"
)

// NBIoT binds a ledger device to the names an NB-IoT operator platform
// (CTWing, OneNET) or a GB/T 45839 peer platform gives it, and says how to
// read its payloads. A ledger entry carries it under `nbiot:`; at least one
// of IMEI, PlatformID and Serial is set.
type NBIoT struct {
	// IMEI is the module's IMEI (15 digits), as CTWing reports it.
	IMEI string `yaml:"imei"`
	// PlatformID is the platform's device id: CTWing deviceId, OneNET dev_id.
	PlatformID string `yaml:"platform_id"`
	// Serial is the GB/T 45839 Appendix B device id (身份标识码).
	Serial string `yaml:"serial"`
	// Product names the product codec (ingest/nbiot/maps) that reads the
	// device's passthrough bytes or thing-model properties.
	Product string `yaml:"product"`
	// Responsible and Mobile are the person responsible (责任人) and the
	// mobile number GB/T 45839 5.10.4 wants notified.
	Responsible string `yaml:"responsible"`
	Mobile      string `yaml:"mobile"`
}

// bound returns a copy of n, or nil when the entry has no binding.
func (n NBIoT) bound() *NBIoT {
	if n == (NBIoT{}) {
		return nil
	}
	return &n
}

// check returns what is wrong with a binding, or "".
func (n NBIoT) check() string {
	if n == (NBIoT{}) {
		return ""
	}
	if n.IMEI == "" && n.PlatformID == "" && n.Serial == "" {
		return "nbiot: set imei, platform_id or serial"
	}
	if n.IMEI != "" && (len(n.IMEI) < 14 || len(n.IMEI) > 16 || strings.Trim(n.IMEI, "0123456789") != "") {
		return fmt.Sprintf("nbiot: imei %q is not 14 to 16 digits", n.IMEI)
	}
	for _, s := range []string{n.PlatformID, n.Serial} {
		if len(s) > 64 {
			return fmt.Sprintf("nbiot: %q is longer than 64 bytes", s)
		}
	}
	if n.Mobile != "" && (len(n.Mobile) < 5 || len(n.Mobile) > 20 || strings.Trim(strings.TrimPrefix(n.Mobile, "+"), "0123456789-") != "") {
		return fmt.Sprintf("nbiot: mobile %q is not a phone number", n.Mobile)
	}
	return ""
}

// NBIoTIndex finds ledger devices by their NB-IoT names. It is read-only
// and safe for concurrent use.
type NBIoTIndex struct {
	imei, platform, serial map[string]Index
}

// NBIoTIndex builds the index of the ledger's NB-IoT bindings. A name bound
// to two devices is an error naming both lines.
func (l *Ledger) NBIoTIndex() (*NBIoTIndex, error) {
	x := &NBIoTIndex{imei: map[string]Index{}, platform: map[string]Index{}, serial: map[string]Index{}}
	var probs []Problem
	add := func(m map[string]Index, what, key string, d *Device) {
		if key == "" {
			return
		}
		if prev, dup := m[key]; dup {
			probs = append(probs, Problem{File: l.File, Line: d.Line,
				Reason: fmt.Sprintf("device %q: nbiot %s %q is also bound to %q (line %d)", d.ID, what, key, l.Devices[prev].ID, l.Devices[prev].Line)})
			return
		}
		m[key] = d.Index
	}
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.NBIoT == nil {
			continue
		}
		add(x.imei, "imei", d.NBIoT.IMEI, d)
		add(x.platform, "platform_id", d.NBIoT.PlatformID, d)
		add(x.serial, "serial", d.NBIoT.Serial, d)
	}
	if len(probs) > 0 {
		return nil, &LoadError{Problems: probs}
	}
	return x, nil
}

// Find returns the device bound to any of the names, trying the IMEI, then
// the platform's device id, then the GB/T 45839 serial.
func (x *NBIoTIndex) Find(imei, platformID, serial string) (Index, bool) {
	for _, c := range [...]struct {
		m map[string]Index
		k string
	}{{x.imei, imei}, {x.platform, platformID}, {x.serial, serial}} {
		if c.k == "" {
			continue
		}
		if i, ok := c.m[c.k]; ok {
			return i, true
		}
	}
	return 0, false
}

// Len is the number of bound devices' names.
func (x *NBIoTIndex) Len() int { return len(x.imei) + len(x.platform) + len(x.serial) }
