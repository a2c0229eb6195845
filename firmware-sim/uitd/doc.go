// Package uitd simulates a 用户信息传输装置 (UITD) with a fire alarm controller behind it, speaking
// GB/T 26875.3 to a monitoring centre over TCP or UDP: it reports fire, fault, supervisory, shield and
// reset as the standard's information objects, waits for the 确认 and retransmits (same serial number,
// same content) on a timeout or a 否认, answers clock synchronisation, 查岗 and reads, and can send
// garbage. Tests and demos use it in place of a real UITD.
package uitd
