// Package gateway is the core of firegate, the edge gateway (边缘网关): it
// polls RS-485 Modbus RTU devices by register maps, turns their registers
// into catalog readings, keeps every reading in an on-disk spool while the
// uplink is down and forwards them to firewatch as MQTT gateway batches;
// it also carries linkage commands (cut_power) down to the devices.
// cmd/firegate only parses flags and wires a Gateway. The Modbus RTU master
// it polls with is gateway/modbus; the register maps are regmap.go and maps/.
package gateway
