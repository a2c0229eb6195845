package devices

import (
	"fmt"
	"strings"
)

// Grid is a 12-digit administrative division code (统计用区划代码) of a
// village or community (社区/村): 2 digits province, 4 city, 6 county
// (区/县), 9 town (街道/乡镇), 12 village. Prefixes select whole areas:
// "everything in 柳南区" is the prefix 450204.
type Grid string

// provinces are the province-level prefixes of the national code table.
var provinces = map[string]bool{
	"11": true, "12": true, "13": true, "14": true, "15": true,
	"21": true, "22": true, "23": true,
	"31": true, "32": true, "33": true, "34": true, "35": true, "36": true, "37": true,
	"41": true, "42": true, "43": true, "44": true, "45": true, "46": true,
	"50": true, "51": true, "52": true, "53": true, "54": true,
	"61": true, "62": true, "63": true, "64": true, "65": true,
}

// ParseGrid checks that s is a 12-digit village or community code.
func ParseGrid(s string) (Grid, error) {
	if len(s) != 12 {
		return "", fmt.Errorf("grid %q is not a 12-digit village/community code", s)
	}
	if err := checkPrefix(s); err != nil {
		return "", err
	}
	if s[9:] == "000" {
		return "", fmt.Errorf("grid %q names a town, not a village/community (last 3 digits are 000)", s)
	}
	return Grid(s), nil
}

// ParsePrefix checks that s is a code prefix of 2, 4, 6, 9 or 12 digits, as
// used for a station's coverage or an API filter.
func ParsePrefix(s string) (string, error) {
	switch len(s) {
	case 2, 4, 6, 9, 12:
	default:
		return "", fmt.Errorf("grid prefix %q must have 2, 4, 6, 9 or 12 digits", s)
	}
	return s, checkPrefix(s)
}

func checkPrefix(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("grid %q has a non-digit at position %d", s, i+1)
		}
	}
	if !provinces[s[:2]] {
		return fmt.Errorf("grid %q: %q is not a province code", s, s[:2])
	}
	return nil
}

// County returns the 6-digit county (区/县) code.
func (g Grid) County() string { return string(g[:6]) }

// Town returns the 9-digit town (街道/乡镇) code.
func (g Grid) Town() string { return string(g[:9]) }

// Village returns the 12-digit village (社区/村) code.
func (g Grid) Village() string { return string(g) }

// Within reports whether g lies in the area named by prefix.
func (g Grid) Within(prefix string) bool { return strings.HasPrefix(string(g), prefix) }
