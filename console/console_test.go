package console_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/console"
	apihttp "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
)

const key = "console-test-key-0123456789abcdef"

// stubDriver makes NewHandler serve the test routes (test mode).
type stubDriver struct{}

func (stubDriver) Act(context.Context, string, string, sessions.TestParams) (any, error) {
	return nil, nil
}

// router is the API's router with the console, in test mode or not.
func router(testMode bool) http.Handler {
	opts := apihttp.Options{APIKey: key, Console: console.Handler()}
	if testMode {
		opts.Test = stubDriver{}
	}
	return apihttp.NewHandler(opts)
}

func get(t *testing.T, h http.Handler, method, path string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The page and its files are served at / and under /console/, with the
// security headers; anything else is still a 404, and /api still needs
// the key.
func TestRoutes(t *testing.T) {
	h := router(false)
	for _, tt := range []struct {
		method, path string
		status       int
		contentType  string
		console      bool // answered by the console, with its headers
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", true},
		{"HEAD", "/", 200, "text/html; charset=utf-8", true},
		{"GET", "/console/", 200, "text/html; charset=utf-8", true},
		{"GET", "/console/app.js", 200, "text/javascript; charset=utf-8", true},
		{"GET", "/console/stream.js", 200, "text/javascript; charset=utf-8", true},
		{"GET", "/console/console.css", 200, "text/css; charset=utf-8", true},
		{"GET", "/console/nope.js", 404, "text/plain; charset=utf-8", true},
		{"GET", "/console/../api/whatsapp/sessions/status", 404, "text/plain; charset=utf-8", true},
		{"GET", "/console", 404, "application/json", false},
		{"GET", "/index.html", 404, "application/json", false},
		{"GET", "/nope", 404, "application/json", false},
		{"POST", "/", 405, "application/json", false},
		{"DELETE", "/console/app.js", 405, "application/json", false},
		{"GET", "/api/whatsapp/sessions/status", 401, "application/json", false},
		{"GET", "/api/whatsapp/info", 401, "application/json", false},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := get(t, h, tt.method, tt.path, nil)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.contentType)
			}
			hdr := rec.Header()
			if !tt.console {
				if hdr.Get("Content-Security-Policy") != "" {
					t.Error("an API answer carries the console's CSP")
				}
				return
			}
			for name, want := range map[string]string{
				"Content-Security-Policy": console.ContentSecurityPolicy,
				"X-Frame-Options":         "DENY",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
			} {
				if got := hdr.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if tt.status == 200 && (hdr.Get("Cache-Control") != "no-cache" || hdr.Get("ETag") == "") {
				t.Errorf("Cache-Control %q, ETag %q: want no-cache with an ETag", hdr.Get("Cache-Control"), hdr.Get("ETag"))
			}
		})
	}
}

// The CSP is the strict one, word for word: nothing but the page's own
// origin, blob: and data: images for the QR code, no framing.
func TestContentSecurityPolicy(t *testing.T) {
	want := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	if console.ContentSecurityPolicy != want {
		t.Errorf("CSP %q, want %q", console.ContentSecurityPolicy, want)
	}
}

// An unchanged file costs a 304.
func TestRevalidation(t *testing.T) {
	h := router(false)
	first := get(t, h, "GET", "/console/app.js", nil)
	etag := first.Header().Get("ETag")
	again := get(t, h, "GET", "/console/app.js", http.Header{"If-None-Match": {etag}})
	if again.Code != http.StatusNotModified {
		t.Errorf("If-None-Match %s: %d, want 304", etag, again.Code)
	}
	if get(t, h, "GET", "/", nil).Header().Get("ETag") == etag {
		t.Error("the page and app.js have the same ETag")
	}
}

// GET /api/whatsapp/info says whether the service is in test mode.
func TestInfo(t *testing.T) {
	for _, testMode := range []bool{false, true} {
		rec := get(t, router(testMode), "GET", "/api/whatsapp/info", http.Header{"Authorization": {"Bearer " + key}})
		var info sessions.Info
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &info) != nil || info.TestMode != testMode {
			t.Errorf("test mode %v: %d %s", testMode, rec.Code, rec.Body)
		}
	}
}

// The files hold no inline script or style, fetch nothing from another
// origin, and never put the key anywhere but the Authorization header:
// never in a URL, a cookie, localStorage or the console log.
func TestStaticFiles(t *testing.T) {
	root := "static"
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[strings.TrimPrefix(p, root+"/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	html := files["index.html"]
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // inline script
		regexp.MustCompile(`\sstyle=`),                      // a style attribute
		regexp.MustCompile(`<style`),                        // a style element
		regexp.MustCompile(`\son[a-z]+=`),                   // an event handler attribute
		regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),  // another origin
	} {
		if m := bad.FindString(html); m != "" {
			t.Errorf("index.html: %q", m)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, ` src="/console/`) {
			t.Errorf("index.html: a script not loaded from the console's files: %s", tag)
		}
	}
	for name, body := range files {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		for _, bad := range []string{"console.log", "console.error", "console.warn", "console.info", "console.debug",
			"localStorage", "document.cookie", "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function",
			"http://", "https://", "?key=", "&key=", "?token=", ".style."} {
			if strings.Contains(body, bad) {
				t.Errorf("%s uses %q", name, bad)
			}
		}
	}
	// Every file the page links is served.
	h := router(false)
	for _, m := range regexp.MustCompile(`(?:src|href)="(/console/[^"]+)"`).FindAllStringSubmatch(html, -1) {
		if rec := get(t, h, "GET", m[1], nil); rec.Code != 200 {
			t.Errorf("the page links %s, which answers %d", m[1], rec.Code)
		}
	}
	for name, body := range files {
		for _, m := range regexp.MustCompile(`from '\./([^']+)'`).FindAllStringSubmatch(body, -1) {
			if _, ok := files[m[1]]; !ok {
				t.Errorf("%s imports %s, which is not there", name, m[1])
			}
		}
	}
	rec := get(t, h, "GET", "/", nil)
	body, _ := io.ReadAll(rec.Body)
	if string(body) != html {
		t.Error("/ does not serve index.html")
	}
}

// The console's lists follow the service's: its states are sessions.States
// in order, it has a sentence for every user action, and each test-mode
// button names one of testmode.Actions.
func TestListsFollowTheService(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("static", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	fleet := read("fleet.js")
	m := regexp.MustCompile(`(?s)export const STATES = \[(.*?)\];`).FindStringSubmatch(fleet)
	if m == nil {
		t.Fatal("fleet.js has no STATES list")
	}
	var states []string
	for _, q := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(m[1], -1) {
		states = append(states, q[1])
	}
	var want []string
	for _, s := range sessions.States {
		want = append(want, string(s))
	}
	if !slices.Equal(states, want) {
		t.Errorf("fleet.js STATES %v, want sessions.States %v", states, want)
	}
	for _, a := range sessions.UserActions {
		if !strings.Contains(fleet, "case '"+string(a)+"':") {
			t.Errorf("fleet.js has no sentence for the user action %s", a)
		}
	}
	html := read("index.html")
	buttons := regexp.MustCompile(`data-test="([a-z-]+)"`).FindAllStringSubmatch(html, -1)
	if len(buttons) == 0 {
		t.Fatal("index.html has no test-mode buttons")
	}
	for _, b := range buttons {
		if !slices.Contains(testmode.Actions, b[1]) {
			t.Errorf("index.html's test-mode button %q is not one of testmode.Actions %v", b[1], testmode.Actions)
		}
	}
	for _, a := range []string{"scan", "unlink", "ban", "drop", "replace", "outdated", "panic"} {
		if !strings.Contains(html, `data-test="`+a+`"`) {
			t.Errorf("index.html has no button for the phone's action %s", a)
		}
	}
}
