package main

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The receiver accepts a correctly signed event once, answers a
// redelivery without handling it again, and refuses a forged one.
func TestReceiver(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var handled []string
	h := newHandler(wh, func(ev event) error { handled = append(handled, ev.ID); return nil })
	body := `{"type":"message.received","id":"msg_1","timestamp":"2026-01-01T00:00:00Z","senderId":"alice","data":{}}`
	send := func(signature string) int {
		now := time.Now()
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("webhook-id", "msg_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		if signature == "" {
			signature, _ = wh.Sign("msg_1", now, []byte(body))
		}
		req.Header.Set("webhook-signature", signature)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := send(""); code != http.StatusNoContent {
		t.Errorf("signed: %d", code)
	}
	if code := send(""); code != http.StatusNoContent {
		t.Errorf("redelivered: %d", code)
	}
	if code := send("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="); code != http.StatusUnauthorized {
		t.Errorf("forged: %d", code)
	}
	if len(handled) != 1 {
		t.Errorf("handled %v, want msg_1 once", handled)
	}
}
