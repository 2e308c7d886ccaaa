package metrics

import "github.com/prometheus/client_golang/prometheus"

// Conns counts what the HTTP listeners' connection caps do (see
// http.ConnLimit), labelled by listener: "api", and "metrics" when
// METRICS_ADDR is set. It implements http.ConnObserver.
type Conns struct {
	open    *prometheus.GaugeVec
	max     *prometheus.GaugeVec
	refused *prometheus.CounterVec
	evicted *prometheus.CounterVec
}

// NewConns creates the collectors with a series at 0 for each listener,
// registers them on reg and returns them.
func NewConns(reg prometheus.Registerer, listeners ...string) *Conns {
	c := &Conns{
		open:    gauge("whatsapp_http_connections", "Open HTTP connections.", "listener"),
		max:     gauge("whatsapp_http_connections_max", "The cap on open HTTP connections (HTTP_MAX_CONNS, or sized from the file descriptor limit).", "listener"),
		refused: counter("whatsapp_http_connections_refused_total", "New HTTP connections closed at once because every connection under the cap was serving a request.", "listener"),
		evicted: counter("whatsapp_http_connections_evicted_total", "HTTP connections closed at the cap to make room for a new one, because they waited longest without a request in progress.", "listener"),
	}
	for _, l := range listeners {
		c.open.WithLabelValues(l).Set(0)
		c.refused.WithLabelValues(l).Add(0)
		c.evicted.WithLabelValues(l).Add(0)
	}
	reg.MustRegister(c.open, c.max, c.refused, c.evicted)
	return c
}

// SetMax records listener's cap.
func (c *Conns) SetMax(listener string, n int) { c.max.WithLabelValues(listener).Set(float64(n)) }

// HTTPConnections records listener's open connections.
func (c *Conns) HTTPConnections(listener string, open int) {
	c.open.WithLabelValues(listener).Set(float64(open))
}

// HTTPConnectionRefused counts a connection refused at listener's cap.
func (c *Conns) HTTPConnectionRefused(listener string) { c.refused.WithLabelValues(listener).Inc() }

// HTTPConnectionEvicted counts a connection closed to make room at
// listener's cap.
func (c *Conns) HTTPConnectionEvicted(listener string) { c.evicted.WithLabelValues(listener).Inc() }
