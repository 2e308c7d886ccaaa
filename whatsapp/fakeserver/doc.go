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
// out) are refused with 401, and the public keys of the devices paired with
// it, across restarts when Options.StateFile is set. What a phone or the network does to a
// session (scan, ban, unlink, drop, replace) is driven through Control, in
// process on *Server or over HTTP with Remote against ControlHandler.
// SeedDevice writes stored sessions directly, for benchmarks.
//
// It also plays every other party of a 1:1 chat. Each phone number's
// primary device has its own Signal identity (go.mau.fi/libsignal, keys
// derived from the number), so a session's messages are really decrypted
// by the fake contact they are for, and the copy for the account's own
// devices by its phone; the contact answers with a delivery receipt, and a
// read receipt on request (ContactRead). A contact sends a session text
// (ContactSend), end-to-end encrypted for each of its devices, and the
// message waits in the device's queue until the device acknowledges it,
// redelivered at each login, as WhatsApp's offline queue does. The server
// answers usync (is a number on WhatsApp: every number is, but those
// starting with 999; device lists; LIDs) and prekey bundle fetches from the
// keys devices registered or uploaded. A message from one session to
// another's number is also relayed to that account's companions. Sent and
// Received tell what each side got. docs/protocol.md lists what whatsmeow
// sends and expects.
//
// Not emulated: groups, media, presence, history sync, copies for an
// account's other companions, and any app state but the push name. Queries the server
// does not know get an empty result, so clients do not hang on them.
//
// The service's binary links this package in for test mode
// (WHATSAPP_TEST_MODE): only then does main start a server, or reach one
// with Remote, and call UseTestRootKey, which replaces whatsmeow's WhatsApp
// root key for the whole process so that its clients trust this server and
// no longer the real one. Outside test mode none of it runs.
package fakeserver
