package main

import (
	"encoding/json"
	"slices"
	"time"
)

// dur is a duration that reads as "1.234s" in JSON as well as in tables.
type dur time.Duration

// String rounds d for a table.
func (d dur) String() string { return round(time.Duration(d)).String() }

// MarshalJSON writes the duration in milliseconds, as a number.
func (d dur) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(d) / float64(time.Millisecond))
}

// round keeps three significant figures or so, for tables.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// dist summarises a set of durations.
type dist struct {
	Count int `json:"count"`
	Min   dur `json:"minMs"`
	P50   dur `json:"p50Ms"`
	P90   dur `json:"p90Ms"`
	P99   dur `json:"p99Ms"`
	Max   dur `json:"maxMs"`
}

// summarize sorts ds and returns its distribution (nearest-rank
// percentiles).
func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	slices.Sort(ds)
	at := func(p float64) dur {
		i := int(p*float64(len(ds))+0.999999) - 1
		return dur(ds[min(max(i, 0), len(ds)-1)])
	}
	return dist{Count: len(ds), Min: dur(ds[0]), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: dur(ds[len(ds)-1])}
}
