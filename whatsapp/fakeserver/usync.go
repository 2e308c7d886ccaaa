package fakeserver

import (
	"strings"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// Every valid phone number is on WhatsApp, as a fake contact created on
// first use, except those starting with notOnWhatsAppPrefix (+999 is an
// unassigned country code).
const notOnWhatsAppPrefix = "999"

// validPhone reports whether user is a phone number in international form
// without the "+": 7 to 15 digits, not starting with 0.
func validPhone(user string) bool {
	if len(user) < 7 || len(user) > 15 || user[0] == '0' {
		return false
	}
	return digitsOnly(user) == user
}

// onWhatsApp reports whether the phone number user has an account.
func onWhatsApp(user string) bool {
	return validPhone(user) && !strings.HasPrefix(user, notOnWhatsAppPrefix)
}

// numberOf is the phone number a user JID (phone number or LID) names.
func numberOf(jid types.JID) (string, bool) {
	switch jid.Server {
	case types.DefaultUserServer:
		return jid.User, jid.User != ""
	case types.HiddenUserServer:
		return userOfLID(jid.User)
	}
	return "", false
}

// handleUsync answers a usync query: the "contact" protocol (is a number on
// WhatsApp, and its LID), "devices" (the device list: the phone, device 0,
// and the companions the server knows), "lid"; other protocols get an
// empty element, as for a user who shares nothing.
func (c *conn) handleUsync(node *waBinary.Node) *waBinary.Node {
	usync := node.GetChildByTag("usync")
	var protocols []string
	query := usync.GetChildByTag("query")
	for _, q := range query.GetChildren() {
		protocols = append(protocols, q.Tag)
	}
	listNode := usync.GetChildByTag("list")
	list := listNode.GetChildren()
	users := make([]waBinary.Node, 0, len(list))
	for _, u := range list {
		if u.Tag != "user" {
			continue
		}
		users = append(users, c.srv.usyncUser(u, protocols))
	}
	attrs := waBinary.Attrs{"last": "true", "index": "0"}
	for _, k := range []string{"sid", "mode", "context"} {
		if v, ok := usync.Attrs[k]; ok {
			attrs[k] = v
		}
	}
	return &waBinary.Node{Content: []waBinary.Node{{Tag: "usync", Attrs: attrs, Content: []waBinary.Node{
		{Tag: "result"},
		{Tag: "list", Content: users},
	}}}}
}

// usyncUser answers one <user> of a usync query.
func (s *Server) usyncUser(u waBinary.Node, protocols []string) waBinary.Node {
	out := waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{}}
	var user, query string
	in := false
	if contact, ok := u.GetOptionalChildByTag("contact"); ok {
		// IsOnWhatsApp: "+15551234567@c.us"; the answer names the LID
		// and the phone number of a number that is on WhatsApp.
		query = contentString(contact.Content)
		number, _, _ := strings.Cut(query, "@")
		user = strings.TrimPrefix(number, "+")
		in = onWhatsApp(user)
		pn := types.JID{User: user, Server: types.DefaultUserServer}
		if in {
			out.Attrs["jid"] = types.JID{User: lidUser(user), Server: types.HiddenUserServer}
			out.Attrs["pn_jid"] = pn
		} else {
			out.Attrs["jid"] = pn
		}
	} else {
		jid, _ := u.Attrs["jid"].(types.JID)
		out.Attrs["jid"] = jid
		user, in = numberOf(jid)
		in = in && onWhatsApp(user)
	}
	for _, p := range protocols {
		child := waBinary.Node{Tag: p}
		switch p {
		case "contact":
			typ := "out"
			if in {
				typ = "in"
			}
			child.Attrs = waBinary.Attrs{"type": typ}
			if query != "" {
				child.Content = query
			}
		case "devices":
			if in {
				child.Content = []waBinary.Node{{Tag: "device-list", Content: s.deviceListNodes(user)}}
			}
		case "lid":
			if in {
				child.Attrs = waBinary.Attrs{"val": types.JID{User: lidUser(user), Server: types.HiddenUserServer}}
			}
		}
		out.Content = append(out.GetChildren(), child)
	}
	return out
}

// deviceListNodes are the <device> elements of user's device list: the
// phone and every companion the server knows.
func (s *Server) deviceListNodes(user string) []waBinary.Node {
	devices := s.companionsOf(user)
	out := make([]waBinary.Node, 0, len(devices)+1)
	out = append(out, waBinary.Node{Tag: "device", Attrs: waBinary.Attrs{"id": "0"}})
	for _, d := range devices {
		out = append(out, waBinary.Node{Tag: "device", Attrs: waBinary.Attrs{"id": int(d.device), "key-index": int(d.device)}})
	}
	return out
}

// contentString is a node's content as text.
func contentString(content any) string {
	switch v := content.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}
