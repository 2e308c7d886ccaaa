package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The per-session series are kept as plain numbers in one small struct per
// session and turned into Prometheus metrics only when scraped. As
// client_golang vector children (label pairs, hash entry and struct per
// series), a session's 26 series held 11.9 KB of heap; as numbers, 300
// bytes (BenchmarkSessionSeriesHeap).

// Fixed indexes into sessionSeries.values; the disconnect reasons follow,
// in the order of sessions.Reasons (sessionDescs.reason).
const (
	seriesConnected = iota
	seriesLastConnected
	seriesRestarts
	seriesReconnects
	seriesStoreErrors
	seriesMessagesIn
	seriesMessagesOut
)

// sessionSeries is what one session's series hold.
type sessionSeries struct {
	// state is the session's current state; "" until SetSessionState
	// names one, and then no whatsapp_session_state series is exported.
	state sessions.State
	// present has bit i set when series i exists: a gauge once set, a
	// counter once counted or once the session appeared with its counters
	// at 0.
	present uint64
	values  []float64
}

// seriesDef is how series i of every session is exported.
type seriesDef struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	// label is the series' second label (direction or reason), shared by
	// every session's series; nil when it has only the label session.
	label *dto.LabelPair
}

// sessionDescs holds the descriptions of the per-session metric families
// and, by index, how each series is exported.
type sessionDescs struct {
	state *prometheus.Desc
	// states is the label pair of each known state, in sessions.States'
	// order.
	states []*dto.LabelPair
	series []seriesDef
	// reason is the index of each disconnect reason's series.
	reason map[sessions.Reason]int
}

// labelPair is the pair name=value.
func labelPair(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: &name, Value: &value}
}

// newSessionDescs describes the per-session families.
func newSessionDescs() sessionDescs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"session"}, labels...), nil)
	}
	messages := desc("whatsapp_session_messages_total", "Messages received (in) and sent (out) by a session.", "direction")
	disconnects := desc("whatsapp_session_disconnects_total", "Disconnects of a session from WhatsApp, by reason.", "reason")
	d := sessionDescs{
		state: desc("whatsapp_session_state", "Current state of a session: 1 for the state it is in, 0 for every other state.", "state"),
		series: []seriesDef{
			seriesConnected:     {desc: desc("whatsapp_session_connected", "Whether a session is connected and logged in to WhatsApp (1) or not (0)."), typ: prometheus.GaugeValue},
			seriesLastConnected: {desc: desc("whatsapp_session_last_connected_timestamp_seconds", "Unix time at which a session last became connected."), typ: prometheus.GaugeValue},
			seriesRestarts:      {desc: desc("whatsapp_session_restarts_total", "Restarts of a session actor after a panic."), typ: prometheus.CounterValue},
			seriesReconnects:    {desc: desc("whatsapp_session_reconnects_total", "Reconnection attempts of a session after a transient failure."), typ: prometheus.CounterValue},
			seriesStoreErrors:   {desc: desc("whatsapp_session_store_write_failures_total", "Times a session's store started refusing writes (disk full, I/O error, read-only file)."), typ: prometheus.CounterValue},
			seriesMessagesIn:    {desc: messages, typ: prometheus.CounterValue, label: labelPair("direction", string(sessions.DirectionIn))},
			seriesMessagesOut:   {desc: messages, typ: prometheus.CounterValue, label: labelPair("direction", string(sessions.DirectionOut))},
		},
		reason: make(map[sessions.Reason]int, len(sessions.Reasons)),
	}
	for _, s := range sessions.States {
		d.states = append(d.states, labelPair("state", string(s)))
	}
	for _, r := range sessions.Reasons {
		d.reason[r] = len(d.series)
		d.series = append(d.series, seriesDef{desc: disconnects, typ: prometheus.CounterValue, label: labelPair("reason", string(r))})
	}
	if len(d.series) > 64 {
		panic("metrics: more per-session series than present's bits")
	}
	return d
}

// counterSeries has a bit set for every counter series of a session: the
// ones that exist at 0 from the session's first state.
func (d sessionDescs) counterSeries() uint64 {
	var bits uint64
	for i, s := range d.series {
		if s.typ == prometheus.CounterValue {
			bits |= 1 << i
		}
	}
	return bits
}

// sessionCollector exports the per-session series of m.
type sessionCollector struct{ m *Metrics }

// Describe sends the descriptions of every per-session family.
func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.descs.state
	for i, s := range c.m.descs.series {
		if i == 0 || s.desc != c.m.descs.series[i-1].desc {
			ch <- s.desc
		}
	}
}

// Collect copies every session's series under the lock, then builds the
// metrics outside it, so that a scrape does not hold up state changes and
// message counts.
func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	type snapshot struct {
		session string
		series  sessionSeries
	}
	m := c.m
	m.mu.Lock()
	snaps := make([]snapshot, 0, len(m.perSession))
	for session, s := range m.perSession {
		copied := *s
		copied.values = slices.Clone(s.values)
		snaps = append(snaps, snapshot{session, copied})
	}
	m.mu.Unlock()

	for _, snap := range snaps {
		s := snap.series
		session := labelPair("session", snap.session)
		if s.state != "" {
			for i, state := range sessions.States {
				ch <- &sessionMetric{m.descs.state, prometheus.GaugeValue, oneIf(state == s.state), []*dto.LabelPair{session, m.descs.states[i]}}
			}
			if !slices.Contains(sessions.States, s.state) {
				ch <- &sessionMetric{m.descs.state, prometheus.GaugeValue, 1, []*dto.LabelPair{session, labelPair("state", string(s.state))}}
			}
		}
		for i, def := range m.descs.series {
			if s.present&(1<<i) == 0 {
				continue
			}
			labels := []*dto.LabelPair{session}
			if def.label != nil {
				// "direction" and "reason" sort before "session".
				labels = []*dto.LabelPair{def.label, session}
			}
			ch <- &sessionMetric{def.desc, def.typ, s.values[i], labels}
		}
	}
}

// sessionMetric is one series of one session as a scrape sees it. Its
// label pairs, sorted by name as the registry wants them, are shared with
// the session's other series and, for the second label, with every
// session's: a scrape of many sessions allocates little more than one
// of these per series.
type sessionMetric struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	value  float64
	labels []*dto.LabelPair
}

// Desc is the family's description.
func (s *sessionMetric) Desc() *prometheus.Desc { return s.desc }

// Write fills out with the series' labels and value.
func (s *sessionMetric) Write(out *dto.Metric) error {
	out.Label = s.labels
	if s.typ == prometheus.CounterValue {
		out.Counter = &dto.Counter{Value: &s.value}
	} else {
		out.Gauge = &dto.Gauge{Value: &s.value}
	}
	return nil
}

// oneIf is 1 when b holds, else 0.
func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
