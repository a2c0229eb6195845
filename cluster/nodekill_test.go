package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterNATSNodeKill (issue 15, helper i15n): two instances share 8
// partitions on a real 3-node cluster; the NATS node that leads the most
// partition consumers (fw-pN, R3) is killed with SIGKILL while 16 devices
// publish over MQTT to the two other nodes. For each partition whose
// consumer leader died it records when the new leader was elected (the
// consumer's LEADER_ELECTED advisory), when the partition's first message
// after the kill was stored in the uplink stream, and when an instance
// handled it. The election is nats-server's (Raft: 4–9 s of silence before
// a follower campaigns); the part after both is firewatch's, bounded here
// (below ack_wait and pinned_ttl, which a regression waiting for either
// would show). Every PUBACKed message must be handled. FW_NODE_KILLS=n
// repeats the kill (the node restarted between kills);
// FW_NODE_KILL_STREAMS=1 lets it kill a node leading the uplink's streams.
func TestClusterNATSNodeKill(t *testing.T) {
	const parts = 8
	kills := 1
	if v, err := strconv.Atoi(os.Getenv("FW_NODE_KILLS")); err == nil && v > 0 {
		kills = v
	}
	nc := testenv.StartNATSCluster(t, ServerMappings(parts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	devs := twoPerPartition(parts)
	recs := []*clockRecorder{
		{parts: parts, at: map[int][]time.Time{}, seqs: map[string][]took{}},
		{parts: parts, at: map[int][]time.Time{}, seqs: map[string][]took{}},
	}
	var srcs []*Source
	for i, name := range []string{"a", "b"} {
		s := NewSource(testConfig(nc.URLs(), parts, name), recs[i], nil, nil, quiet())
		runSource(t, ctx, s, name)
		srcs = append(srcs, s)
	}
	// Pins are given at deliveries: messages until the two instances
	// share the partitions.
	warm := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(nc.Nodes[0].MQTT).SetClientID("npub-warm").
		SetCleanSession(true).SetAutoReconnect(false))
	if tok := warm.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	warmSeq := 0
	testenv.WaitFor(t, 60*time.Second, "the partitions shared", func() bool {
		for _, id := range devs {
			warm.Publish("fw/v1/up/"+id+"/status", 1, false, fmt.Sprintf(`{"seq":%d}`, warmSeq)).WaitTimeout(10 * time.Second)
		}
		warmSeq++
		return len(srcs[0].Owned())+len(srcs[1].Owned()) == parts && len(srcs[0].Owned()) > 0 && len(srcs[1].Owned()) > 0
	})
	warm.Disconnect(100)
	firstAfter := func(p int, at time.Time) time.Time {
		var f time.Time
		for _, r := range recs {
			if x := r.firstAfter(p, at); !x.IsZero() && (f.IsZero() || x.Before(f)) {
				f = x
			}
		}
		return f
	}

	var gapsLed, gapsOther, elections, afterElection []time.Duration
	var pubMu sync.Mutex
	acked := map[string][]int{} // device → seqs PUBACKed
	nextSeq := 0
	for k := range kills {
		// The consumers' leaders, from a connection to any node.
		conn, err := nats.Connect(nc.URLs())
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(conn)
		leaders := map[int]string{}
		count := map[string]int{}
		testenv.WaitFor(t, 30*time.Second, "every consumer with a leader", func() bool {
			for p := range parts {
				c, cerr := js.Consumer(ctx, DefaultStream, "fw-p"+strconv.Itoa(p))
				if cerr != nil {
					return false
				}
				info, cerr := c.Info(ctx)
				if cerr != nil || info.Cluster == nil || info.Cluster.Leader == "" {
					return false
				}
				leaders[p] = info.Cluster.Leader
			}
			return true
		})
		for _, l := range leaders {
			count[l]++
		}
		streamLeaders := map[string]string{}
		for _, st := range []string{DefaultStream, MQTTStream} {
			if s, serr := js.Stream(ctx, st); serr == nil {
				if info, ierr := s.Info(ctx); ierr == nil && info.Cluster != nil {
					streamLeaders[st] = info.Cluster.Leader
				}
			}
		}
		// The sourcing consumer on the MQTT stream: while it has no
		// leader nothing reaches the uplink stream either.
		if c, cerr := js.PushConsumer(ctx, MQTTStream, DefaultStream+"_SOURCE"); cerr == nil {
			if info, ierr := c.Info(ctx); ierr == nil && info.Cluster != nil {
				streamLeaders["source"] = info.Cluster.Leader
			}
		}
		conn.Close()
		// The node leading the most partition consumers; with
		// FW_NODE_KILL_STREAMS unset, one that leads neither stream when
		// there is one (their election stops the uplink itself).
		victim := -1
		streamsToo := os.Getenv("FW_NODE_KILL_STREAMS") != ""
		for i, n := range nc.Nodes {
			if count[n.Name] == 0 || (!streamsToo && slices.Contains(slices.Collect(maps.Values(streamLeaders)), n.Name)) {
				continue
			}
			if victim < 0 || count[n.Name] > count[nc.Nodes[victim].Name] {
				victim = i
			}
		}
		if victim < 0 {
			for i, n := range nc.Nodes {
				if victim < 0 || count[n.Name] > count[nc.Nodes[victim].Name] {
					victim = i
				}
			}
		}
		streamKilled := slices.Contains(slices.Collect(maps.Values(streamLeaders)), nc.Nodes[victim].Name)
		vname := nc.Nodes[victim].Name
		var led []int
		for p, l := range leaders {
			if l == vname {
				led = append(led, p)
			}
		}
		slices.Sort(led)

		// Publishers and the advisory listener on the two other nodes.
		var pubs []mqtt.Client
		var adv *nats.Conn
		for i, n := range nc.Nodes {
			if i == victim {
				continue
			}
			// Reconnecting: a node closes an MQTT connection whose QoS 1
			// publish its MQTT stream did not store within 5 s (the
			// stream's leader died with the node).
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(n.MQTT).SetClientID(fmt.Sprintf("npub-%d-%d", k, i)).
				SetCleanSession(true).SetAutoReconnect(true).SetMaxReconnectInterval(250 * time.Millisecond))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("mqtt connect %s: %v", n.MQTT, tok.Error())
			}
			pubs = append(pubs, c)
			if adv == nil {
				if adv, err = nats.Connect(n.URL); err != nil {
					t.Fatal(err)
				}
			}
		}
		var advMu sync.Mutex
		elected := map[string]time.Time{}
		// Every leader elected after the kill, by stream or
		// stream.consumer: the partition consumers' and those the uplink
		// passes through (the MQTT stream, its sourcing consumer, the
		// uplink stream).
		var killedAt time.Time
		if _, err := adv.Subscribe("$JS.EVENT.ADVISORY.*.LEADER_ELECTED.>", func(m *nats.Msg) {
			key := m.Subject[strings.Index(m.Subject, "LEADER_ELECTED.")+len("LEADER_ELECTED."):]
			advMu.Lock()
			if _, ok := elected[key]; !ok && !killedAt.IsZero() {
				elected[key] = time.Now()
			}
			advMu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		adv.Flush()
		stop := make(chan struct{})
		seq := nextSeq
		var pubDone sync.WaitGroup
		pubDone.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for ; ; seq++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var toks []mqtt.Token
				for i, id := range devs {
					toks = append(toks, pubs[i%2].Publish("fw/v1/up/"+id+"/event", 1, false, fmt.Sprintf(`{"seq":%d}`, seq)))
				}
				for i, tok := range toks {
					// A publish stalls while the MQTT stream elects its
					// leader; one not PUBACKed is not owed.
					if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
						pubMu.Lock()
						acked[devs[i]] = append(acked[devs[i]], seq)
						pubMu.Unlock()
					}
				}
			}
		})
		time.Sleep(3 * time.Second) // a load phase before the kill, not synchronisation
		nc.Kill(victim)
		killed := time.Now()
		advMu.Lock()
		killedAt = killed
		advMu.Unlock()
		deadline := killed.Add(60 * time.Second)
		for {
			var missing []int
			for p := range parts {
				if firstAfter(p, killed).IsZero() {
					missing = append(missing, p)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d of node %s (leading %v): partitions %v not handled within 60 s of the kill; a owns %v, b owns %v; %s",
					k, vname, led, missing, srcs[0].Owned(), srcs[1].Owned(), consumerStates(ctx, nc, victim, parts))
			}
			time.Sleep(20 * time.Millisecond) // polling the recorders, which have no signal
		}
		close(stop)
		pubDone.Wait()
		nextSeq = seq + 1
		for _, c := range pubs {
			c.Disconnect(100)
		}
		var worstLed, worstOther time.Duration
		for p := range parts {
			gap := firstAfter(p, killed).Sub(killed)
			if !slices.Contains(led, p) {
				gapsOther = append(gapsOther, gap)
				worstOther = max(worstOther, gap)
				continue
			}
			gapsLed = append(gapsLed, gap)
			worstLed = max(worstLed, gap)
			advMu.Lock()
			e, ok := elected[DefaultStream+".fw-p"+strconv.Itoa(p)]
			// Ready: the consumer and whatever the uplink passes through
			// has a leader again.
			advMu.Unlock()
			// Ready: the consumer has a leader again and a message of the
			// partition is in the uplink stream (the uplink's own
			// leaders elected, the publishers reconnected).
			ready := e
			if st := storedAfter(ctx, nc, victim, p, killed); st.After(ready) {
				ready = st
			}
			if !ok {
				t.Logf("kill %d: partition %d: no LEADER_ELECTED advisory seen", k, p)
				continue
			}
			elections = append(elections, e.Sub(killed))
			after := firstAfter(p, killed).Sub(ready)
			t.Logf("kill %d: partition %d: new consumer leader %v after the kill, its first message stored after the kill at %v; first message handled %v after both",
				k, p, e.Sub(killed).Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond), after.Round(time.Millisecond))
			afterElection = append(afterElection, after)
			if after > nodeKillBound {
				t.Errorf("kill %d: partition %d handled %v after its consumer had a leader again and its first message was stored after the kill (%v after the kill); bound %v",
					k, p, after.Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond), nodeKillBound)
			}
		}
		adv.Close()
		t.Logf("kill %d: node %s (led consumers of partitions %v; stream leaders %v, killed: %v): their partitions handled again %v after the kill at worst, the others %v",
			k, vname, led, streamLeaders, streamKilled, worstLed.Round(time.Millisecond), worstOther.Round(time.Millisecond))
		if k < kills-1 {
			nc.Start(victim)
		}
	}
	dist := func(d []time.Duration) string {
		if len(d) == 0 {
			return "none"
		}
		slices.Sort(d)
		return fmt.Sprintf("median %v, max %v (%d)", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), len(d))
	}
	t.Logf("over %d node kills: gap of the partitions whose consumer leader died: %s; of the others: %s; their new leader elected after: %s; first message handled after the election: %s",
		kills, dist(gapsLed), dist(gapsOther), dist(elections), dist(afterElection))

	// Every PUBACKed message taken; counted: messages taken more than
	// once (handled while the consumer had no leader: the ack was lost
	// and the new leader delivered them again).
	pubMu.Lock()
	defer pubMu.Unlock()
	again := 0
	testenv.WaitFor(t, 30*time.Second, "every PUBACKed message taken", func() bool {
		again = 0
		for _, id := range devs {
			seen := map[int]int{}
			for _, r := range recs {
				r.mu.Lock()
				for _, q := range r.seqs["fw/v1/up/"+id+"/event"] {
					seen[q.seq]++
				}
				r.mu.Unlock()
			}
			for _, q := range acked[id] {
				if seen[q] == 0 {
					return false
				}
				again += seen[q] - 1
			}
		}
		return true
	})
	n := 0
	for _, a := range acked {
		n += len(a)
	}
	t.Logf("%d PUBACKed messages, every one taken; %d taken more than once", n, again)
}

// storedAfter returns when the first message of partition p stored in the
// uplink stream at or after t was stored (zero if none), asking a node
// other than dead.
func storedAfter(ctx context.Context, nc *testenv.NATSCluster, dead, p int, t time.Time) time.Time {
	conn, err := nats.Connect(nc.Nodes[(dead+1)%len(nc.Nodes)].URL)
	if err != nil {
		return time.Time{}
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)
	c, err := js.OrderedConsumer(ctx, DefaultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{partitionFilter(p)}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t})
	if err != nil {
		return time.Time{}
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		return time.Time{}
	}
	md, err := m.Metadata()
	if err != nil {
		return time.Time{}
	}
	return md.Timestamp
}

// nodeKillBound bounds the time from a consumer's new leader to the first
// message its partition's owner handles.
const nodeKillBound = 2 * time.Second

// consumerStates describes the partition consumers as a node other than
// dead sees them.
func consumerStates(ctx context.Context, nc *testenv.NATSCluster, dead, parts int) string {
	url := nc.Nodes[(dead+1)%len(nc.Nodes)].URL
	conn, err := nats.Connect(url)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)
	var out string
	for p := range parts {
		c, err := js.Consumer(ctx, DefaultStream, "fw-p"+strconv.Itoa(p))
		if err != nil {
			out += fmt.Sprintf("fw-p%d: %v; ", p, err)
			continue
		}
		i := c.CachedInfo()
		leader := ""
		if i.Cluster != nil {
			leader = i.Cluster.Leader
		}
		pin := ""
		for _, g := range i.PriorityGroups {
			pin = g.PinnedClientID
		}
		out += fmt.Sprintf("fw-p%d: leader %s pending %d ack-pending %d waiting %d pin %q; ", p, leader, i.NumPending, i.NumAckPending, i.NumWaiting, pin)
	}
	return out
}
