-- The service's own tables, beside whatsmeow's (which whatsmeow creates and
-- upgrades itself).

-- One row per session: created with the session, deleted with it.
CREATE TABLE ws_sessions (
	sender_id  text PRIMARY KEY,
	-- the paired device's JID, null until paired (whatsmeow's whatsmeow_device
	-- holds the credentials)
	device_jid text,
	-- the operator stopped the session: the start-up restore leaves it stopped
	stopped    boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- The nodes of a cluster: a node renews its heartbeat with its leases; one
-- whose heartbeat is older than the lease TTL, or that is leaving, is given
-- no sessions.
CREATE TABLE ws_nodes (
	name         text PRIMARY KEY,
	-- the cluster address other nodes dial
	address      text NOT NULL,
	heartbeat_at timestamptz NOT NULL,
	leaving      boolean NOT NULL DEFAULT false
);

-- Who may connect a session: a session's client connects only while its node
-- holds the row's lease (owner = the node, expires_at in the future, by the
-- database's clock). token is the fencing token: it grows by one at every
-- acquisition by a new owner.
CREATE TABLE ws_leases (
	sender_id  text PRIMARY KEY REFERENCES ws_sessions (sender_id) ON DELETE CASCADE,
	owner      text,
	token      bigint NOT NULL DEFAULT 0,
	expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX ws_leases_owner ON ws_leases (owner);
