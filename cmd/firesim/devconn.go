package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/pahoconn"
)

// deviceFleet publishes each device's messages on an MQTT connection of its
// own, with its own credentials (user name and client id = the device id,
// password = its secret: firesim run -secrets), as real devices connect to
// the embedded broker or through the cluster's auth callout, which let a
// device publish only its own topics. Each device also answers the linkage
// commands sent to it (fw/v1/down/{id}/command, docs/mqtt.md "Downlink")
// as a device would: cut_power and restore_power performed and acknowledged
// on fw/v1/up/{id}/ack, an expired command refused, a repeated id answered
// again with "dup".
type deviceFleet struct {
	clients map[string]mqtt.Client
	log     io.Writer

	mu   sync.Mutex
	done map[string]commandAck // command id → the first answer
}

// commandAck is a device's answer to a command (docs/mqtt.md).
type commandAck struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	TS    int64  `json:"ts"`
	State string `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
	Dup   bool   `json:"dup,omitempty"`
}

// connectDevices connects every device of l that publishes over MQTT (not
// the NB-IoT ones), a few at a time (each connection costs the broker an
// argon2id check), and waits until all are connected or wait has passed.
func connectDevices(broker string, l *devices.Ledger, secrets map[string]string, wait time.Duration, log io.Writer) (*deviceFleet, error) {
	f := &deviceFleet{clients: map[string]mqtt.Client{}, log: log, done: map[string]commandAck{}}
	var ids []string
	var missing []string
	for i := range l.Devices {
		d := &l.Devices[i]
		if d.NBIoT != nil {
			continue
		}
		if _, ok := secrets[d.ID]; !ok {
			missing = append(missing, d.ID)
			continue
		}
		ids = append(ids, d.ID)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no secret for %d devices of the ledger (%s…): write the ledger and the secrets together (firesim ledger -secrets)", len(missing), missing[0])
	}
	var connected atomic.Int64
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	brokers := brokerList(broker)
	local := allLoopback(brokers)
	for i, id := range ids {
		// Device i tries the brokers from the i-th on: the fleet spreads
		// over a cluster's nodes, as real devices configured with
		// different first nodes do, and a node's death moves a third.
		order := append(slices.Clone(brokers[i%len(brokers):]), brokers[:i%len(brokers)]...)
		opts := f.options(order, id, secrets[id], &connected)
		if local {
			// Each device from an address of its own (127.1.x.y), as devices
			// on their own SIMs or lines: the broker's secret checks run one
			// at a time per source address (broker.Auth), so 300 devices
			// from one address reconnect one check after the other.
			opts.SetDialer(&net.Dialer{Timeout: 10 * time.Second,
				LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/250), byte(1+i%250))}})
		}
		c := mqtt.NewClient(opts)
		f.clients[id] = c
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.Connect().WaitTimeout(10 * time.Second) // ConnectRetry: it goes on trying
		})
	}
	wg.Wait()
	deadline := time.Now().Add(wait)
	for int(connected.Load()) < len(ids) && time.Now().Before(deadline) {
		fmt.Fprintf(log, "%s %d of %d devices connected\n", time.Now().Format(time.TimeOnly), connected.Load(), len(ids))
		time.Sleep(2 * time.Second)
	}
	fmt.Fprintf(log, "%s %d of %d devices connected with their own credentials (设备已用各自凭据接入)\n",
		time.Now().Format(time.TimeOnly), connected.Load(), len(ids))
	return f, nil
}

// allLoopback reports whether every broker URL's host is a loopback IPv4
// address (make cluster).
func allLoopback(brokers []string) bool {
	for _, b := range brokers {
		u, err := url.Parse(b)
		if err != nil {
			return false
		}
		ip := net.ParseIP(u.Hostname())
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return len(brokers) > 0
}

func (f *deviceFleet) options(brokers []string, id, secret string, connected *atomic.Int64) *mqtt.ClientOptions {
	opts := mqtt.NewClientOptions()
	for _, b := range brokers {
		opts.AddBroker(b)
	}
	var once sync.Once
	opts.SetStore(pahoconn.NewStore()).
		SetClientID(id).SetUsername(id).SetPassword(secret).
		SetCleanSession(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(5 * time.Second).
		SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			fmt.Fprintf(f.log, "%s %s: connection lost: %v; reconnecting (与代理断开，正在重连)\n", time.Now().Format(time.TimeOnly), id, err)
		}).
		SetOnConnectHandler(func(c mqtt.Client) {
			once.Do(func() { connected.Add(1) })
			// Subscribed at every connect: the session keeps it, but a
			// node that lost the session would not.
			c.Subscribe("fw/v1/down/"+id+"/command", 1, func(c mqtt.Client, m mqtt.Message) { f.command(c, id, m.Payload()) })
		})
	return opts
}

// Publish sends a message of the device in topic's second level on its
// own connection.
func (f *deviceFleet) Publish(topic string, payload []byte) mqtt.Token {
	id := ""
	if p := strings.Split(topic, "/"); len(p) > 3 {
		id = p[3]
	}
	c := f.clients[id]
	if c == nil {
		return failedToken{fmt.Errorf("%s: no connection for device %q", topic, id)}
	}
	return c.Publish(topic, 1, false, payload)
}

// Disconnect closes every connection.
func (f *deviceFleet) Disconnect(quiesce uint) {
	var wg sync.WaitGroup
	for _, c := range f.clients {
		wg.Go(func() { c.Disconnect(quiesce) })
	}
	wg.Wait()
}

// command performs a linkage command sent to device id and answers it.
func (f *deviceFleet) command(c mqtt.Client, id string, payload []byte) {
	var cmd struct {
		Cmd string `json:"cmd"`
		ID  string `json:"id"`
		Ch  *int   `json:"ch"`
		TS  int64  `json:"ts"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &cmd); err != nil || cmd.ID == "" {
		fmt.Fprintf(f.log, "%s %s: malformed command %q ignored\n", time.Now().Format(time.TimeOnly), id, payload)
		return
	}
	now := time.Now().UnixMilli()
	ack := commandAck{ID: cmd.ID, TS: now}
	f.mu.Lock()
	prev, dup := f.done[id+"/"+cmd.ID]
	switch {
	case dup:
		ack, ack.Dup, ack.TS = prev, true, now
	case cmd.TS == 0 || cmd.Exp == 0:
		ack.Error = "missing ts/exp"
	case now > cmd.Exp:
		ack.Error = "expired"
	case cmd.Cmd == "cut_power":
		ack.OK, ack.State = true, "off"
	case cmd.Cmd == "restore_power":
		ack.OK, ack.State = true, "on"
	default:
		ack.Error = "unknown command " + cmd.Cmd
	}
	if !dup && ack.Error != "expired" && ack.Error != "missing ts/exp" {
		f.done[id+"/"+cmd.ID] = ack
	}
	f.mu.Unlock()
	b, _ := json.Marshal(ack)
	c.Publish("fw/v1/up/"+id+"/ack", 1, false, b) // not waited for: this is paho's callback
	ch := ""
	if cmd.Ch != nil {
		ch = fmt.Sprintf(" ch %d", *cmd.Ch)
	}
	fmt.Fprintf(f.log, "%s %s: %s%s (%s) → %s\n", time.Now().Format(time.TimeOnly), id, cmd.Cmd, ch, cmd.ID, b)
}

// failedToken is a token that failed before anything was sent.
type failedToken struct{ err error }

func (t failedToken) Wait() bool                     { return true }
func (t failedToken) WaitTimeout(time.Duration) bool { return true }
func (t failedToken) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
func (t failedToken) Error() error { return t.err }
