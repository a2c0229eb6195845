package sheet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"

	"github.com/firewatch-iot/firewatch/devices"
)

// MaxUpload bounds the size of an imported file (a million device rows
// take about 200 MB of CSV).
const MaxUpload = 512 << 20

// Media types of the files.
const (
	TypeXLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	TypeCSV  = "text/csv"
)

// Routes registers the spreadsheet endpoints of the registry on mux, each
// behind admin, which runs a handler only for a request with the admin
// role and passes it the actor (alarms.Manager.RequireActor(alarms.RoleAdmin, …)):
//
//	GET  /api/v1/registry/template.xlsx  the empty workbook with headers, drop-downs and 说明
//	GET  /api/v1/registry/template.csv   the header row of the devices CSV
//	GET  /api/v1/registry/export.xlsx    the registry in effect, as a workbook
//	GET  /api/v1/registry/export.csv     its devices, as CSV
//	POST /api/v1/registry/import         an XLSX or CSV (raw body or multipart field "file"); ?dry_run=1 validates only
func Routes(mux *http.ServeMux, im *Importer, admin func(h func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc) {
	file := func(name, ctype string, write func(w io.Writer) error) http.HandlerFunc {
		return admin(func(w http.ResponseWriter, r *http.Request, _ string) {
			var buf bytes.Buffer
			if err := write(&buf); err != nil {
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
			w.Header().Set("Cache-Control", "no-store")
			w.Write(buf.Bytes())
		})
	}
	mux.Handle("GET /api/v1/registry/template.xlsx", file("firewatch-registry-template.xlsx", TypeXLSX,
		func(w io.Writer) error { return WriteXLSX(w, nil) }))
	mux.Handle("GET /api/v1/registry/template.csv", file("firewatch-devices-template.csv", TypeCSV+"; charset=utf-8",
		func(w io.Writer) error { return WriteCSV(w, nil) }))
	mux.Handle("GET /api/v1/registry/export.xlsx", file("firewatch-registry.xlsx", TypeXLSX,
		func(w io.Writer) error { return WriteXLSX(w, im.Current().Entries()) }))
	mux.Handle("GET /api/v1/registry/export.csv", file("firewatch-devices.csv", TypeCSV+"; charset=utf-8",
		func(w io.Writer) error { return WriteCSV(w, im.Current().Entries()) }))
	mux.Handle("POST /api/v1/registry/import", admin(im.serveImport))
}

func (im *Importer) serveImport(w http.ResponseWriter, r *http.Request, actor string) {
	dry := false
	switch v := r.URL.Query().Get("dry_run"); v {
	case "", "0", "false":
	case "1", "true":
		dry = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("dry_run=%q: want 1 or 0", v))
		return
	}
	b, f, err := upload(w, r)
	if err != nil {
		status := http.StatusBadRequest
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err)
		return
	}
	res, err := im.Import(r.Context(), actor, f, b, dry)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	// Lists answer [] when empty, never null (docs/api.yaml).
	if res.Problems == nil {
		res.Problems = []Problem{}
	}
	if res.Secrets == nil {
		res.Secrets = []Secret{}
	}
	status := http.StatusOK
	if len(res.Problems) > 0 {
		status = http.StatusUnprocessableEntity
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // it may hold secrets
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(res)
}

// upload reads the imported file from a raw body or from the multipart
// field "file" and tells its format by media type, file name or content.
func upload(w http.ResponseWriter, r *http.Request) ([]byte, Format, error) {
	body := http.MaxBytesReader(w, r.Body, MaxUpload)
	ctype, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	name := ""
	var src io.Reader = body
	if ctype == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil, 0, errors.New(`multipart body without a field "file"`)
			}
			if err != nil {
				return nil, 0, err
			}
			if part.FormName() == "file" {
				ctype, _, _ = mime.ParseMediaType(part.Header.Get("Content-Type"))
				name, src = part.FileName(), part
				break
			}
		}
	}
	b, err := io.ReadAll(src)
	if err != nil {
		return nil, 0, err
	}
	if len(b) == 0 {
		return nil, 0, errors.New("empty file")
	}
	if bytes.HasPrefix(b, []byte{0xD0, 0xCF, 0x11, 0xE0}) {
		return nil, 0, errors.New("an Excel 97-2003 workbook (.xls) or a password-protected one: save it as an Excel workbook (.xlsx) without a password, or as CSV UTF-8")
	}
	return b, format(ctype, name, b), nil
}

func format(ctype, name string, b []byte) Format {
	switch {
	case ctype == TypeXLSX || strings.EqualFold(path.Ext(name), ".xlsx"):
		return XLSX
	case ctype == TypeCSV || ctype == "application/csv" || strings.EqualFold(path.Ext(name), ".csv"):
		return CSV
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return XLSX
	}
	return CSV
}

func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{err.Error()})
}

// LiveCommit is a CommitFunc over a devices.Live without a store: for
// tests and set-ups that keep the registry in memory only.
func LiveCommit(lv *devices.Live) CommitFunc {
	return func(_ context.Context, _ string, c *devices.Change, dryRun bool, _ string) (*devices.Ledger, *devices.Diff, error) {
		if dryRun {
			return lv.Load().Apply(c)
		}
		return lv.Apply(c)
	}
}
