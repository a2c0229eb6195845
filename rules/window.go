package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Window is a time-of-day window on some days of the week, in the rule
// set's zone. A window whose end is before its start crosses midnight; it
// belongs to the day it starts on ("22:00-06:00" on fri runs from Friday
// 22:00 to Saturday 06:00).
type Window struct {
	// Start and End are seconds after local midnight; End is exclusive.
	Start, End int32
	// Days is a bit set of weekdays, bit 0 = Sunday, as time.Weekday.
	Days uint8
	Text string
}

const allDays = 0x7f

var dayNames = map[string]uint{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

func parseClock(s string) (int32, error) {
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); n != 2 || err != nil || h < 0 || h > 24 || m < 0 || m > 59 || (h == 24 && m != 0) || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day such as 22:00", s)
	}
	return int32(h*3600 + m*60), nil
}

func parseWindow(text string, days []string) (*Window, error) {
	w := &Window{Start: 0, End: 24 * 3600, Days: allDays, Text: text}
	if text != "" {
		a, b, ok := strings.Cut(text, "-")
		if !ok {
			return nil, fmt.Errorf("time %q is not a range such as 22:00-06:00", text)
		}
		var err error
		if w.Start, err = parseClock(strings.TrimSpace(a)); err != nil {
			return nil, err
		}
		if w.End, err = parseClock(strings.TrimSpace(b)); err != nil {
			return nil, err
		}
		if w.Start == w.End {
			return nil, fmt.Errorf("time %q is empty: it never matches", text)
		}
		if w.Start == 24*3600 {
			return nil, fmt.Errorf("time %q starts at 24:00: write 00:00", text)
		}
	}
	if days != nil {
		if len(days) == 0 {
			return nil, errors.New("days is empty: the window never matches")
		}
		w.Days = 0
		for _, d := range days {
			bit, ok := dayNames[strings.ToLower(d)]
			if !ok {
				return nil, fmt.Errorf("%q is not a day (mon, tue, wed, thu, fri, sat, sun)", d)
			}
			w.Days |= 1 << bit
		}
		w.Text += " " + strings.Join(days, ",")
	}
	return w, nil
}

// contains reports whether the local time t (Unix ms shifted by the zone's
// offset) lies in the window. Integer arithmetic only: it runs per reading.
func (w *Window) contains(local int64) bool {
	day := local / 86_400_000
	sec := int32(local/1000 - day*86_400)
	if sec < 0 { // before 1970 in local time
		sec += 86_400
		day--
	}
	wd := uint((day%7 + 7 + 4) % 7) // 1970-01-01 was a Thursday
	if w.Start < w.End {
		return sec >= w.Start && sec < w.End && w.Days&(1<<wd) != 0
	}
	if sec >= w.Start {
		return w.Days&(1<<wd) != 0
	}
	if sec < w.End {
		return w.Days&(1<<((wd+6)%7)) != 0 // the window started yesterday
	}
	return false
}
