package alarms

import "strings"

// deviceWords are the words that say where and which device a dispatcher's text is about: the place
// (left out when the address already names it), the address, the kind and the id. For a point of a
// building's fire facilities (PushDevice.Point, from a UITD's ledger entry) the point's name comes first
// and replaces the kind, and the address loses its first word when the point's name begins with it (the
// building), as in the example
// "柳石家园 消防控制室 火灾报警系统1 点型光电感烟火灾探测器 0x00000105 3号楼2层走廊".
func deviceWords(d *PushDevice, place string) []string {
	if strings.HasPrefix(d.Addr, place) || strings.HasPrefix(d.Point, place) {
		place = "" // the ledger's address already names the place
	}
	if d.Point == "" {
		return []string{place, d.Addr, d.KindZH, d.ID}
	}
	addr := d.Addr
	if building, rest, ok := strings.Cut(addr, " "); ok && strings.HasPrefix(d.Point, building+" ") {
		addr = rest
	}
	return []string{place, d.Point, addr, d.ID}
}
