package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiClient calls the service's REST API and /metrics over loopback.
type apiClient struct {
	base, key string
	hc        *http.Client
}

// newAPIClient keeps up to conns idle connections, so that a load of conns
// concurrent clients reuses its connections instead of dialing each time.
func newAPIClient(base, key string, conns int) *apiClient {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &apiClient{base: base, key: key, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// sessionStatus is the part of a session's status the bench reads from
// the fleet status.
type sessionStatus struct {
	SenderID string `json:"senderId"`
	State    string `json:"state"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fleetStatus is GET /api/whatsapp/sessions/status.
type fleetStatus struct {
	Sessions []sessionStatus `json:"sessions"`
	Counts   map[string]int  `json:"counts"`
	Restore  struct {
		Found    int `json:"found"`
		Restored int `json:"restored"`
		Failed   int `json:"failed"`
		Pending  int `json:"pending"`
	} `json:"restore"`
}

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
func (c *apiClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// fleet is every session's status, with counts.
func (c *apiClient) fleet(ctx context.Context) (fleetStatus, error) {
	var f fleetStatus
	err := c.do(ctx, http.MethodGet, "/api/whatsapp/sessions/status", &f)
	return f, err
}

// testAction posts a test-mode action (panic, drop, ...) for session id.
func (c *apiClient) testAction(ctx context.Context, id, action string) error {
	return c.do(ctx, http.MethodPost, "/api/whatsapp/test/session/"+id+"/"+action, nil)
}

// scrape reads the unlabelled samples of the named metrics from /metrics.
func (c *apiClient) scrape(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
