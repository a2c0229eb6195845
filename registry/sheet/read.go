package sheet

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ParseCSV reads a CSV of devices (the 设备 sheet's columns) into a change
// of cur, the registry it will apply to (nil: an empty one). The text may be
// UTF-8, with or without the byte order mark Excel writes, or GB18030 (GBK),
// as Chinese Excel saves “CSV (逗号分隔)”. Every problem is in the result's
// Problems, located at sheet 设备.
func ParseCSV(b []byte, cur *devices.Ledger) *Parsed {
	p := newParser(cur, false)
	text, err := decodeText(b)
	if err != nil {
		p.bad(SheetDevices, 0, colRef{}, "%v", err)
		return p.finish()
	}
	p.hint = bytes.Count(text, []byte{'\n'})
	r := csv.NewReader(bytes.NewReader(text))
	r.Comma = delimiter(text)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	src := &csvSource{r: r}
	if err := p.devicesSheet(src); err != nil {
		row := src.n + 1
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		p.bad(SheetDevices, row, colRef{}, "unreadable CSV: %v (the rows after it were not read)", err)
	}
	return p.finish()
}

type csvSource struct {
	r *csv.Reader
	n int // records read: the row a spreadsheet shows
}

func (s *csvSource) next() (int, []string, error) {
	rec, err := s.r.Read()
	if err != nil {
		return 0, nil, err
	}
	s.n++
	return s.n, rec, nil
}

// decodeText returns b as UTF-8 without a byte order mark: b itself when it
// is valid UTF-8, else b decoded as GB18030 (which covers GBK and GB2312).
func decodeText(b []byte) ([]byte, error) {
	if bytes.HasPrefix(b, []byte{0xFF, 0xFE}) || bytes.HasPrefix(b, []byte{0xFE, 0xFF}) {
		return nil, errors.New("the file is UTF-16 text: save it as “CSV UTF-8 (逗号分隔)” or as an Excel workbook (.xlsx)")
	}
	b = bytes.TrimPrefix(b, utf8BOM)
	if utf8.Valid(b) {
		return b, nil
	}
	u, err := simplifiedchinese.GB18030.NewDecoder().Bytes(b)
	if err != nil || bytes.ContainsRune(u, utf8.RuneError) {
		return nil, errors.New("the file is neither UTF-8 nor GB18030 (GBK) text: save it as “CSV UTF-8 (逗号分隔)”")
	}
	return u, nil
}

// delimiter guesses the field separator from the first line: a comma,
// unless the line has none but has tabs (Excel's “文本文件(制表符分隔)”) or
// semicolons (Excel in locales with a decimal comma).
func delimiter(text []byte) rune {
	line := text
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		line = text[:i]
	}
	switch {
	case bytes.IndexByte(line, ',') >= 0:
		return ','
	case bytes.IndexByte(line, '\t') >= 0:
		return '\t'
	case bytes.IndexByte(line, ';') >= 0:
		return ';'
	}
	return ','
}

// ParseXLSX reads a workbook into a change of cur (nil: an empty
// registry). Its sheets are named as the template's (设备, 网关, 微型消防站,
// 行政区划; 说明 is skipped); a workbook of a single sheet with another name
// is read as the devices. Every problem is in the result's Problems.
func ParseXLSX(b []byte, cur *devices.Ledger) *Parsed {
	p := newParser(cur, true)
	f, err := excelize.OpenReader(bytes.NewReader(b), excelize.Options{UnzipSizeLimit: maxUnzip})
	if err != nil {
		p.bad("", 0, colRef{}, "not an Excel workbook (.xlsx): %v", err)
		return p.finish()
	}
	defer f.Close()
	names := f.GetSheetList()
	seen := map[string]string{}
	for _, name := range names {
		section := sheetSection(strings.TrimSpace(name))
		if section == "" && len(names) == 1 {
			section = "devices"
		}
		switch section {
		case "":
			p.bad(name, 0, colRef{}, "unknown sheet %q: the sheets are %s, %s, %s, %s and %s", name, SheetDevices, SheetGateways, SheetStations, SheetPlaces, SheetHelp)
			continue
		case "help":
			continue
		}
		if first, dup := seen[section]; dup {
			p.bad(name, 0, colRef{}, "sheet %q repeats sheet %q", name, first)
			continue
		}
		seen[section] = name
		rows, err := f.Rows(name)
		if err != nil {
			p.bad(name, 0, colRef{}, "unreadable sheet: %v", err)
			continue
		}
		src := &xlsxSource{rows: rows}
		switch section {
		case "devices":
			err = p.devicesSheet(src)
		case "gateways":
			err = p.gatewaysSheet(src)
		case "stations":
			err = p.stationsSheet(src)
		case "places":
			err = p.placesSheet(src)
		}
		rows.Close()
		if err != nil {
			p.bad(name, src.n, colRef{}, "unreadable row: %v (the rows after it were not read)", err)
		}
	}
	return p.finish()
}

// sheetSection returns the registry section a sheet name holds, "help"
// for the instructions, "" for an unknown name.
func sheetSection(name string) string {
	switch strings.ToLower(name) {
	case SheetDevices, "devices":
		return "devices"
	case SheetGateways, "gateways":
		return "gateways"
	case SheetStations, "stations", "微型站":
		return "stations"
	case SheetPlaces, "places":
		return "places"
	case SheetHelp, "help":
		return "help"
	}
	return ""
}

type xlsxSource struct {
	rows *excelize.Rows
	n    int
}

func (s *xlsxSource) next() (int, []string, error) {
	if !s.rows.Next() {
		if err := s.rows.Error(); err != nil {
			return 0, nil, err
		}
		return 0, nil, io.EOF
	}
	s.n++
	cells, err := s.rows.Columns(excelize.Options{RawCellValue: true})
	if err != nil {
		return 0, nil, fmt.Errorf("row %d: %w", s.n, err)
	}
	return s.n, cells, nil
}

// maxUnzip bounds the unpacked size of a workbook: a million devices take
// a few hundred megabytes of sheet XML.
const maxUnzip = 4 << 30
