package app

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
)

func TestClusteredSeriesCarryTheNode(t *testing.T) {
	for _, tc := range []struct {
		cluster, want string
	}{{"", ""}, {"none", ""}, {"etcd", "n1"}} {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
		metricsRegisterer(config.Config{Cluster: tc.cluster, NodeName: "n1"}, reg).MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, l := range mfs[0].GetMetric()[0].GetLabel() {
			if l.GetName() == "node" {
				got = l.GetValue()
			}
		}
		if got != tc.want {
			t.Errorf("CLUSTER=%q: node label %q, want %q", tc.cluster, got, tc.want)
		}
	}
}
