package sessions

import (
	"context"
	"encoding/json"
	"time"
)

// EventType names what an Event reports.
type EventType string

// The event types, as webhooks and WEBHOOK_EVENTS name them.
const (
	EventMessageReceived EventType = "message.received"
	EventMessageAck      EventType = "message.ack"
	EventSessionState    EventType = "session.state"
	EventSessionDeleted  EventType = "session.deleted"
)

// EventTypes lists every event type.
var EventTypes = []EventType{EventMessageReceived, EventMessageAck, EventSessionState, EventSessionDeleted}

// Event is something that happened to a session, as webhooks deliver it.
// Its ID is unique and stable: the same WhatsApp message or receipt,
// redelivered after a crash, gets the same ID, so a sink can drop the
// duplicate and a receiver can recognise it.
type Event struct {
	Type      EventType       `json:"type"`
	ID        string          `json:"id"`
	Timestamp time.Time       `json:"timestamp"`
	SenderID  string          `json:"senderId"`
	Data      json.RawMessage `json:"data"`
}

// MessageData is a message.received event's data.
type MessageData struct {
	ID        string    `json:"id"`
	Chat      string    `json:"chat"`
	From      string    `json:"from"`
	PushName  string    `json:"pushName,omitempty"`
	Text      string    `json:"text"`
	ReplyTo   string    `json:"replyTo,omitempty"`
	Timestamp time.Time `json:"timestamp"`
}

// AckStatus is how far a sent message got.
type AckStatus string

// The acknowledgements a message.ack event reports.
const (
	AckDelivered AckStatus = "delivered"
	AckRead      AckStatus = "read"
)

// AckData is a message.ack event's data: the recipient's device got (or
// read) the messages with these ids.
type AckData struct {
	IDs       []string  `json:"ids"`
	Chat      string    `json:"chat"`
	Status    AckStatus `json:"status"`
	Timestamp time.Time `json:"timestamp"`
}

// A session.state event's data is the session's Status.

// DeletedData is a session.deleted event's data: the session and its
// directory are gone (DELETE .../session/{id}, whoever asked). No
// session.state follows for it unless it is created again.
type DeletedData struct {
	SenderID  string    `json:"senderId"`
	DeletedAt time.Time `json:"deletedAt"`
}

// EventSink keeps events for delivery (package webhooks implements it with
// a durable outbox).
type EventSink interface {
	// Publish queues evs, in order after everything published before,
	// and returns without waiting. done, when not nil, is called once
	// with nil when every one of evs is committed durably (a duplicate
	// of a committed event counts as committed), or with the reason it
	// could not be. done must not block.
	Publish(evs []Event, done func(error))
}

// DeliveryState is where a webhook delivery stands.
type DeliveryState string

// The delivery states, as GET /api/whatsapp/webhooks/deliveries filters them.
const (
	// DeliveryPending: not yet tried, or waiting for its next try.
	DeliveryPending DeliveryState = "pending"
	// DeliveryFailed: tried at least once without a 2xx, will be retried.
	DeliveryFailed DeliveryState = "failed"
	// DeliveryDead: retried for WEBHOOK_RETRY_FOR without a 2xx; only a
	// retry request sends it again.
	DeliveryDead DeliveryState = "dead"
	// DeliveryDelivered: the endpoint answered 2xx.
	DeliveryDelivered DeliveryState = "delivered"
)

// Delivery is one event's delivery to one endpoint. It carries no message
// content: the event's type and ids only.
type Delivery struct {
	ID        string        `json:"id"`
	EventID   string        `json:"eventId"`
	EventType EventType     `json:"eventType"`
	SenderID  string        `json:"senderId"`
	Endpoint  string        `json:"endpoint"`
	State     DeliveryState `json:"state"`
	Attempts  int           `json:"attempts"`
	LastError string        `json:"lastError,omitempty"`
	CreatedAt time.Time     `json:"createdAt"`
	NextTryAt *time.Time    `json:"nextTryAt"`
	LastTryAt *time.Time    `json:"lastTryAt"`
}

// Deliveries is the webhook deliveries' admin API; package webhooks
// implements it.
type Deliveries interface {
	// List returns up to limit deliveries in state, oldest first, after
	// the delivery id after ("" for the first page).
	List(ctx context.Context, state DeliveryState, after string, limit int) ([]Delivery, error)
	// Retry sends one failed or dead delivery again now; ErrNotFound when
	// there is none with id, ErrWrongState when it is delivered.
	Retry(ctx context.Context, id string) (Delivery, error)
	// RetryDead sends every dead delivery again and says how many.
	RetryDead(ctx context.Context) (int, error)
}
