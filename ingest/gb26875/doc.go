// Package gb26875 is the codec of GB/T 26875.3-2011 (城市消防远程监控系统 报警传输网络通信协议), the
// protocol in which a 用户信息传输装置 (UITD, user information transmission device) reports a building's
// fire alarm controller to a monitoring centre. It parses and builds frames (`@@` … `##`, checksum),
// decodes every upload type (1–8, 21, 24–26, 28) into typed objects and encodes every downlink type
// (61–68, 81, 84–86, 88–91). It does no I/O: the stream subpackage reassembles frames from a TCP
// connection. Decoding a status frame allocates nothing; objects alias the frame they came from.
//
// The protocol's facts and the choices made where the standard is silent are in docs/gb26875.md.
package gb26875
