// Command webhook-receiver is an example receiver of whatsapp-sessions'
// webhooks: it verifies each delivery's Standard Webhooks signature with
// the specification's Go library, answers 2xx once the event is handled,
// and recognises a redelivery by its webhook-id (deliveries are at least
// once).
//
//	WEBHOOK_SECRET=$(cat $SESSIONS_DIR/.webhook-secret) go run ./examples/webhook-receiver -addr :9000
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// event is the part of a delivered event this example reads.
type event struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Timestamp time.Time       `json:"timestamp"`
	SenderID  string          `json:"senderId"`
	Data      json.RawMessage `json:"data"`
}

func main() {
	addr := flag.String("addr", ":9000", "where to listen")
	flag.Parse()
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET"))
	if err != nil {
		log.Fatal("WEBHOOK_SECRET: ", err)
	}
	srv := &http.Server{Addr: *addr, Handler: newHandler(wh, handle), ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// handle is where an application would act on an event.
func handle(ev event) error {
	log.Printf("%s %s for session %s", ev.Type, ev.ID, ev.SenderID)
	return nil
}

// newHandler verifies every request (signature, and a timestamp within
// five minutes), skips an event it handled already, and answers 204 once
// handle succeeded; anything else makes the service retry.
func newHandler(wh *standardwebhooks.Webhook, handle func(event) error) http.Handler {
	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps this in its database
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id") // the event's id: the same on every redelivery
		mu.Lock()
		dup := seen[id]
		mu.Unlock()
		if dup {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var ev event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		if err := handle(ev); err != nil {
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		seen[id] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}
