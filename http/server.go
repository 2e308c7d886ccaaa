// Package http is the REST API: a gorilla/mux router whose handlers turn
// requests into calls on a sessions.Service (package actors implements it),
// bearer-key auth on every /api route, JSON errors mapped from the
// packages' sentinels in one place, health, readiness and metrics.
package http

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// RequestObserver records each request by route template; the metrics
// package implements it.
type RequestObserver interface {
	ObserveHTTP(route, method string, code int, d time.Duration)
}

// Options are what NewHandler needs.
type Options struct {
	Sessions sessions.Service
	// APIKey guards /api; it must not be empty.
	APIKey string
	Log    *slog.Logger
	// Observer, when set, sees every request.
	Observer RequestObserver
	// Metrics serves /metrics when set, behind the API key. Leave it nil
	// when metrics have their own listener (NewMetricsHandler).
	Metrics http.Handler
	// OpenAPI is served at /openapi.json when set.
	OpenAPI []byte
	// Ready reports whether the start-up restore has been dispatched.
	Ready func() bool
	// Test, when set (test mode), serves the test routes.
	Test sessions.TestDriver
	// Messenger, when set, serves the message routes.
	Messenger sessions.Messenger
	// Deliveries, when set, serves the webhook deliveries' admin routes.
	Deliveries sessions.Deliveries
	// Console, when set, serves the operator console (package console):
	// its page at / and at /console/, its files under /console/ (the
	// handler sees the path below /console), without a key: the page asks
	// the operator for it.
	Console http.Handler
	// Events, when set, serves the live event stream GET
	// /api/whatsapp/events; Heartbeat is how often an idle stream gets a
	// comment line (DefaultHeartbeat when zero).
	Events    EventStream
	Heartbeat time.Duration
}

// maxBody caps every request body.
const maxBody = 64 << 10

// NewHandler builds the router. Routes are registered here, in one place.
func NewHandler(opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	h := &handlers{sessions: opts.Sessions, messenger: opts.Messenger, log: opts.Log, test: opts.Test, ready: opts.Ready, deliveries: opts.Deliveries,
		events: opts.Events, heartbeat: cmp.Or(opts.Heartbeat, DefaultHeartbeat)}

	r := mux.NewRouter()
	// Keep "..", encoded slashes and empty ids as they came, so the id check
	// rejects them with 400 instead of the router redirecting them.
	r.SkipClean(true)
	r.UseEncodedPath()
	guard := requireKey(opts.APIKey, h)
	// An unknown path or a wrong method under /api is answered only after
	// the key is checked, so that a client without it learns nothing about
	// the routes. gorilla/mux reports some wrong methods under a subrouter
	// as not found, so both cases ask the router which methods the path
	// takes.
	unmatched := guardAPI(guard, h.wrap(func(w http.ResponseWriter, req *http.Request) error {
		allow := allowedMethods(r, req)
		if len(allow) == 0 {
			return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route"}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on this route; use %s", req.Method, strings.Join(allow, " or "))}
	}))
	r.NotFoundHandler, r.MethodNotAllowedHandler = unmatched, unmatched
	if opts.Observer != nil {
		r.Use(observe(opts.Observer))
	}

	r.Handle("/healthz", h.wrap(h.healthz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", h.wrap(h.readyz)).Methods(http.MethodGet, http.MethodHead)
	if opts.Metrics != nil {
		// It names every session, and a senderId may be a phone number.
		r.Handle("/metrics", guard(opts.Metrics)).Methods(http.MethodGet)
	}
	if opts.OpenAPI != nil {
		doc := opts.OpenAPI
		r.HandleFunc("/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(doc)
		}).Methods(http.MethodGet)
	}

	if opts.Console != nil {
		r.Handle("/", opts.Console).Methods(http.MethodGet, http.MethodHead)
		r.PathPrefix(consolePrefix).Handler(http.StripPrefix(strings.TrimSuffix(consolePrefix, "/"), opts.Console)).
			Methods(http.MethodGet, http.MethodHead)
	}

	api := r.PathPrefix(apiPrefix).Subrouter()
	api.Use(guard)
	api.Handle("/whatsapp/info", h.wrap(h.info)).Methods(http.MethodGet)
	api.Handle("/whatsapp/sessions/restore", h.wrap(h.restore)).Methods(http.MethodPost)
	api.Handle("/whatsapp/sessions/status", h.wrap(h.fleet)).Methods(http.MethodGet)
	api.Handle("/whatsapp/session/{senderId:[^/]*}/status", h.wrap(h.statusOf(sessions.Service.Status))).Methods(http.MethodGet)
	api.Handle("/whatsapp/session/{senderId:[^/]*}", h.wrap(onSession(h.create))).Methods(http.MethodPost)
	api.Handle("/whatsapp/session/{senderId:[^/]*}", h.wrap(onSession(h.delete))).Methods(http.MethodDelete)
	api.Handle("/whatsapp/session/{senderId:[^/]*}/qr", h.wrap(onSession(h.qr))).Methods(http.MethodGet)
	api.Handle("/whatsapp/session/{senderId:[^/]*}/pair-phone", h.wrap(onSession(h.pairPhone))).Methods(http.MethodPost)
	api.Handle("/whatsapp/session/{senderId:[^/]*}/stop", h.wrap(h.statusOf(sessions.Service.Stop))).Methods(http.MethodPost)
	api.Handle("/whatsapp/session/{senderId:[^/]*}/logout", h.wrap(h.statusOf(sessions.Service.Logout))).Methods(http.MethodPost)
	if opts.Messenger != nil {
		api.Handle("/whatsapp/session/{senderId:[^/]*}/messages", h.wrap(onSession(h.send))).Methods(http.MethodPost)
		api.Handle("/whatsapp/session/{senderId:[^/]*}/messages/{id}/read", h.wrap(onSession(h.markRead))).Methods(http.MethodPost)
	}
	if opts.Test != nil {
		api.Handle("/whatsapp/test/session/{senderId:[^/]*}/sent", h.wrap(onSession(h.testSent))).Methods(http.MethodGet)
		api.Handle("/whatsapp/test/session/{senderId:[^/]*}/{action}", h.wrap(onSession(h.testAction))).Methods(http.MethodPost)
	}
	if opts.Deliveries != nil {
		api.Handle("/whatsapp/webhooks/deliveries", h.wrap(h.listDeliveries)).Methods(http.MethodGet)
		api.Handle("/whatsapp/webhooks/deliveries/retry", h.wrap(h.retryDead)).Methods(http.MethodPost)
		api.Handle("/whatsapp/webhooks/deliveries/{id}/retry", h.wrap(h.retryDelivery)).Methods(http.MethodPost)
	}
	if opts.Events != nil {
		api.Handle("/whatsapp/events", h.wrap(h.eventsRoute)).Methods(http.MethodGet)
	}
	return r
}

// NewMetricsHandler serves metrics alone, without a key, for METRICS_ADDR
// (a private network): GET /metrics, 405 for another method there, 404
// for every other path.
func NewMetricsHandler(metrics http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handlers{log: log}
	r := mux.NewRouter()
	r.NotFoundHandler = h.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "only GET /metrics is served here"}
	})
	r.MethodNotAllowedHandler = h.wrap(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", http.MethodGet)
		return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed on this route; use GET"}
	})
	r.Handle("/metrics", metrics).Methods(http.MethodGet)
	return r
}

// apiPrefix is where every route that needs the key lives.
const apiPrefix = "/api"

// consolePrefix is where the console's files are served (its page is
// also served at /); the console handler sees the paths below it.
const consolePrefix = "/console/"

// guardAPI checks the key before next for paths under /api.
func guardAPI(guard mux.MiddlewareFunc, next http.Handler) http.Handler {
	guarded := guard(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, apiPrefix) {
			guarded.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// probeMethods are the methods a 405's Allow header may list.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowedMethods lists the methods router serves on req's path, by asking
// it to match req with each method in turn.
func allowedMethods(router *mux.Router, req *http.Request) []string {
	var allow []string
	for _, m := range probeMethods {
		probe := *req
		probe.Method = m
		var match mux.RouteMatch
		if router.Match(&probe, &match) && match.MatchErr == nil {
			allow = append(allow, m)
		}
	}
	return allow
}

// IdleTimeout is how long a keep-alive connection may wait for its next
// request. Short, so that idle sockets hold few descriptors; longer than
// Prometheus' usual scrape interval (15 s), so its connection is reused.
const IdleTimeout = 30 * time.Second

// NewServer is an http.Server with every timeout set, so a slow or idle
// client cannot hold a connection for long, and net/http's own error log
// (TLS and accept errors, a handler's panic) going to log. With limit, it
// reports its connections' states to limit (see ConnLimit.Listener).
func NewServer(h http.Handler, log *slog.Logger, limit *ConnLimit) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	if limit != nil {
		srv.ConnState = limit.ConnState
	}
	return srv
}

// requireKey checks "Authorization: Bearer <key>" in constant time (the
// hashes are compared, so the key's length does not leak either). The
// scheme is case-insensitive and may be followed by several spaces (RFC
// 7235).
func requireKey(key string, h *handlers) mux.MiddlewareFunc {
	want := sha256.Sum256([]byte(key))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
			ok := found && strings.EqualFold(scheme, "Bearer")
			got := sha256.Sum256([]byte(strings.TrimLeft(token, " ")))
			if !ok || key == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				msg := "missing or malformed Authorization header: send 'Authorization: Bearer <API_KEY>'"
				if ok {
					msg = "invalid API key"
				}
				writeError(w, r, h.log, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: msg})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// observe reports every request by its route template, never its raw path.
func observe(o RequestObserver) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			o.ObserveHTTP(routeTemplate(r), r.Method, sw.status, time.Since(start))
		})
	}
}

func routeTemplate(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if t, err := route.GetPathTemplate(); err == nil {
			return strings.ReplaceAll(t, ":[^/]*}", "}")
		}
	}
	return "unmatched"
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer: the
// event stream flushes and sets deadlines through it.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
