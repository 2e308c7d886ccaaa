package metrics_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// BenchmarkScrape gathers the metrics of 1,000 connected sessions, as a
// scrape of /metrics does (go test -run '^$' -bench Scrape ./metrics).
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	for i := range 1000 {
		s := fmt.Sprintf("session-%d", i)
		m.SetSessionState(s, sessions.StateConnected)
		m.SetSessionConnected(s, true)
		m.SetSessionLastConnected(s, time.Now())
		m.SessionMessage(s, sessions.DirectionIn)
	}
	b.ReportAllocs()
	for range b.N {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
