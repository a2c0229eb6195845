package gb45839

import (
	"fmt"
	"strconv"
	"time"

	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

// Network types (NT) of Appendix B.
const (
	NetWired  = "00"
	NetNBIoT  = "01"
	NetCat1   = "02"
	NetWiFi   = "03"
	NetLoRa   = "04"
	NetZigBee = "05"
)

// Serial is a device id (身份标识码) of Appendix B, split into its fields.
// Its check code can only be checked for form: the algorithm and keys are
// issued by the fire authority and not published.
type Serial struct {
	Company string    // CD, 4 × [0-9A-Z], one per manufacturer
	Net     string    // NT, 2 × [0-9A-Z]: 00 wired, 01 NB-IoT, 02 CAT.1, 03 Wi-Fi, 04 LoRa, 05 ZigBee
	Made    time.Time // PD, yymmdd (UTC midnight)
	Number  string    // SN, 9 × [0-9A-Z]
	TAC     uint16    // type allocation code (GB 4717 type class)
	Check   string    // CHK, 4 × [0-9A-F]
}

// ParseSerial checks the form of a device id and splits it. Appendix B
// makes TAC a 2-byte binary integer inside an otherwise ASCII id, which a
// JSON string cannot carry faithfully (bytes ≥ 0x80 are not UTF-8), so two
// forms are accepted: the 27 bytes of the standard (TAC raw, big-endian) and
// 29 characters with TAC as 4 hex digits (docs/nbiot.md, decisions).
func ParseSerial(s string) (Serial, error) {
	var id Serial
	var tacEnd int
	switch len(s) {
	case 27:
		id.TAC = uint16(s[21])<<8 | uint16(s[22])
		tacEnd = 23
	case 29:
		if !all(s[21:25], isHex) {
			return id, fmt.Errorf("%w: TAC %q is not 4 hex digits", nbiot.ErrBadDeviceID, s[21:25])
		}
		v, _ := strconv.ParseUint(s[21:25], 16, 16)
		id.TAC = uint16(v)
		tacEnd = 25
	default:
		return id, fmt.Errorf("%w: %d bytes, want 27 (or 29 with TAC in hex)", nbiot.ErrBadDeviceID, len(s))
	}
	switch {
	case !all(s[0:4], isUpperAlnum):
		return id, fmt.Errorf("%w: company code %q is not 4 × 0-9A-Z", nbiot.ErrBadDeviceID, s[0:4])
	case !all(s[4:6], isUpperAlnum):
		return id, fmt.Errorf("%w: network type %q is not 2 × 0-9A-Z", nbiot.ErrBadDeviceID, s[4:6])
	case !all(s[12:21], isUpperAlnum):
		return id, fmt.Errorf("%w: serial number %q is not 9 × 0-9A-Z", nbiot.ErrBadDeviceID, s[12:21])
	case !all(s[tacEnd:], isHex):
		return id, fmt.Errorf("%w: check code %q is not 4 × 0-9A-F", nbiot.ErrBadDeviceID, s[tacEnd:])
	}
	pd := s[6:12]
	if !all(pd, func(c byte) bool { return c >= '0' && c <= '9' }) {
		return id, fmt.Errorf("%w: production date %q is not yymmdd", nbiot.ErrBadDeviceID, pd)
	}
	made, err := time.Parse("060102", pd)
	if err != nil {
		return id, fmt.Errorf("%w: production date %q is not a date", nbiot.ErrBadDeviceID, pd)
	}
	id.Company, id.Net, id.Made, id.Number, id.Check = s[0:4], s[4:6], made, s[12:21], s[tacEnd:]
	return id, nil
}

func all(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

func isUpperAlnum(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' }
func isHex(c byte) bool        { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }
