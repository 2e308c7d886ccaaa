package events

import "github.com/whatsapp-sessions/whatsapp-sessions/sessions"

// Feed is an EventSink that passes every event on to next (the durable
// outbox) and adds it to h once next reports it committed, so that the
// stream shows what webhooks will deliver, in the order it was committed.
// A session.state or session.deleted event is added even when its commit
// failed: the state change or the deletion happened, and stream
// subscribers must see it (message events that were not committed are
// redelivered by WhatsApp, and added then).
func (h *Hub) Feed(next sessions.EventSink) sessions.EventSink {
	return feed{next: next, hub: h}
}

type feed struct {
	next sessions.EventSink
	hub  *Hub
}

var _ sessions.EventSink = feed{}

// Publish passes evs to the next sink. Its done runs Add, which never
// waits for a subscriber, then the publisher's done.
func (f feed) Publish(evs []sessions.Event, done func(error)) {
	f.next.Publish(evs, func(err error) {
		if err == nil {
			f.hub.Add(evs...)
		} else {
			for _, ev := range evs {
				if ev.Type == sessions.EventSessionState || ev.Type == sessions.EventSessionDeleted {
					f.hub.Add(ev)
				}
			}
		}
		if done != nil {
			done(err)
		}
	})
}
