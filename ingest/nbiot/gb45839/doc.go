// Package gb45839 decodes the platform API of GB/T 45839-2025
// (独立式火灾探测报警器组网通用技术要求) Appendix D: status_info (a device's
// running state: 1 normal, 2 alarm, 3 fault, 4 disabled, with signal
// strength, battery percentage and time) and Install_info (an installation
// and its protected unit), the {"success":1} answer, and the format check of
// the 27-byte device id (身份标识码) of Appendix B. The standard gives no URL,
// method or authentication; what is assumed is in docs/nbiot.md. It does no
// I/O.
package gb45839
