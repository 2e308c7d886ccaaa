-- The answers of sends made with an Idempotency-Key (package idempotency),
-- shared by every node: a retry answers the same on whichever node holds
-- the session then. created_at is unix milliseconds; answered_at WhatsApp's
-- timestamp (RFC 3339), null while the send is pending.
CREATE TABLE ws_sends (
	sender_id    text   NOT NULL,
	key          text   NOT NULL,
	request_hash bytea  NOT NULL,
	message_id   text   NOT NULL,
	created_at   bigint NOT NULL,
	answered_at  text,
	PRIMARY KEY (sender_id, key)
);
CREATE INDEX ws_sends_created ON ws_sends (created_at);
