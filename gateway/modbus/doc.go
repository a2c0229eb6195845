// Package modbus is a Modbus RTU master for RS-485 buses: request framing,
// CRC-16/MODBUS, strict response checks (length, slave address, function,
// echo), exception responses as errors, per-request timeouts, retries and
// the 3.5-character inter-frame silence. It speaks to any io.ReadWriter (a
// serial port opened with OpenSerial, a pseudo-terminal in tests), and also
// holds the slave-side framing the simulator in firmware-sim/rtu uses.
package modbus
