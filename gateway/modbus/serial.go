package modbus

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// SerialConfig describes an RS-485 port.
type SerialConfig struct {
	// Device is the terminal: /dev/ttyS1, /dev/ttyUSB0, a stable
	// /dev/serial/by-id/… link to a USB adapter, or /dev/pts/3.
	Device   string
	Baud     int
	DataBits int    // 8 (Modbus RTU); 7 is accepted
	Parity   string // "N", "E" or "O"
	StopBits int    // 1 or 2
	// ReadTimeout is unused: the master gives every read its own deadline.
	// It is kept so that existing callers compile.
	ReadTimeout time.Duration
}

// Port is an open serial port in raw mode. Its reads honour deadlines set
// with SetReadDeadline (the file is under the runtime's poller), so the
// master times a response to the millisecond and can wait for the line to
// fall silent.
type Port struct {
	f    *os.File
	name string
}

// ErrHangup is returned by a read of a port whose device went away (a
// USB adapter unplugged): the port must be closed and opened again.
var ErrHangup = errors.New("serial port hung up")

var bauds = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600, 19200: unix.B19200,
	38400: unix.B38400, 57600: unix.B57600, 115200: unix.B115200, 230400: unix.B230400,
	460800: unix.B460800, 921600: unix.B921600,
}

// OpenSerial opens and configures a serial port for a Master.
func OpenSerial(c SerialConfig) (*Port, error) {
	if c.Baud == 0 {
		c.Baud = 9600
	}
	rate, ok := bauds[c.Baud]
	if !ok {
		return nil, fmt.Errorf("serial %s: unsupported baud rate %d", c.Device, c.Baud)
	}
	cflag := uint32(unix.CREAD | unix.CLOCAL | rate)
	switch c.DataBits {
	case 0, 8:
		cflag |= unix.CS8
	case 7:
		cflag |= unix.CS7
	default:
		return nil, fmt.Errorf("serial %s: %d data bits (want 7 or 8)", c.Device, c.DataBits)
	}
	switch c.Parity {
	case "", "N":
	case "E":
		cflag |= unix.PARENB
	case "O":
		cflag |= unix.PARENB | unix.PARODD
	default:
		return nil, fmt.Errorf("serial %s: parity %q is not N, E or O", c.Device, c.Parity)
	}
	switch c.StopBits {
	case 0, 1:
	case 2:
		cflag |= unix.CSTOPB
	default:
		return nil, fmt.Errorf("serial %s: %d stop bits (want 1 or 2)", c.Device, c.StopBits)
	}
	// Non-blocking from the start: os.OpenFile then puts the descriptor
	// under the runtime's poller, which gives reads their deadlines.
	f, err := os.OpenFile(c.Device, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("serial %s: %w", c.Device, err)
	}
	t := unix.Termios{Iflag: unix.IGNPAR, Cflag: cflag, Ispeed: rate, Ospeed: rate}
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := control(f, func(fd int) error {
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
			return err
		}
		return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIOFLUSH)
	}); err != nil {
		f.Close()
		return nil, fmt.Errorf("serial %s: configure: %w", c.Device, err)
	}
	return &Port{f: f, name: c.Device}, nil
}

// control runs fn on the descriptor without taking it out of the poller
// (File.Fd would make it blocking).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Read reads what has arrived, waiting until the read deadline for the
// first byte. A hang-up (end of file on a terminal) is ErrHangup.
func (p *Port) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if n == 0 && errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("serial %s: %w", p.name, ErrHangup)
	}
	return n, err
}

// Write writes b to the line.
func (p *Port) Write(b []byte) (int, error) { return p.f.Write(b) }

// SetReadDeadline bounds the next reads; a read past it returns an error
// that matches os.ErrDeadlineExceeded.
func (p *Port) SetReadDeadline(t time.Time) error { return p.f.SetReadDeadline(t) }

// Close closes the port.
func (p *Port) Close() error { return p.f.Close() }
