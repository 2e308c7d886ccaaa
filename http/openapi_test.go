package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// These tests keep openapi.json honest: every route the router serves is
// documented and every documented operation exists, with the right
// security, resolvable references, and schemas that match the Go types the
// handlers encode.

const testKey = "openapi-test-key-0123456789abcdef"

// publicPaths are the routes that need no key; every other one is under
// /api, or is /metrics (it names every session).
var publicPaths = map[string]bool{"/healthz": true, "/readyz": true, "/openapi.json": true}

// consolePaths are the operator console's pages and files: a web page, not
// the API, so openapi.json does not describe them (console/ tests them).
var consolePaths = map[string]bool{"/": true, "/console/": true}

// needsKey reports whether the route at path needs the API key.
func needsKey(path string) bool { return strings.HasPrefix(path, "/api/") || path == "/metrics" }

// stubDriver makes NewHandler register the test-mode route; these tests
// never reach it with a key.
type stubDriver struct{}

func (stubDriver) Act(context.Context, string, string, sessions.TestParams) (any, error) {
	return map[string]string{"action": "stub", "done": "nothing"}, nil
}

var _ sessions.TestDriver = stubDriver{}

// stubDeliveries makes NewHandler register the deliveries routes.
type stubDeliveries struct{ sessions.Deliveries }

// fakeSessions answers the calls these tests make. Any other call hits the
// nil embedded interface and panics, which would mean a request got further
// than the test meant it to.
type fakeSessions struct{ sessions.Service }

func (fakeSessions) Restore(context.Context, []string) error { return nil }
func (fakeSessions) Ping(context.Context) error              { return nil }

// fakeMessenger makes NewHandler register the message routes; like
// fakeSessions, a call these tests do not mean to make panics.
type fakeMessenger struct{ sessions.Messenger }

// newRouter builds the handler with every optional route switched on.
func newRouter(t *testing.T) *mux.Router {
	t.Helper()
	h := api.NewHandler(api.Options{
		Sessions: fakeSessions{},
		APIKey:   testKey,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = io.WriteString(w, "# no metrics in this test\n")
		}),
		OpenAPI:    api.OpenAPI(),
		Test:       stubDriver{},
		Messenger:  fakeMessenger{},
		Deliveries: stubDeliveries{},
		Console:    http.NotFoundHandler(),
		Events:     events.New(events.Options{}),
	})
	r, ok := h.(*mux.Router)
	if !ok {
		t.Fatalf("NewHandler returned %T, want *mux.Router", h)
	}
	return r
}

// operation is one method on one path template, written as OpenAPI writes
// it ({senderId}, not {senderId:[^/]*}).
type operation struct {
	path, method string
}

func (o operation) String() string { return strings.ToUpper(o.method) + " " + o.path }

// varPattern matches a mux variable with its pattern, such as {senderId:[^/]*}.
var varPattern = regexp.MustCompile(`\{([A-Za-z0-9_]+):[^}]*\}`)

// routerOperations walks the router and lists every (path, method) it serves.
func routerOperations(t *testing.T, r *mux.Router) map[operation]bool {
	t.Helper()
	ops := map[operation]bool{}
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil // not a path route
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // a subrouter's prefix, which serves nothing itself
		}
		path := varPattern.ReplaceAllString(tpl, "{$1}")
		if consolePaths[path] {
			return nil
		}
		for _, m := range methods {
			ops[operation{path: path, method: strings.ToLower(m)}] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk router: %v", err)
	}
	if len(ops) == 0 {
		t.Fatal("the router has no routes")
	}
	return ops
}

// httpMethods are the keys of an OpenAPI path item that are operations.
var httpMethods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true,
	"options": true, "head": true, "patch": true, "trace": true,
}

// loadDoc parses the embedded document.
func loadDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(api.OpenAPI()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("openapi.json holds more than one JSON value")
	}
	return doc
}

// docOperations lists the document's operations.
func docOperations(t *testing.T, doc map[string]any) map[operation]map[string]any {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatal("openapi.json has no paths object")
	}
	ops := map[operation]map[string]any{}
	for path, item := range paths {
		item, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("path %s is not an object", path)
		}
		for method, op := range item {
			if !httpMethods[method] {
				continue
			}
			op, ok := op.(map[string]any)
			if !ok {
				t.Fatalf("%s %s is not an object", method, path)
			}
			ops[operation{path: path, method: method}] = op
		}
	}
	return ops
}

func sortedOps[V any](m map[operation]V) []operation {
	out := make([]operation, 0, len(m))
	for o := range m {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].method < out[j].method
	})
	return out
}

func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if v := doc["openapi"]; v != "3.0.3" {
		t.Errorf("openapi = %v, want 3.0.3", v)
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs a title and a version, got %v", info)
	}
	seen := map[string]operation{}
	ops := docOperations(t, doc)
	for _, o := range sortedOps(ops) {
		op := ops[o]
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", o)
		} else if prev, dup := seen[id]; dup {
			t.Errorf("operationId %q is used by both %s and %s", id, prev, o)
		}
		seen[id] = o
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", o)
		}
		if r, _ := op["responses"].(map[string]any); len(r) == 0 {
			t.Errorf("%s has no responses", o)
		}
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	routes := routerOperations(t, newRouter(t))
	documented := docOperations(t, loadDoc(t))
	for _, o := range sortedOps(routes) {
		if documented[o] == nil {
			t.Errorf("route %s is missing from openapi.json", o)
		}
	}
	for _, o := range sortedOps(documented) {
		if !routes[o] {
			t.Errorf("openapi.json documents %s, which the router does not serve", o)
		}
	}
}

// pathParam matches a parameter in an OpenAPI path template.
var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

func TestOpenAPIPathParameters(t *testing.T) {
	doc := loadDoc(t)
	paths := doc["paths"].(map[string]any)
	for _, o := range sortedOps(docOperations(t, doc)) {
		var want []string
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			want = append(want, m[1])
		}
		item := paths[o.path].(map[string]any)
		var got []string
		for _, list := range []any{item["parameters"], item[o.method].(map[string]any)["parameters"]} {
			params, _ := list.([]any)
			for _, p := range params {
				p, _ := resolve(t, doc, p).(map[string]any)
				if p["in"] != "path" {
					continue
				}
				if p["required"] != true {
					t.Errorf("%s: path parameter %v is not required", o, p["name"])
				}
				name, _ := p["name"].(string)
				got = append(got, name)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s declares path parameters %v, its template has %v", o, got, want)
		}
	}
}

// effectiveSecurity is the operation's security, or the document's when
// the operation sets none.
func effectiveSecurity(doc, op map[string]any) []any {
	if s, ok := op["security"]; ok {
		list, _ := s.([]any)
		return list
	}
	list, _ := doc["security"].([]any)
	return list
}

func TestOpenAPISecurity(t *testing.T) {
	doc := loadDoc(t)
	schemes, _ := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	bearer, _ := schemes["bearerAuth"].(map[string]any)
	if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
		t.Errorf("securitySchemes.bearerAuth = %v, want type http, scheme bearer", bearer)
	}

	ops := docOperations(t, doc)
	for _, o := range sortedOps(ops) {
		op := ops[o]
		sec := effectiveSecurity(doc, op)
		switch {
		case needsKey(o.path):
			// Every requirement must name bearerAuth: an empty one would
			// make the key optional.
			ok := len(sec) > 0
			for _, req := range sec {
				req, _ := req.(map[string]any)
				if _, has := req["bearerAuth"]; !has {
					ok = false
				}
			}
			if !ok {
				t.Errorf("%s: security = %v, want bearerAuth", o, sec)
			}
			responses := op["responses"].(map[string]any)
			if _, has := responses["401"]; !has {
				t.Errorf("%s does not document its 401 response", o)
			}
			if _, has := responses["405"]; !has && strings.HasPrefix(o.path, "/api/") {
				t.Errorf("%s does not document its 405 response", o)
			}
			if _, has := responses["415"]; !has && op["requestBody"] != nil {
				t.Errorf("%s takes a body but does not document its 415 response", o)
			}
		case publicPaths[o.path]:
			if len(sec) != 0 {
				t.Errorf("%s: security = %v, want none (it is public)", o, sec)
			}
		default:
			t.Errorf("%s is neither under /api nor one of the public routes", o)
		}
	}
	for p := range publicPaths {
		if _, ok := doc["paths"].(map[string]any)[p]; !ok {
			t.Errorf("public route %s is not documented", p)
		}
	}

	// What the document says is what the server does.
	r := newRouter(t)
	for _, o := range sortedOps(routerOperations(t, r)) {
		t.Run(o.String(), func(t *testing.T) {
			url := strings.NewReplacer("{senderId}", "user123", "{action}", "scan", "{id}", "3EB0AB").Replace(o.path)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(strings.ToUpper(o.method), url, nil))
			if needsKey(o.path) {
				if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("without a key: %d (WWW-Authenticate %q), want 401 with a challenge",
						rec.Code, rec.Header().Get("WWW-Authenticate"))
				}
			} else if rec.Code != http.StatusOK {
				t.Errorf("without a key: %d, want 200 (public route)", rec.Code)
			}
		})
	}
}

func TestOpenAPIServed(t *testing.T) {
	rec := httptest.NewRecorder()
	newRouter(t).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), api.OpenAPI()) {
		t.Error("GET /openapi.json does not serve the embedded document")
	}
}

// resolve follows $ref until it reaches a node without one.
func resolve(t *testing.T, doc map[string]any, node any) any {
	t.Helper()
	for range 16 {
		m, ok := node.(map[string]any)
		if !ok {
			return node
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return node
		}
		next, err := lookup(doc, ref)
		if err != "" {
			t.Fatalf("$ref %s: %s", ref, err)
		}
		node = next
	}
	t.Fatal("$ref chain longer than 16")
	return nil
}

// lookup finds a local reference ("#/a/b") in doc; it returns a reason
// when it cannot.
func lookup(doc map[string]any, ref string) (any, string) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, "not a reference inside the document"
	}
	var node any = doc
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := node.(map[string]any)
		if !ok {
			return nil, "goes through a non-object at " + tok
		}
		if node, ok = m[tok]; !ok {
			return nil, "nothing at " + tok
		}
	}
	return node, ""
}

func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadDoc(t)
	refs := 0
	var walk func(where string, node any)
	walk = func(where string, node any) {
		switch n := node.(type) {
		case map[string]any:
			if ref, ok := n["$ref"]; ok {
				refs++
				s, _ := ref.(string)
				if _, err := lookup(doc, s); err != "" {
					t.Errorf("%s: $ref %v: %s", where, ref, err)
				}
			}
			for k, v := range n {
				walk(where+"/"+k, v)
			}
		case []any:
			for _, v := range n {
				walk(where+"[]", v)
			}
		}
	}
	walk("#", doc)
	if refs == 0 {
		t.Error("the document has no $ref at all")
	}
}

// jsonNames lists the JSON field names of a struct type.
func jsonNames(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// schema is a component schema, failing the test if there is none.
func schema(t *testing.T, doc map[string]any, name string) map[string]any {
	t.Helper()
	s, ok := doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	if !ok {
		t.Fatalf("components.schemas.%s is missing", name)
	}
	return s
}

func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadDoc(t)
	tests := []struct {
		schema string
		typ    reflect.Type
	}{
		{"Status", reflect.TypeFor[sessions.Status]()},
		{"SessionError", reflect.TypeFor[sessions.ErrorInfo]()},
		{"Fleet", reflect.TypeFor[sessions.Fleet]()},
		{"Event", reflect.TypeFor[sessions.Event]()},
		{"RestoreProgress", reflect.TypeFor[sessions.RestoreProgress]()},
		{"QR", reflect.TypeFor[sessions.QR]()},
		{"Info", reflect.TypeFor[sessions.Info]()},
		{"TestParams", reflect.TypeFor[sessions.TestParams]()},
		{"SendRequest", reflect.TypeFor[sessions.SendRequest]()},
		{"SentMessage", reflect.TypeFor[sessions.SentMessage]()},
		{"ReadRequest", reflect.TypeFor[sessions.ReadRequest]()},
		{"Delivery", reflect.TypeFor[sessions.Delivery]()},
		{"DeliveryPage", reflect.TypeFor[api.DeliveryPage]()},
		{"RetriedDeliveries", reflect.TypeFor[api.RetriedDeliveries]()},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			props, _ := schema(t, doc, tt.schema)["properties"].(map[string]any)
			var got []string
			for name := range props {
				got = append(got, name)
			}
			slices.Sort(got)
			if want := jsonNames(tt.typ); !slices.Equal(got, want) {
				t.Errorf("properties %v, want the JSON fields of %s: %v", got, tt.typ, want)
			}
		})
	}

	enum := func(t *testing.T, name string) []string {
		t.Helper()
		prop := schema(t, doc, "Status")["properties"].(map[string]any)[name]
		values, _ := resolve(t, doc, prop).(map[string]any)["enum"].([]any)
		var out []string
		for _, v := range values {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	t.Run("state enum", func(t *testing.T) {
		if got, want := enum(t, "state"), strs(sessions.States); !slices.Equal(got, want) {
			t.Errorf("Status.state enum %v, want sessions.States %v", got, want)
		}
	})
	t.Run("userAction enum", func(t *testing.T) {
		if got, want := enum(t, "userAction"), strs(sessions.UserActions); !slices.Equal(got, want) {
			t.Errorf("Status.userAction enum %v, want sessions.UserActions %v", got, want)
		}
	})
	t.Run("error codes", func(t *testing.T) {
		// The description lists sessions.Codes, in order: "a, b or c."
		code := schema(t, doc, "SessionError")["properties"].(map[string]any)["code"].(map[string]any)
		desc, _ := code["description"].(string)
		_, list, _ := strings.Cut(desc, ": ")
		got := strings.Split(strings.NewReplacer(" or ", ", ", ".", "").Replace(list), ", ")
		if want := strs(sessions.Codes); !slices.Equal(got, want) {
			t.Errorf("SessionError.code lists %v, want sessions.Codes %v", got, want)
		}
	})
}

// strs is a list of string values as plain strings.
func strs[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// TestOpenAPIRestoreTexts checks that the source document's texts, as the
// document shows them, are what the restore route answers.
func TestOpenAPIRestoreTexts(t *testing.T) {
	doc := loadDoc(t)
	op := doc["paths"].(map[string]any)["/api/whatsapp/sessions/restore"].(map[string]any)["post"].(map[string]any)
	resp, _ := resolve(t, doc, op["responses"].(map[string]any)["202"]).(map[string]any)
	media, _ := resp["content"].(map[string]any)["application/json"].(map[string]any)
	example, ok := media["example"].(map[string]any)
	if !ok {
		t.Fatal("the restore 202 response has no example")
	}

	req := httptest.NewRequest(http.MethodPost, "/api/whatsapp/sessions/restore", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	rec := httptest.NewRecorder()
	newRouter(t).ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("restore: %d %s, want 202", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("restore body: %v", err)
	}
	if !reflect.DeepEqual(got, example) {
		t.Errorf("restore answers %v, the document's example is %v", got, example)
	}
}
