// Package console is the operator console: a few static files (HTML, CSS
// and ES modules, no build step, no framework) embedded in the binary and
// served at / and /console/. The console runs in the operator's browser:
// it asks for the API key once, keeps it in the tab's sessionStorage and
// sends it in the Authorization header of every call to the API, which
// does all the work; this package only serves the files, with headers that
// let the browser run nothing but them (a strict Content-Security-Policy,
// no framing, no sniffing, no referrer).
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy lets the page load its own scripts, styles and
// images and call its own origin, and nothing else: no inline script or
// style, no plugin, no form posting elsewhere, no framing. img-src allows
// blob: for the QR code, which the console fetches with its key and shows
// from a blob URL.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes are the types of the files the console has, set explicitly
// so that the answer never depends on the machine's MIME tables (a module
// script served with another type is refused under nosniff).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// file is one embedded file, ready to serve.
type file struct {
	name, contentType, etag string
	body                    []byte
}

// Handler serves the console: GET or HEAD of / answers the page, /{file}
// one of its files, any other path 404. The API's router mounts it at / and,
// without the prefix, under /console/, where the page links its files.
// Every answer carries the security headers, even a 404. Files are
// revalidated on each load (Cache-Control: no-cache with a strong ETag of
// their content), so an upgraded service never runs a stale script and an
// unchanged one costs a 304.
func Handler() http.Handler {
	files := map[string]*file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		name := strings.TrimPrefix(p, "static/")
		files[name] = &file{name: name, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, body: body}
		return nil
	})
	if err != nil {
		// The files are compiled in: this cannot fail at run time.
		panic("console: read embedded files: " + err.Error())
	}
	index := files["index.html"]
	if index == nil {
		panic("console: index.html is not embedded")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
			return
		}
		f := index
		if r.URL.Path != "/" {
			if f = files[strings.TrimPrefix(r.URL.Path, "/")]; f == nil {
				h.Set("Cache-Control", "no-store")
				http.Error(w, "404 not found: the console is at /", http.StatusNotFound)
				return
			}
		}
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}
