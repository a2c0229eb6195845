package main

import (
	"net"
	"net/netip"
)

// loopback reports whether a listen address binds only the loopback
// interface ("127.0.0.1:9090", "[::1]:9090", "localhost:9090").
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
