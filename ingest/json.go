package ingest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// scanner is a small strict JSON reader for the fixed payload shapes of the
// v1 contract. It reads in place and does not allocate on the happy path;
// values it does not need are skipped with full validation.
type scanner struct {
	b   []byte
	i   int
	tmp []byte // unescaped key scratch
}

const maxDepth = 32

var (
	errSyntax   = errors.New("invalid JSON")
	errNotFin   = errors.New("value is NaN or infinite")
	errDepth    = errors.New("JSON nested too deep")
	errTrailing = errors.New("data after the JSON object")
	errTooLong  = fmt.Errorf("string longer than %d bytes", MaxString)
)

func (s *scanner) reset(b []byte) { s.b, s.i = b, 0 }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// end checks that only whitespace follows.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return errTrailing
	}
	return nil
}

// object iterates over the members of an object: it calls member with each
// key (valid until the next call); member must consume the value.
func (s *scanner) object(member func(key []byte) error) error {
	if !s.consume('{') {
		return errSyntax
	}
	if s.consume('}') {
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if !s.consume(':') {
			return errSyntax
		}
		if err := member(key); err != nil {
			return err
		}
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			return nil
		}
		return errSyntax
	}
}

// str reads a string and returns its contents, unescaped into scratch space
// when it has escapes.
func (s *scanner) str() ([]byte, error) {
	if !s.consume('"') {
		return nil, errSyntax
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if s.i-1-start > MaxString {
				return nil, errTooLong
			}
			return s.b[start : s.i-1], nil
		case c == '\\':
			s.i = start
			return s.strEscaped()
		case c < 0x20:
			return nil, errSyntax
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, errSyntax
			}
			s.i += n
		default:
			s.i++
		}
	}
	return nil, errSyntax
}

func (s *scanner) strEscaped() ([]byte, error) {
	out := s.tmp[:0]
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			s.tmp = out
			if len(out) > MaxString {
				return nil, errTooLong
			}
			return out, nil
		case c < 0x20:
			return nil, errSyntax
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return nil, errSyntax
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if s.i+4 > len(s.b) {
				return nil, errSyntax
			}
			v, err := strconv.ParseUint(string(s.b[s.i:s.i+4]), 16, 16)
			if err != nil {
				return nil, errSyntax
			}
			s.i += 4
			out = utf8.AppendRune(out, rune(v))
		default:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

// numberBytes reads the bytes of a JSON number, checking its grammar.
func (s *scanner) numberBytes() ([]byte, error) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	intStart := s.i
	n := digits()
	if n == 0 || (n > 1 && s.b[intStart] == '0') {
		return nil, errSyntax
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, errSyntax
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, errSyntax
		}
	}
	return s.b[start:s.i], nil
}

// float reads a number. A literal that overflows to ±Inf is errNotFin; a
// string such as "NaN" or "Infinity" is errNotFin too, so that devices
// sending them are counted under the right reason.
func (s *scanner) float() (float64, error) {
	if s.peek() == '"' {
		v, err := s.str()
		if err != nil {
			return 0, err
		}
		switch string(v) {
		case "NaN", "nan", "Infinity", "-Infinity", "Inf", "+Inf", "-Inf", "inf", "-inf":
			return 0, errNotFin
		}
		return 0, errSyntax
	}
	b, err := s.numberBytes()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, errNotFin
	}
	return f, nil
}

// int reads an integer number in [lo, hi].
func (s *scanner) int(lo, hi int64) (int64, error) {
	b, err := s.numberBytes()
	if err != nil {
		return 0, err
	}
	// numberBytes checked the grammar; an integer is an optional minus and
	// at most 19 digits (so that it fits an int64), with no fraction or
	// exponent. Parsed here: strconv costs a fifth of a whole message.
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, errSyntax
	}
	var u uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, errSyntax // '.', 'e': not an integer
		}
		u = u*10 + uint64(c-'0')
	}
	if u > math.MaxInt64 {
		return 0, errSyntax
	}
	v := int64(u)
	if neg {
		v = -v
	}
	if v < lo || v > hi {
		return 0, errSyntax
	}
	return v, nil
}

func (s *scanner) boolean() (bool, error) {
	s.ws()
	switch {
	case s.lit("true"):
		return true, nil
	case s.lit("false"):
		return false, nil
	}
	return false, errSyntax
}

func (s *scanner) lit(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

// skip reads and discards one value of any type.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return errDepth
	}
	switch s.peek() {
	case '{':
		return s.object(func([]byte) error { return s.skip(depth + 1) })
	case '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case '"':
		_, err := s.str()
		return err
	case 't', 'f':
		_, err := s.boolean()
		return err
	case 'n':
		if s.lit("null") {
			return nil
		}
		return errSyntax
	default:
		_, err := s.numberBytes()
		return err
	}
}

// array iterates over the elements of an array; elem must consume one value.
func (s *scanner) array(elem func() error) error {
	if !s.consume('[') {
		return errSyntax
	}
	if s.consume(']') {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if s.consume(',') {
			continue
		}
		if s.consume(']') {
			return nil
		}
		return errSyntax
	}
}
