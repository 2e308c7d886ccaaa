-- The webhook outbox (package webhooks), shared by every node: each event
-- once (its id unique, so a message WhatsApp redelivers to whichever node
-- holds the session then is dropped), and a delivery per endpoint. node is
-- the node whose dispatcher sends the delivery: the node that held the
-- session when the event was made, until a node that holds the session (or
-- any node, when the old one is no longer eligible and nobody holds it)
-- claims the session's undelivered rows. Times are Unix nanoseconds; since
-- starts a delivery's RETRY_FOR clock.
CREATE TABLE ws_events (
	seq        bigserial PRIMARY KEY,
	id         text   NOT NULL UNIQUE,
	type       text   NOT NULL,
	sender_id  text   NOT NULL,
	ts         bigint NOT NULL,
	created_at bigint NOT NULL,
	body       bytea  NOT NULL
);
CREATE INDEX ws_events_created ON ws_events (created_at);

CREATE TABLE ws_deliveries (
	seq         bigserial PRIMARY KEY,
	event_seq   bigint  NOT NULL REFERENCES ws_events (seq),
	endpoint    text    NOT NULL,
	sender_id   text    NOT NULL,
	node        text    NOT NULL,
	state       text    NOT NULL,
	attempts    integer NOT NULL DEFAULT 0,
	last_error  text    NOT NULL DEFAULT '',
	created_at  bigint  NOT NULL,
	since       bigint  NOT NULL,
	next_try_at bigint,
	last_try_at bigint,
	done_at     bigint
);
CREATE INDEX ws_deliveries_queue ON ws_deliveries (node, endpoint, sender_id, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX ws_deliveries_session ON ws_deliveries (sender_id) WHERE state IN ('pending', 'failed');
CREATE INDEX ws_deliveries_state ON ws_deliveries (state, seq);
CREATE INDEX ws_deliveries_event ON ws_deliveries (event_seq);
