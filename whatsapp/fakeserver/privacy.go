package fakeserver

import waBinary "go.mau.fi/whatsmeow/binary"

// privacySettings answers a privacy settings query (whatsmeow asks before
// its first MarkRead, to send "read-self" instead of "read" when the
// account hides read receipts): every account has the defaults, read
// receipts on.
func privacySettings(node *waBinary.Node) *waBinary.Node {
	if _, ok := node.GetOptionalChildByTag("privacy"); !ok {
		return nil
	}
	var categories []waBinary.Node
	for _, c := range [][2]string{
		{"readreceipts", "all"}, {"last", "all"}, {"online", "all"}, {"profile", "all"},
		{"status", "all"}, {"groupadd", "all"}, {"calladd", "all"}, {"messages", "all"},
	} {
		categories = append(categories, waBinary.Node{Tag: "category", Attrs: waBinary.Attrs{"name": c[0], "value": c[1]}})
	}
	return &waBinary.Node{Content: []waBinary.Node{{Tag: "privacy", Content: categories}}}
}
