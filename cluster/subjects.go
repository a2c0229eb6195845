package cluster

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// SubjectPrefix starts every partitioned uplink subject:
// fwp.{partition}.fw.v1.up.... The stream captures fwp.>; the consumer of
// partition n filters fwp.n.>.
const SubjectPrefix = "fwp"

// The NATS server turns an MQTT topic into a subject: '/' becomes '.', and
// a '.' inside a level becomes "//" (docs.nats.io, "Topics and subjects").
// fw/v1/up/{device}/{kind} is then fw.v1.up.{device}.{kind} (five tokens)
// and fw/v1/up/gw/{gateway}/{kind} or fw/v1/up/station/{id}/status six.

// ServerMappings is the nats-server configuration block that partitions the
// uplink into p partitions: a device's topics by its id (wildcard 1 of
// fw.v1.up.*.*), a gateway's and a station's by theirs (wildcard 2 of
// fw.v1.up.*.*.*). Every node of the cluster needs the same block; it is
// account configuration, which a client cannot set (docs/cluster.md).
func ServerMappings(p int) string {
	return fmt.Sprintf(`mappings {
  "fw.v1.up.*.*": "%[2]s.{{partition(%[1]d,1)}}.fw.v1.up.{{wildcard(1)}}.{{wildcard(2)}}"
  "fw.v1.up.*.*.*": "%[2]s.{{partition(%[1]d,2)}}.fw.v1.up.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
}
`, p, SubjectPrefix)
}

// partitionFilter is the subject filter of partition n's consumer.
func partitionFilter(n int) string { return SubjectPrefix + "." + strconv.Itoa(n) + ".>" }

// TopicOf returns the v1 MQTT topic of a partitioned uplink subject
// (fwp.3.fw.v1.up.sm-1.event → fw/v1/up/sm-1/event; a "//" inside a token
// is a '.' of the topic) and the partition, or ok false when subject is not
// one.
func TopicOf(subject string) (topic string, partition int, ok bool) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", 0, false
	}
	num, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return "", 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || !strings.HasPrefix(rest, "fw.v1.up.") {
		return "", 0, false
	}
	var b strings.Builder
	b.Grow(len(rest))
	for i, tok := range strings.Split(rest, ".") {
		if tok == "" {
			return "", 0, false
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.ReplaceAll(tok, "//", "."))
	}
	return b.String(), n, true
}

// PartitionOf returns the partition of p that the servers' mapping gives
// the device, gateway or station id: nats-server's partition function, the
// FNV-1a hash of the subject token (a '.' of the id is "//" there) modulo p.
func PartitionOf(id string, p int) int {
	h := fnv.New32a()
	h.Write([]byte(strings.ReplaceAll(id, ".", "//")))
	return int(h.Sum32() % uint32(p))
}
