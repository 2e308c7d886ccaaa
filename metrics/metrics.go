// Package metrics holds the Prometheus collectors of whatsapp-sessions: per
// session state, connectivity, restarts, reconnects, disconnects and messages,
// fleet-wide session counts, restore timing and results, HTTP traffic,
// webhook deliveries (results, queue depth, latency), the live event
// stream's clients, and a cluster node's session leases and hand-overs.
//
// Everything is registered on a Registerer handed to New, never on the
// default registry, so tests and several instances in one process do not
// collide. The label `session` is always the senderId: never a phone number,
// a JID or anything else that identifies a person.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// Metrics holds every collector of the service. Create it with New; all
// methods are safe for concurrent use.
type Metrics struct {
	descs    sessionDescs
	counters uint64 // descs.counterSeries()

	sessions           *prometheus.GaugeVec
	restoreDuration    prometheus.Histogram
	restoreResults     *prometheus.CounterVec
	httpRequests       *prometheus.CounterVec
	httpDuration       *prometheus.HistogramVec
	webhookDeliveries  *prometheus.CounterVec
	webhookQueueDepth  prometheus.Gauge
	webhookLatency     prometheus.Histogram
	streamClients      prometheus.Gauge
	streamDropped      prometheus.Counter
	leasesHeld         prometheus.Gauge
	leasesLost         prometheus.Counter
	leaseRenewFailures prometheus.Counter
	handovers          prometheus.Counter

	// mu guards perSession and makes each SetSessionState and
	// RemoveSession one step: without it a removal racing with a state
	// change could leave a one-hot series behind, or the fleet counts could
	// drift from the per-session gauges.
	mu         sync.Mutex
	perSession map[string]*sessionSeries
}

// New creates the collectors, registers them on reg together with the Go
// runtime and process collectors, and returns them. Like
// prometheus.MustRegister it panics if reg already holds any of them, for
// example when New is called twice with one registry.
func New(reg prometheus.Registerer) *Metrics {
	descs := newSessionDescs()
	m := &Metrics{
		descs:      descs,
		counters:   descs.counterSeries(),
		perSession: make(map[string]*sessionSeries),

		sessions: gauge("whatsapp_sessions", "Number of sessions in each state.", "state"),
		restoreDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "whatsapp_restore_duration_seconds",
			Help:    "Time a session took to come back from storage, from the start of its restore until it was connected.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		restoreResults: counter("whatsapp_restore_results_total", "Results of session restores from storage, by result.", "result"),
		httpRequests:   counter("whatsapp_http_requests_total", "HTTP requests served, by route template, method and status code.", "route", "method", "code"),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "whatsapp_http_request_duration_seconds",
			Help:    "Time taken to serve HTTP requests, by route template and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
		webhookDeliveries: counter("whatsapp_webhook_deliveries_total", "Webhook delivery attempts by result: delivered (a 2xx), failed (anything else; retried), dead (given up after WEBHOOK_RETRY_FOR).", "result"),
		webhookQueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "whatsapp_webhook_queue_depth",
			Help: "Webhook deliveries waiting in the outbox (pending or failed, not dead).",
		}),
		webhookLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "whatsapp_webhook_delivery_seconds",
			Help:    "Time from an event to the webhook endpoint's 2xx for it.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		streamClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "whatsapp_events_stream_clients",
			Help: "Open live event streams (GET /api/whatsapp/events).",
		}),
		streamDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_events_stream_dropped_total",
			Help: "Live event streams cut off because the client fell the whole ring of events behind.",
		}),
		leasesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "whatsapp_leases_held",
			Help: "Session leases this node holds (STORE=postgres with a cluster).",
		}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_leases_lost_total",
			Help: "Session leases this node gave up without releasing them: not renewed within half the TTL, expired, or taken by another node.",
		}),
		leaseRenewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_lease_renew_failures_total",
			Help: "Lease renewal round trips (all of the node's leases and its heartbeat) that failed.",
		}),
		handovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_handovers_total",
			Help: "Sessions this node handed over to another node (disconnected, lease released).",
		}),
	}

	// Every state exists from the start with 0, so that "no session is
	// connected" is a value and not an absent series.
	for _, s := range sessions.States {
		m.sessions.WithLabelValues(string(s)).Set(0)
	}
	// Likewise every restore result starts at 0, so that increase() sees
	// the first failure rather than the appearance of its series.
	for _, r := range sessions.RestoreResults {
		m.restoreResults.WithLabelValues(string(r))
	}
	for _, r := range webhooks.Results {
		m.webhookDeliveries.WithLabelValues(r)
	}

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		sessionCollector{m},
		m.sessions,
		m.restoreDuration,
		m.restoreResults,
		m.httpRequests,
		m.httpDuration,
		m.webhookDeliveries,
		m.webhookQueueDepth,
		m.webhookLatency,
		m.streamClients,
		m.streamDropped,
		m.leasesHeld,
		m.leasesLost,
		m.leaseRenewFailures,
		m.handovers,
	)
	return m
}

// SetSessionState records that session is now in state. It keeps
// whatsapp_session_state one-hot (1 for state, 0 for every other known
// state) and moves the session between the counts of whatsapp_sessions.
// The first call for a session creates its counters at 0.
// A state outside the known set is recorded as given, and its series is
// dropped again when the session leaves it.
func (m *Metrics) SetSessionState(session string, state sessions.State) {
	m.mu.Lock()
	defer m.mu.Unlock()

	s := m.seriesOf(session)
	if s.state == state {
		return
	}
	if s.state != "" {
		m.sessions.WithLabelValues(string(s.state)).Dec()
	} else {
		// Counter series exist at 0 from the session's first state, every
		// disconnect reason and message direction included: Prometheus sees
		// a counter's first increment only if the series existed before
		// it, so without them a session's first restart, reconnect or
		// disconnect would be missed by increase() and rate(), and the
		// dashboard's panels would be empty on a healthy fleet.
		s.present |= m.counters
	}
	s.state = state
	m.sessions.WithLabelValues(string(state)).Inc()
}

// seriesOf returns session's series, created empty on first use. m.mu
// must be held.
func (m *Metrics) seriesOf(session string) *sessionSeries {
	s, ok := m.perSession[session]
	if !ok {
		s = &sessionSeries{values: make([]float64, len(m.descs.series))}
		m.perSession[session] = s
	}
	return s
}

// setSeries sets series i of session to v.
func (m *Metrics) setSeries(session string, i int, v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seriesOf(session)
	s.values[i] = v
	s.present |= 1 << i
}

// countSeries adds one to series i of session.
func (m *Metrics) countSeries(session string, i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seriesOf(session)
	s.values[i]++
	s.present |= 1 << i
}

// SetSessionConnected records whether session is connected to WhatsApp.
func (m *Metrics) SetSessionConnected(session string, connected bool) {
	m.setSeries(session, seriesConnected, oneIf(connected))
}

// SessionRestarted counts a restart of session's actor after a panic.
func (m *Metrics) SessionRestarted(session string) {
	m.countSeries(session, seriesRestarts)
}

// SessionReconnected counts a reconnection attempt of session.
func (m *Metrics) SessionReconnected(session string) {
	m.countSeries(session, seriesReconnects)
}

// SessionDisconnected counts a disconnect of session for reason, one of
// sessions.Reasons; any other reason is counted as sessions.ReasonOther.
func (m *Metrics) SessionDisconnected(session string, reason sessions.Reason) {
	i, ok := m.descs.reason[reason]
	if !ok {
		i = m.descs.reason[sessions.ReasonOther]
	}
	m.countSeries(session, i)
}

// SetSessionLastConnected records t as the time session last became connected.
func (m *Metrics) SetSessionLastConnected(session string, t time.Time) {
	m.setSeries(session, seriesLastConnected, float64(t.UnixNano())/1e9)
}

// SessionMessage counts one message of session in direction
// (sessions.DirectionIn or sessions.DirectionOut).
func (m *Metrics) SessionMessage(session string, direction sessions.Direction) {
	i := seriesMessagesIn
	if direction == sessions.DirectionOut {
		i = seriesMessagesOut
	}
	m.countSeries(session, i)
}

// RemoveSession deletes every series labelled with session and takes the
// session out of the whatsapp_sessions counts. Calls naming session
// afterwards create its series again.
func (m *Metrics) RemoveSession(session string) {
	m.mu.Lock()
	defer m.mu.Unlock()

	if s, ok := m.perSession[session]; ok && s.state != "" {
		m.sessions.WithLabelValues(string(s.state)).Dec()
	}
	delete(m.perSession, session)
}

// SessionStoreWriteFailed counts a session's store refusing a write (disk
// full, I/O error, read-only file) after writes had been succeeding.
func (m *Metrics) SessionStoreWriteFailed(session string) {
	m.countSeries(session, seriesStoreErrors)
}

// ObserveRestore records how long one session took to be restored: from the
// start of its restore until it was connected.
func (m *Metrics) ObserveRestore(d time.Duration) {
	m.restoreDuration.Observe(d.Seconds())
}

// RestoreResult counts one restore result.
func (m *Metrics) RestoreResult(result sessions.RestoreResult) {
	m.restoreResults.WithLabelValues(string(result)).Inc()
}

// ObserveHTTP records one HTTP request. route must be the route template
// (for example /api/whatsapp/session/{senderId}/status), never the raw path,
// so that senderIds do not become label values here.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// gauge is a gauge vector named name with help and labels.
// WebhookAttempt counts one webhook delivery attempt by result and, for a
// delivery, observes the time from its event to the 2xx.
func (m *Metrics) WebhookAttempt(result string, sinceEvent time.Duration) {
	m.webhookDeliveries.WithLabelValues(result).Inc()
	if result == webhooks.ResultDelivered {
		m.webhookLatency.Observe(sinceEvent.Seconds())
	}
}

// WebhookQueueDepth records how many webhook deliveries wait.
func (m *Metrics) WebhookQueueDepth(n int) { m.webhookQueueDepth.Set(float64(n)) }

// StreamClients records how many live event streams are open.
func (m *Metrics) StreamClients(n int) { m.streamClients.Set(float64(n)) }

// StreamDropped counts a live event stream cut off for being slow.
func (m *Metrics) StreamDropped() { m.streamDropped.Inc() }

// LeasesHeld records how many session leases the node holds.
func (m *Metrics) LeasesHeld(n int) { m.leasesHeld.Set(float64(n)) }

// LeasesLost counts n leases given up without a release.
func (m *Metrics) LeasesLost(n int) { m.leasesLost.Add(float64(n)) }

// LeaseRenewFailed counts a failed lease renewal round trip.
func (m *Metrics) LeaseRenewFailed() { m.leaseRenewFailures.Inc() }

// SessionHandedOver counts a session handed over to another node.
func (m *Metrics) SessionHandedOver() { m.handovers.Inc() }

var _ webhooks.Observer = (*Metrics)(nil)

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

// counter is a counter vector named name with help and labels.
func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}
