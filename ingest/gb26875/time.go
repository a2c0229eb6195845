package gb26875

import "time"

// TimeLabel is the 6-byte time label of §8.2.2 in wire order: second, minute, hour, day, month, year
// (years since 2000). The standard does not say binary or BCD; the open-source implementations and the
// rest of §8 use binary, so binary is what this package sends and what it reads first.
type TimeLabel [6]byte

// MakeTimeLabel is the binary time label of t in t's location.
func MakeTimeLabel(t time.Time) TimeLabel {
	y := t.Year() - 2000
	if y < 0 || y > 99 {
		y = 0 // outside the label's range: the zero year rather than a wrapped one
	}
	return TimeLabel{byte(t.Second()), byte(t.Minute()), byte(t.Hour()), byte(t.Day()), byte(t.Month()), byte(y)}
}

// Time reads the label in loc (the standard names no zone; UITDs in China send local time, UTC+8). It reads
// binary first and, when the bytes are not a valid binary time but are a valid BCD one (e.g. 0x59 seconds),
// BCD. ok is false for a label that is neither (all zeros, 31 February, …): callers then use the receive
// time. A nil loc reads the label as UTC.
func (l TimeLabel) Time(loc *time.Location) (t time.Time, ok bool) {
	if loc == nil {
		loc = time.UTC
	}
	if t, ok = l.time(loc, false); ok {
		return t, true
	}
	return l.time(loc, true)
}

func (l TimeLabel) time(loc *time.Location, bcd bool) (time.Time, bool) {
	var v [6]int
	for i, b := range l {
		if bcd {
			if b>>4 > 9 || b&0x0F > 9 {
				return time.Time{}, false
			}
			v[i] = int(b>>4)*10 + int(b&0x0F)
		} else {
			v[i] = int(b)
		}
	}
	sec, min, hour, day, month, year := v[0], v[1], v[2], v[3], v[4], v[5]
	if sec > 59 || min > 59 || hour > 23 || day < 1 || day > 31 || month < 1 || month > 12 || year > 99 {
		return time.Time{}, false
	}
	t := time.Date(2000+year, time.Month(month), day, hour, min, sec, 0, loc)
	if t.Day() != day { // 31 April and the like normalise into the next month
		return time.Time{}, false
	}
	return t, true
}
