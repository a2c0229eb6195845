// Package pahoconn opens the network connections of firewatch's and
// firegate's paho MQTT clients through netbuf, so that paho's small reads
// (a byte, the length, the rest, for every packet) come from a buffer and
// its acknowledgements leave in coalesced writes. Set it with paho's
// ClientOptions.SetCustomOpenConnectionFn(pahoconn.Open).
package pahoconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"

	"github.com/firewatch-iot/firewatch/internal/netbuf"
)

// Options are those of every paho connection opened here: paho reads each
// packet with several unbuffered reads, so it gets a read buffer.
var Options = netbuf.Options{ReadBuffer: netbuf.DefaultReadBuffer}

// Open dials the broker as paho itself does (tcp, mqtt, ssl, tls, mqtts,
// tcps, mqtt+ssl, unix, ws, wss; the proxy from the environment as paho
// takes it) and wraps the TCP connection, below TLS, in a netbuf.Conn.
// WebSocket connections are paho's own, unwrapped.
func Open(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	switch uri.Scheme {
	case "ws", "wss":
		var tlsc *tls.Config
		if uri.Scheme == "wss" {
			tlsc = o.TLSConfig
		}
		u := *uri
		u.User = nil
		return paho.NewWebsocket(u.String(), tlsc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "mqtt", "tcp":
		c, err := proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
		if err != nil {
			return nil, err
		}
		return netbuf.New(c, Options), nil
	case "unix":
		path := uri.Host
		if path == "" {
			path = uri.Path
		}
		c, err := dialer.Dial("unix", path)
		if err != nil {
			return nil, err
		}
		return netbuf.New(c, Options), nil
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		c, err := proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
		if err != nil {
			return nil, err
		}
		tlsc := o.TLSConfig
		if tlsc == nil {
			tlsc = &tls.Config{}
		}
		if tlsc.ServerName == "" { // as tls.DialWithDialer does
			tlsc = tlsc.Clone()
			tlsc.ServerName = uri.Hostname()
		}
		tc := tls.Client(netbuf.New(c, Options), tlsc)
		if dialer.Timeout > 0 {
			tc.SetDeadline(time.Now().Add(dialer.Timeout))
		}
		if err := tc.Handshake(); err != nil {
			tc.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", uri.Host, err)
		}
		tc.SetDeadline(time.Time{})
		return tc, nil
	}
	return nil, errors.New("unknown protocol " + uri.Scheme)
}
