package nbiot

import (
	"bytes"
	"encoding/json"
)

// NumberText returns the text of a JSON value that the platforms send as a
// number or as a numeric string: the number's own text, or the string's
// content. empty is true for null and "" (the platforms' "no value").
func NumberText(b []byte) (text []byte, empty bool, err error) {
	if bytes.Equal(b, []byte("null")) {
		return nil, true, nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, false, err
		}
		return []byte(s), s == "", nil
	}
	return b, false, nil
}
