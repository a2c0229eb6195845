package sheet

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/xuri/excelize/v2"
)

// MaxProblems caps the problems an import reports: past it, one more
// problem says how many were left out.
const MaxProblems = 1000

// Problem is one mistake of an import, located as a spreadsheet program
// shows it: the sheet, the 1-based row number and the column's letter and
// header. Row 0 is the sheet (or file) as a whole; an empty Column is the
// whole row.
type Problem struct {
	Sheet  string `json:"sheet"`
	Row    int    `json:"row"`
	Column string `json:"column"`
	Header string `json:"header"`
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Sheet)
	if p.Row > 0 {
		fmt.Fprintf(&b, " 第%d行", p.Row)
	}
	if p.Column != "" {
		fmt.Fprintf(&b, " %s列(%s)", p.Column, p.Header)
	}
	b.WriteString(": ")
	b.WriteString(p.Reason)
	return b.String()
}

// ProblemsError is the error of an import with problems: it lists them all.
type ProblemsError struct{ Problems []Problem }

func (e *ProblemsError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

// rowSource yields the rows of a sheet in order; row is the 1-based row
// number a spreadsheet program shows. It returns io.EOF after the last.
type rowSource interface {
	next() (row int, cells []string, err error)
}

// colRef is where a field's column is in a sheet.
type colRef struct{ letter, header string }

// locator finds the row and column of an entry of a section, to place the
// problems that ledger validation reports.
type locator struct {
	sheet   string
	byID    map[string]int // id → row
	upserts []int          // rows, in the order of the Change's Upsert slice
	deletes []int          // rows, in the order of the Change's Delete slice
	cols    map[string]colRef
}

// Parsed is a spreadsheet read into a change of the registry.
type Parsed struct {
	Change   devices.Change
	Problems []Problem
	// Generate lists, per section ("devices", "gateways"), the ids that
	// asked for a new secret (生成密钥 = 是).
	Generate map[string][]string
	loc      map[string]*locator // by section
	dropped  int
	badRows  map[string]map[int]bool // sheet → rows with a problem of the sheet
}

// parser reads sheets into a Parsed. cur is the registry the change will
// apply to (nil: empty): a column a sheet lacks keeps an existing entry's
// value, and an empty 密钥哈希 keeps its secret hash.
type parser struct {
	out   *Parsed
	cur   *devices.Ledger
	exact bool // cell values are exact (XLSX raw values), not as displayed (CSV)
	hint  int  // about how many rows the next sheet has (0: unknown), to size slices and maps once
	ents  *devices.Entries
}

func newParser(cur *devices.Ledger, exact bool) *parser {
	return &parser{cur: cur, exact: exact, out: &Parsed{Generate: map[string][]string{}, loc: map[string]*locator{}, badRows: map[string]map[int]bool{}}}
}

func (p *parser) bad(sheet string, row int, c colRef, format string, args ...any) {
	if p.out.badRows[sheet] == nil {
		p.out.badRows[sheet] = map[int]bool{}
	}
	p.out.badRows[sheet][row] = true
	if len(p.out.Problems) >= MaxProblems {
		p.out.dropped++
		return
	}
	p.out.Problems = append(p.out.Problems, Problem{Sheet: sheet, Row: row, Column: c.letter, Header: c.header, Reason: fmt.Sprintf(format, args...)})
}

// entries returns the current registry as plain data, made once.
func (p *parser) entries() *devices.Entries {
	if p.ents == nil {
		if p.cur == nil {
			p.ents = &devices.Entries{}
		} else {
			p.ents = p.cur.Entries()
		}
	}
	return p.ents
}

// finish sorts the problems by sheet, row and column and notes those left out.
func (p *parser) finish() *Parsed {
	sortProblems(p.out.Problems)
	if p.out.dropped > 0 {
		p.out.Problems = append(p.out.Problems, p.out.more())
	}
	return p.out
}

func (p *Parsed) more() Problem {
	return Problem{Reason: fmt.Sprintf("%d more problems not shown: fix those above and import again", p.dropped)}
}

func sortProblems(ps []Problem) {
	order := map[string]int{SheetDevices: 1, SheetGateways: 2, SheetStations: 3, SheetPlaces: 4}
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(order[a.Sheet], order[b.Sheet]), cmp.Compare(a.Sheet, b.Sheet), cmp.Compare(a.Row, b.Row),
			cmp.Compare(len(a.Column), len(b.Column)), cmp.Compare(a.Column, b.Column))
	})
}

// sound returns p without the upserts of rows that have problems of the
// sheet, for the registry's validation to find the problems of the rest
// in the same pass.
func (p *Parsed) sound() *Parsed {
	q := &Parsed{loc: map[string]*locator{}, Generate: p.Generate}
	c, qc := &p.Change, &q.Change
	qc.Places, qc.DeleteDevices, qc.DeleteGateways, qc.DeleteStations = c.Places, c.DeleteDevices, c.DeleteGateways, c.DeleteStations
	for section, loc := range p.loc {
		l := *loc
		l.upserts = nil
		q.loc[section] = &l
	}
	keep := func(section string, i int) bool {
		loc := p.loc[section]
		if p.badRows[loc.sheet][loc.upserts[i]] {
			return false
		}
		q.loc[section].upserts = append(q.loc[section].upserts, loc.upserts[i])
		return true
	}
	for i := range c.UpsertDevices {
		if keep("devices", i) {
			qc.UpsertDevices = append(qc.UpsertDevices, c.UpsertDevices[i])
		}
	}
	for i := range c.UpsertGateways {
		if keep("gateways", i) {
			qc.UpsertGateways = append(qc.UpsertGateways, c.UpsertGateways[i])
		}
	}
	for i := range c.UpsertStations {
		if keep("stations", i) {
			qc.UpsertStations = append(qc.UpsertStations, c.UpsertStations[i])
		}
	}
	return q
}

func letter(i int) string {
	s, _ := excelize.ColumnNumberToName(i + 1)
	return s
}

func yes(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "", "否", "no", "n", "false", "0":
		return false, true
	case "是", "yes", "y", "true", "1":
		return true, true
	}
	return false, false
}

// operation reads an 操作 cell: delete or not; ok false for an unknown word.
func operation(v string) (del, ok bool) {
	switch strings.ToLower(v) {
	case "", "新增", "修改", "新增或修改", "保存", "更新", "upsert", "add", "update":
		return false, true
	case "删除", "delete", "remove":
		return true, true
	}
	return false, false
}

// parseSheet reads one sheet of entries T from src into the change through
// emit (an upsert) and del (a deletion). existing returns the current entry
// with an id (for columns the sheet lacks); hash points at an entry's
// secret hash and curHash returns the current one of an id (nil both for
// entries without secrets); check, if not nil, finds what the sheet can
// say better than the registry's validation (column key and reason).
func parseSheet[T any](p *parser, sp *spec[T], src rowSource, existing func(id string) (T, bool),
	hash func(e *T) *string, curHash func(id string) string, check func(e *T) (key, msg string), emit func(e T), del func(id string)) error {
	// The header is the first row that names the id column (设备编号),
	// among the first few rows that are not empty: a title row above it
	// (“柳南区电气火灾监控设备台账”, often merged across) is skipped. With none,
	// the first row that is not empty is taken, and its headers reported.
	isID := func(h string) bool {
		h = strings.TrimSpace(h)
		return h == sp.cols[0].header || strings.EqualFold(h, sp.cols[0].key) || slices.Contains(sp.cols[0].aliases, h)
	}
	var lead []bufRow
	hdr := -1
	for len(lead) < maxTitleRows && hdr < 0 {
		row, cells, err := src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if blank(cells) {
			continue
		}
		lead = append(lead, bufRow{row, slices.Clone(cells)})
		if slices.ContainsFunc(cells, isID) {
			hdr = len(lead) - 1
		}
	}
	if len(lead) == 0 {
		p.bad(sp.sheet, 0, colRef{}, "the sheet is empty: its first row must be the column headers of the template")
		return nil
	}
	if hdr < 0 {
		hdr = 0
	}
	hrow, header := lead[hdr].row, lead[hdr].cells
	if rest := lead[hdr+1:]; len(rest) > 0 {
		src = &replay{rows: rest, then: src}
	}
	loc := &locator{sheet: sp.sheet, byID: make(map[string]int, p.hint), upserts: make([]int, 0, p.hint), cols: map[string]colRef{}}
	p.out.loc[sp.section] = loc
	at := make([]int, len(sp.cols)) // column index of each spec column, -1 absent
	for i := range at {
		at[i] = -1
	}
	for j, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		c := colRef{letter(j), h}
		k := slices.IndexFunc(sp.cols, func(c column[T]) bool {
			return h == c.header || strings.EqualFold(h, c.key) || slices.Contains(c.aliases, h)
		})
		switch {
		case k < 0:
			p.bad(sp.sheet, hrow, c, "unknown column %q: the template's columns are %s", h, headers(sp))
		case at[k] >= 0:
			p.bad(sp.sheet, hrow, c, "column %q appears twice (first at %s)", h, letter(at[k]))
		default:
			at[k] = j
			loc.cols[sp.cols[k].key] = colRef{letter(j), sp.cols[k].header}
		}
	}
	if at[0] < 0 {
		p.bad(sp.sheet, hrow, colRef{}, "required column %s is missing", sp.cols[0].header)
		return nil
	}
	complete := true // every field has its column
	for k, c := range sp.cols {
		if c.set != nil && at[k] < 0 {
			complete = false
		}
	}
	cell := func(cells []string, k int) string {
		if at[k] < 0 || at[k] >= len(cells) {
			return ""
		}
		return strings.TrimSpace(cells[at[k]])
	}
	ref := func(k int) colRef { return colRef{letter(at[k]), sp.cols[k].header} }
	kOp := slices.IndexFunc(sp.cols, func(c column[T]) bool { return c.key == keyOp })
	kGen := slices.IndexFunc(sp.cols, func(c column[T]) bool { return c.key == keyGen })
	kHash := slices.IndexFunc(sp.cols, func(c column[T]) bool { return c.key == "secret_hash" })
	var zero T
	e := new(T) // one for every row: emit copies it
	for {
		row, cells, err := src.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if blank(cells) {
			continue
		}
		id := cell(cells, 0)
		if !p.exact {
			id = undefuse(id)
		}
		if id == "" {
			p.bad(sp.sheet, row, ref(0), "%s is empty", sp.cols[0].header)
			continue
		}
		if sp.cols[0].text && sciNumber(id) {
			if v, ok := integral(id); ok && p.exact {
				id = v
			}
		}
		if first, dup := loc.byID[id]; dup {
			p.bad(sp.sheet, row, ref(0), "%s %s appears twice in the file (first at row %d)", sp.cols[0].header, id, first)
			continue
		}
		loc.byID[id] = row
		var isDel bool
		if kOp >= 0 {
			var ok bool
			if isDel, ok = operation(cell(cells, kOp)); !ok {
				p.bad(sp.sheet, row, ref(kOp), "%s %q is not 删除, 新增 or 修改 (blank: add or change)", sp.cols[kOp].header, cell(cells, kOp))
				continue
			}
		}
		if isDel {
			loc.deletes = append(loc.deletes, row)
			del(id)
			continue
		}
		*e = zero
		if !complete {
			*e, _ = existing(id)
		}
		for k := 1; k < len(sp.cols); k++ {
			c := &sp.cols[k]
			if c.set == nil || at[k] < 0 {
				continue
			}
			v := cell(cells, k)
			if c.raw && at[k] < len(cells) && v != "" {
				v = cells[at[k]]
			}
			if !p.exact {
				v = undefuse(v)
			}
			if c.text && sciNumber(v) {
				w, ok := integral(v)
				if !ok || !p.exact {
					p.bad(sp.sheet, row, ref(k), "%s %s was shortened to a number in scientific notation: format the column as text and type it again", c.header, v)
					continue
				}
				v = w
			}
			if err := c.set(e, v); err != nil {
				p.bad(sp.sheet, row, ref(k), "%s: %v", c.header, err)
			}
		}
		if err := sp.cols[0].set(e, id); err != nil {
			p.bad(sp.sheet, row, ref(0), "%v", err)
		}
		if kGen >= 0 && at[kGen] >= 0 {
			g, ok := yes(cell(cells, kGen))
			if !ok {
				p.bad(sp.sheet, row, ref(kGen), "%s %q is not 是 or 否", sp.cols[kGen].header, cell(cells, kGen))
			} else if g {
				p.out.Generate[sp.section] = append(p.out.Generate[sp.section], id)
			}
		}
		if hash != nil && kHash >= 0 && at[kHash] >= 0 && *hash(e) == "" {
			// An empty 密钥哈希 keeps the secret the entry has.
			*hash(e) = curHash(id)
		}
		if check != nil {
			if key, msg := check(e); msg != "" {
				p.bad(sp.sheet, row, loc.cols[key], "%s", msg)
			}
		}
		loc.upserts = append(loc.upserts, row)
		emit(*e)
	}
}

func headers[T any](sp *spec[T]) string {
	h := make([]string, len(sp.cols))
	for i, c := range sp.cols {
		h[i] = c.header
	}
	return strings.Join(h, ", ")
}

func blank(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// existingDevice, existingGateway, … look an id up in the current registry.
func (p *parser) existingDevice() func(id string) (devices.DeviceEntry, bool) {
	var m map[string]int
	return func(id string) (devices.DeviceEntry, bool) {
		if p.cur == nil {
			return devices.DeviceEntry{}, false
		}
		if _, ok := p.cur.LookupID(id); !ok {
			return devices.DeviceEntry{}, false
		}
		e := p.entries()
		if m == nil {
			m = make(map[string]int, len(e.Devices))
			for i := range e.Devices {
				m[e.Devices[i].ID] = i
			}
		}
		i, ok := m[id]
		if !ok {
			return devices.DeviceEntry{}, false
		}
		return e.Devices[i], true
	}
}

func (p *parser) existingGateway() func(id string) (devices.GatewayEntry, bool) {
	return func(id string) (devices.GatewayEntry, bool) {
		if p.cur == nil || p.cur.Gateways[id] == nil {
			return devices.GatewayEntry{}, false
		}
		g := p.cur.Gateways[id]
		return devices.GatewayEntry{ID: g.ID, SecretHash: g.SecretHash}, true
	}
}

func (p *parser) existingStation() func(id string) (devices.StationEntry, bool) {
	return func(id string) (devices.StationEntry, bool) {
		if p.cur == nil {
			return devices.StationEntry{}, false
		}
		s := p.cur.Station(id)
		if s == nil {
			return devices.StationEntry{}, false
		}
		return devices.StationEntry{ID: s.ID, Name: s.Name, Grids: slices.Clone(s.Grids), Endpoint: s.Endpoint, Lat: s.Lat, Lon: s.Lon}, true
	}
}

func (p *parser) existingPlace() func(code string) (place, bool) {
	return func(code string) (place, bool) {
		if p.cur == nil {
			return place{}, false
		}
		n, ok := p.cur.Places[code]
		return place{code, n}, ok
	}
}

// devicesSheet, … read one sheet of each section into the change.
func (p *parser) devicesSheet(src rowSource) error {
	c := &p.out.Change
	if c.UpsertDevices == nil && p.hint > 0 {
		c.UpsertDevices = make([]devices.DeviceEntry, 0, p.hint)
	}
	return parseSheet(p, &deviceSpec, src, p.existingDevice(),
		func(e *devices.DeviceEntry) *string { return &e.SecretHash },
		func(id string) string {
			if p.cur != nil {
				if d, ok := p.cur.LookupID(id); ok {
					return d.SecretHash
				}
			}
			return ""
		},
		func(e *devices.DeviceEntry) (string, string) {
			if _, ok := p.out.loc["devices"].cols["nbiot.responsible"]; !ok {
				responsibleFromContact(e)
			}
			return checkDevice(e)
		},
		func(e devices.DeviceEntry) { c.UpsertDevices = append(c.UpsertDevices, e) },
		func(id string) { c.DeleteDevices = append(c.DeleteDevices, id) })
}

func (p *parser) gatewaysSheet(src rowSource) error {
	c := &p.out.Change
	return parseSheet(p, &gatewaySpec, src, p.existingGateway(),
		func(e *devices.GatewayEntry) *string { return &e.SecretHash },
		func(id string) string {
			if p.cur != nil && p.cur.Gateways[id] != nil {
				return p.cur.Gateways[id].SecretHash
			}
			return ""
		},
		nil,
		func(e devices.GatewayEntry) { c.UpsertGateways = append(c.UpsertGateways, e) },
		func(id string) { c.DeleteGateways = append(c.DeleteGateways, id) })
}

func (p *parser) stationsSheet(src rowSource) error {
	c := &p.out.Change
	return parseSheet(p, &stationSpec, src, p.existingStation(), nil, nil, nil,
		func(e devices.StationEntry) { c.UpsertStations = append(c.UpsertStations, e) },
		func(id string) { c.DeleteStations = append(c.DeleteStations, id) })
}

func (p *parser) placesSheet(src rowSource) error {
	c := &p.out.Change
	sheetRows := func() *locator { return p.out.loc["places"] }
	return parseSheet(p, &placeSpec, src, p.existingPlace(), nil, nil, nil,
		func(e place) {
			if c.Places == nil {
				c.Places = map[string]string{}
			}
			if e.Name == "" {
				loc := sheetRows()
				p.bad(SheetPlaces, loc.byID[e.Code], loc.cols["name"], "名称 is empty (to delete the code, write 删除 in 操作)")
				return
			}
			c.Places[e.Code] = e.Name
		},
		func(code string) {
			if c.Places == nil {
				c.Places = map[string]string{}
			}
			c.Places[code] = ""
		})
}

// checkDevice: the registry keeps a mobile to notify and that notice's
// responsible person (NB-IoT责任人) only in a device's NB-IoT binding
// (GB/T 45839 5.10.4); on a device without one the registry's reason
// ("nbiot: set imei…") would puzzle whoever filled them in, so the sheet
// says it plainly. (责任人 itself is the device's contact, for every device.)
func checkDevice(e *devices.DeviceEntry) (string, string) {
	n := e.NBIoT
	if (n.Responsible != "" || n.Mobile != "") && n.IMEI == "" && n.PlatformID == "" && n.Serial == "" {
		key := "nbiot.responsible"
		if n.Responsible == "" {
			key = "nbiot.mobile"
		}
		return key, "NB-IoT责任人 and 通知手机 are kept only for NB-IoT devices (fill IMEI, 平台设备ID or 身份标识码); for other devices leave them empty and put the person in 责任人 and the phone in 联系电话"
	}
	return "", ""
}

// responsibleFromContact fills an NB-IoT device's binding responsible
// person from its 责任人 when the sheet has no NB-IoT责任人 column: a county
// sheet with the template's 责任人 alone (and a sheet exported before the
// contact existed, when 责任人 was the binding's) names the person the
// GB/T 45839 notice goes to as well.
func responsibleFromContact(e *devices.DeviceEntry) {
	n := &e.NBIoT
	if n.Responsible == "" && e.Contact != "" && (n.IMEI != "" || n.PlatformID != "" || n.Serial != "") {
		n.Responsible = e.Contact
	}
}

// maxTitleRows is how many rows that are not empty may come before (and
// including) the header row.
const maxTitleRows = 5

type bufRow struct {
	row   int
	cells []string
}

// replay yields rows read ahead, then the rest of its source.
type replay struct {
	rows []bufRow
	then rowSource
}

func (r *replay) next() (int, []string, error) {
	if len(r.rows) > 0 {
		b := r.rows[0]
		r.rows = r.rows[1:]
		return b.row, b.cells, nil
	}
	return r.then.next()
}
