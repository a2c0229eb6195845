package modbus

import (
	"fmt"
	"time"

	"github.com/tarm/serial"
)

// SerialConfig describes an RS-485 port.
type SerialConfig struct {
	Device   string // /dev/ttyS1, /dev/ttyUSB0, /dev/pts/3
	Baud     int
	DataBits int    // 8 (Modbus RTU); 7 is accepted
	Parity   string // "N", "E" or "O"
	StopBits int    // 1 or 2
	// ReadTimeout is how long one read waits for a byte; the serial driver
	// counts it in tenths of a second, so it is rounded up to 100 ms.
	ReadTimeout time.Duration
}

// Port is an open serial port.
type Port = serial.Port

// OpenSerial opens and configures a serial port for a Master.
func OpenSerial(c SerialConfig) (*Port, error) {
	sc := &serial.Config{Name: c.Device, Baud: c.Baud, Size: byte(c.DataBits), ReadTimeout: c.ReadTimeout}
	if sc.ReadTimeout <= 0 {
		sc.ReadTimeout = 100 * time.Millisecond
	}
	switch c.Parity {
	case "", "N":
		sc.Parity = serial.ParityNone
	case "E":
		sc.Parity = serial.ParityEven
	case "O":
		sc.Parity = serial.ParityOdd
	default:
		return nil, fmt.Errorf("serial %s: parity %q is not N, E or O", c.Device, c.Parity)
	}
	switch c.StopBits {
	case 0, 1:
		sc.StopBits = serial.Stop1
	case 2:
		sc.StopBits = serial.Stop2
	default:
		return nil, fmt.Errorf("serial %s: %d stop bits (want 1 or 2)", c.Device, c.StopBits)
	}
	p, err := serial.OpenPort(sc)
	if err != nil {
		return nil, fmt.Errorf("serial %s: %w", c.Device, err)
	}
	return p, nil
}
