package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the cluster's series on the service's registry (which
// carries the node=NODE_NAME label on every series in cluster mode).
type nodeMetrics struct {
	reg      prometheus.Registerer
	members  prometheus.GaugeFunc
	handover prometheus.Counter
	adopt    prometheus.Counter
}

func newNodeMetrics(reg prometheus.Registerer, n *Node) (*nodeMetrics, error) {
	m := &nodeMetrics{
		reg: reg,
		members: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "whatsapp_cluster_members",
			Help: "Members of the cluster this node sees, itself included.",
		}, func() float64 { return float64(len(n.Members())) }),
		handover: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_cluster_handovers_total",
			Help: "Sessions this node handed over to another node (balancing or shutdown).",
		}),
		adopt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "whatsapp_cluster_adoptions_total",
			Help: "Sessions this node's sweep adopted (no live eligible node held them).",
		}),
	}
	for i, c := range []prometheus.Collector{m.members, m.handover, m.adopt} {
		if err := reg.Register(c); err != nil {
			for _, done := range []prometheus.Collector{m.members, m.handover, m.adopt}[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

// handedOver and adopted count; a nil nodeMetrics (no registry) counts
// nothing.
func (m *nodeMetrics) handedOver(k int) {
	if m != nil {
		m.handover.Add(float64(k))
	}
}

func (m *nodeMetrics) adopted(k int) {
	if m != nil {
		m.adopt.Add(float64(k))
	}
}

func (m *nodeMetrics) unregister() {
	for _, c := range []prometheus.Collector{m.members, m.handover, m.adopt} {
		m.reg.Unregister(c)
	}
}
