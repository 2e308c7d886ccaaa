package webhooks

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// CheckURL says why raw cannot be a webhook endpoint, or returns nil: it
// must be an absolute http or https URL with a host and no user
// credentials (they would show in the deliveries' listing). Whether its
// address is allowed is decided when connecting, on the resolved address.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with http:// or https://")
	case u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry a user or password: put a token in the path or use the signature")
	case u.Fragment != "":
		return errors.New("must not have a #fragment")
	}
	return nil
}

// redact is u without its query (which may hold a token), as the
// deliveries' listing shows it.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.ForceQuery, u.User = "", false, nil
	return u.String()
}

// blocked are the ranges a webhook may not reach unless private targets
// are allowed, beyond what netip's predicates cover: CGNAT, the IPv4
// "this network", IETF protocol, benchmarking and reserved ranges, and
// NAT64 (which reaches IPv4 addresses through a translator).
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// addressKind says why addr is not a public unicast address ("" when it
// is one).
func addressKind(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case addr == netip.MustParseAddr("169.254.169.254") || addr == netip.MustParseAddr("fd00:ec2::254"):
		return "a cloud metadata address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsPrivate():
		return "a private address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address"
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return "a reserved or shared address (" + p.String() + ")"
		}
	}
	return ""
}

// refusePrivate is a net.Dialer Control: it runs on the address the name
// resolved to, just before connecting, so a name that resolves to a
// private address (or changes to one: DNS rebinding) is refused too.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("refused to connect to %s: not an IP address", address)
	}
	if kind := addressKind(ap.Addr()); kind != "" {
		return fmt.Errorf("refused to connect to %s: %s (set WEBHOOK_ALLOW_PRIVATE=true to allow private targets)", ap.Addr().Unmap(), kind)
	}
	return nil
}

// newClient is the HTTP client deliveries go through: no proxy from the
// environment (it would bypass the address check), no redirects followed
// (a 3xx is a failed attempt), each attempt bounded by timeout, and,
// unless allowPrivate, only public addresses.
func newClient(timeout time.Duration, allowPrivate bool, conns int) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = refusePrivate
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   conns,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
