package gb26875

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// DescLen is the length of a component description (部件说明), GB 18030 text.
const DescLen = 31

// Text decodes GB 18030 text from a description or configuration field to UTF-8, appended to dst. The
// standard defines no padding: the text ends at the first 0x00 (senders pad with 0x00, some C senders leave
// garbage after a terminator), and trailing spaces are trimmed (others pad with spaces). Bytes that are not
// GB 18030 become U+FFFD rather than an error, so a damaged description never hides the alarm it labels.
func Text(dst, raw []byte) []byte {
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i]
	}
	raw = bytes.TrimRight(raw, " ")
	ascii := true
	for _, c := range raw {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return append(dst, raw...)
	}
	out, err := simplifiedchinese.GB18030.NewDecoder().Bytes(raw)
	if err != nil { // the decoder replaces invalid bytes; an error here is not expected
		return append(dst, "\uFFFD"...)
	}
	return append(dst, out...)
}

// PutText encodes s as GB 18030 into field, padded with 0x00. Text that does not fit is cut at a character
// boundary (never inside a multi-byte character); it returns an error for text GB 18030 cannot encode.
func PutText(field []byte, s string) error {
	clear(field)
	enc := simplifiedchinese.GB18030.NewEncoder()
	n := 0
	for _, r := range s {
		b, err := enc.String(string(r))
		if err != nil {
			return fmt.Errorf("gb26875: encode %q as GB 18030: %w", s, err)
		}
		if n+len(b) > len(field) {
			break
		}
		n += copy(field[n:], b)
	}
	return nil
}
