// Package fakeserver is a local WhatsApp server for tests and test mode.
//
// Real whatsmeow clients connect to it on loopback over TLS, as they reach
// WhatsApp (HTTPClient: a certificate for web.whatsapp.com from a CA made
// when the server starts, which only that client trusts), complete the
// Noise_XX handshake against a certificate chain
// signed by a fixed test root key (UseTestRootKey), log in, and pair by QR
// code or phone pairing code as if a phone scanned or typed the code. The
// server plays both WhatsApp and the phone: it builds and signs the device
// identity a primary device would, and after pairing it sends the new
// device the app state key and the app state patch that carry its push
// name, so whatsmeow's own verification and storage run unchanged.
//
// The server keeps no registry of paired devices. Any paired device
// (username and device number in its ClientPayload) may log in, and the LID
// it reports is derived from the phone number, so a client stored by one
// instance logs in to the next one unchanged. What it does remember is what
// WhatsApp never forgets: the devices the phone unlinked (or that logged
// out) are refused with 401, across restarts when Options.StateFile is set. What a phone or the network does to a
// session (scan, ban, unlink, drop, replace) is driven through Control, in
// process on *Server or over HTTP with Remote against ControlHandler.
// SeedDevice writes stored sessions directly, for benchmarks.
//
// Not emulated: messages, receipts, presence, groups, media, history sync
// and any app state but the push name. Queries the server does not know
// get an empty result, so clients do not hang on them.
//
// The service's binary links this package in for test mode
// (WHATSAPP_TEST_MODE): only then does main start a server, or reach one
// with Remote, and call UseTestRootKey, which replaces whatsmeow's WhatsApp
// root key for the whole process so that its clients trust this server and
// no longer the real one. Outside test mode none of it runs.
package fakeserver
