package http

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The page sizes of GET /api/whatsapp/webhooks/deliveries.
const (
	defaultDeliveriesLimit = 100
	maxDeliveriesLimit     = 1000
)

// DeliveryPage is a page of webhook deliveries; Next, when set, is the
// after= of the next page.
type DeliveryPage struct {
	Deliveries []sessions.Delivery `json:"deliveries"`
	Next       *string             `json:"next"`
}

// listDeliveries is GET /api/whatsapp/webhooks/deliveries?state=&after=&limit=.
func (h *handlers) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := sessions.DeliveryState(q.Get("state"))
	switch state {
	case sessions.DeliveryPending, sessions.DeliveryFailed, sessions.DeliveryDead, sessions.DeliveryDelivered:
	case "":
		return badRequest("state is required: pending, failed, dead or delivered")
	default:
		return badRequest(fmt.Sprintf("state must be pending, failed, dead or delivered, got %q", state))
	}
	limit := defaultDeliveriesLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxDeliveriesLimit {
			return badRequest(fmt.Sprintf("limit must be a whole number from 1 to %d", maxDeliveriesLimit))
		}
		limit = n
	}
	list, err := h.deliveries.List(r.Context(), state, q.Get("after"), limit)
	if err != nil {
		return err
	}
	page := DeliveryPage{Deliveries: list}
	if len(list) == limit {
		page.Next = &list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// retryDelivery is POST /api/whatsapp/webhooks/deliveries/{id}/retry: the
// delivery, due now.
func (h *handlers) retryDelivery(w http.ResponseWriter, r *http.Request) error {
	d, err := h.deliveries.Retry(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// RetriedDeliveries is the answer to POST
// /api/whatsapp/webhooks/deliveries/retry.
type RetriedDeliveries struct {
	Retried int `json:"retried"`
}

// retryDead is POST /api/whatsapp/webhooks/deliveries/retry: every dead
// delivery, due now.
func (h *handlers) retryDead(w http.ResponseWriter, r *http.Request) error {
	n, err := h.deliveries.RetryDead(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RetriedDeliveries{Retried: n})
	return nil
}
