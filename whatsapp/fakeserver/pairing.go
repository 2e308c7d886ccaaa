package fakeserver

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/proto/waCompanionReg"
	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"
)

const (
	// qrRefCount is how many refs a pair-device iq carries by default
	// (Options.QRCodes); whatsmeow shows the first code for 60 s and each
	// further one for 20 s.
	qrRefCount = 6
	// phonePlatform is the platform the "phone" reports in pair-success.
	phonePlatform = "android"
)

// registration is what an unpaired client sent in its ClientPayload, plus
// the Noise static key it used for the handshake.
type registration struct {
	noisePub       [32]byte
	identityPub    [32]byte
	registrationID uint32
	signedPreKeyID uint32
	signedPreKey   [32]byte
	signedPreSig   [64]byte
	// deviceName is the name the companion gives itself (DeviceProps.os),
	// which a phone lists under Linked devices.
	deviceName string
}

// companionKeys are the public keys the registration carries.
func (r *registration) companionKeys() *companionKeys {
	return &companionKeys{
		regID:    r.registrationID,
		identity: r.identityPub,
		signed:   signedPreKey{id: r.signedPreKeyID, pub: r.signedPreKey, sig: r.signedPreSig},
	}
}

// startPairing validates an unpaired client's registration data and sends
// the pair-device iq with QR refs.
func (c *conn) startPairing(noisePub *[32]byte, data *waWa6.ClientPayload_DevicePairingRegistrationData) error {
	if len(data.GetEIdent()) != 32 || len(data.GetESkeyVal()) != 32 || len(data.GetESkeySig()) != 64 ||
		len(data.GetERegid()) != 4 || len(data.GetESkeyID()) != 3 {
		return errors.New("registration data incomplete")
	}
	// The signed prekey must be signed by the identity key, as libsignal
	// signs it: over the type byte and the public key.
	signed := append([]byte{ecc.DjbType}, data.GetESkeyVal()...)
	if !verify(data.GetEIdent(), signed, data.GetESkeySig()) {
		return errors.New("signed prekey signature does not verify")
	}
	skeyID := data.GetESkeyID()
	var props waCompanionReg.DeviceProps
	if err := proto.Unmarshal(data.GetDeviceProps(), &props); err != nil {
		return fmt.Errorf("device props: %w", err)
	}
	c.reg = &registration{
		deviceName:     props.GetOs(),
		noisePub:       *noisePub,
		identityPub:    [32]byte(data.GetEIdent()),
		registrationID: binary.BigEndian.Uint32(data.GetERegid()),
		signedPreKeyID: uint32(skeyID[0])<<16 | uint32(skeyID[1])<<8 | uint32(skeyID[2]),
		signedPreKey:   [32]byte(data.GetESkeyVal()),
		signedPreSig:   [64]byte(data.GetESkeySig()),
	}

	refs := make([]string, c.srv.qrCodes)
	children := make([]waBinary.Node, c.srv.qrCodes)
	for i := range refs {
		refs[i] = "2@" + randomBase64(18)
		children[i] = waBinary.Node{Tag: "ref", Content: []byte(refs[i])}
	}
	s := c.srv
	s.mu.Lock()
	c.refs = refs
	for _, ref := range refs {
		s.refs[ref] = c
	}
	s.unpaired[c] = struct{}{}
	s.mu.Unlock()

	// whatsmeow only handles an iq from the server JID with exactly one
	// child as a pairing request.
	return c.send(s.mdIQ(waBinary.Node{Tag: "pair-device", Content: children}))
}

// mdIQ is a set iq in the multi-device namespace from the server JID,
// carrying child: pair-device and pair-success are sent in one.
func (s *Server) mdIQ(child waBinary.Node) waBinary.Node {
	return waBinary.Node{
		Tag: "iq",
		Attrs: waBinary.Attrs{
			"from":  types.ServerJID,
			"type":  "set",
			"id":    s.newIQID(),
			"xmlns": "md",
		},
		Content: []waBinary.Node{child},
	}
}

// qrCode is what the phone reads from a QR code.
type qrCode struct {
	ref         string
	noisePub    []byte
	identityPub []byte
	advSecret   []byte
}

// parseQR reads "REF,noise,identity,adv,TYPE", with or without the
// linked-devices URL in front.
func parseQR(qr string) (qrCode, error) {
	if i := strings.LastIndexByte(qr, '#'); i >= 0 {
		qr = qr[i+1:]
	}
	parts := strings.Split(qr, ",")
	if len(parts) < 4 {
		return qrCode{}, fmt.Errorf("%w: not a WhatsApp QR code", ErrInvalidArgument)
	}
	var out qrCode
	out.ref = parts[0]
	var err error
	for i, dst := range []*[]byte{&out.noisePub, &out.identityPub, &out.advSecret} {
		if *dst, err = base64.StdEncoding.DecodeString(parts[i+1]); err != nil || len(*dst) != 32 {
			return qrCode{}, fmt.Errorf("%w: QR code field %d is not a 32-byte key", ErrInvalidArgument, i+1)
		}
	}
	return out, nil
}

// ScanQR acts as a phone scanning the QR code a client showed: it pairs a
// new phone number with that client and returns the device JID. It returns
// once the client confirmed the pairing; the client then reconnects and
// logs in by itself.
func (s *Server) ScanQR(ctx context.Context, qr string) (string, error) {
	code, err := parseQR(qr)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	c := s.refs[code.ref]
	s.mu.Unlock()
	if c == nil {
		return "", ErrUnknownQR
	}
	// The QR code carries the client's keys; a code built from other keys
	// than the connection's is not one this client showed.
	if !bytes.Equal(code.noisePub, c.reg.noisePub[:]) || !bytes.Equal(code.identityPub, c.reg.identityPub[:]) {
		return "", ErrUnknownQR
	}
	if err := c.beginPairing(); err != nil {
		return "", err
	}
	defer c.endPairing()
	phone := s.assignPhone()
	return c.completePairing(ctx, phone, code.advSecret)
}

// ExpireQR closes the unpaired connection that showed qr, as the server
// does when its codes run out; whatsmeow reports QRChannelTimeout.
func (s *Server) ExpireQR(ctx context.Context, qr string) error {
	code, err := parseQR(qr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	c := s.refs[code.ref]
	if c != nil {
		s.forgetPairingLocked(c)
	}
	s.mu.Unlock()
	if c == nil {
		return ErrUnknownQR
	}
	c.endStream()
	return nil
}

// beginPairing claims the connection for one pairing attempt.
func (c *conn) beginPairing() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pairing {
		return ErrPairingInProgress
	}
	c.pairing = true
	return nil
}

func (c *conn) endPairing() {
	c.mu.Lock()
	c.pairing = false
	c.mu.Unlock()
}

// assignPhone picks a fresh phone number: 1555 and seven random digits,
// unique within this server.
func (s *Server) assignPhone() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		n, err := rand.Int(rand.Reader, big.NewInt(10_000_000))
		if err != nil {
			panic(err) // crypto/rand does not fail
		}
		phone := fmt.Sprintf("1555%07d", n.Int64())
		if _, taken := s.phones[phone]; !taken {
			s.phones[phone] = struct{}{}
			return phone
		}
	}
}

// nextDevice returns the next companion device number of phone.
func (s *Server) nextDevice(phone string) uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phones[phone] = struct{}{}
	s.devices[phone]++
	return s.devices[phone]
}

// completePairing is the part both pairing methods share: the phone signs
// the client's identity, the server sends pair-success and waits for the
// client's pair-device-sign, then sends stream error 515 so the client
// reconnects as the new device. The caller holds beginPairing.
func (c *conn) completePairing(ctx context.Context, phone string, advSecret []byte) (string, error) {
	s := c.srv
	device := s.nextDevice(phone)
	jid := deviceJID(phone, device)
	lid := deviceLID(phone, device)
	identity, details, err := phoneSignedIdentity(phone, uint32(device), c.reg.identityPub[:])
	if err != nil {
		return "", err
	}
	container, err := hmacContainer(identity, advSecret)
	if err != nil {
		return "", err
	}
	iq := s.mdIQ(waBinary.Node{Tag: "pair-success", Content: []waBinary.Node{
		{Tag: "device-identity", Attrs: waBinary.Attrs{"key-index": details.GetKeyIndex()}, Content: container},
		{Tag: "platform", Attrs: waBinary.Attrs{"name": phonePlatform}},
		{Tag: "device", Attrs: waBinary.Attrs{"jid": jid, "lid": lid}},
	}})
	iq.Attrs["t"] = time.Now().Unix()
	resp, err := c.request(ctx, iq)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPairingFailed, err)
	}
	if err := checkPairDeviceSign(resp, identity, c.reg.identityPub[:]); err != nil {
		return "", err
	}

	s.mu.Lock()
	s.forgetPairingLocked(c)
	s.pairings++
	// A new device has uploaded no one-time prekeys yet.
	s.setCompanionLocked(deviceRef{user: phone, device: device}, c.reg.companionKeys())
	if err := s.saveStateLocked(); err != nil {
		c.log.Warn("paired device keys not kept in the state file", "err", err)
	}
	// Once the new device logs in, its phone sends it the initial sync.
	s.linked[jid] = &linkedDevice{phone: phone, reg: *c.reg, pushName: seedPushName(phone)}
	s.deviceNames[phone] = c.reg.deviceName
	s.mu.Unlock()
	c.log.Info("device paired")
	c.sendStreamError("515", "")
	return jid.String(), nil
}

// checkPairDeviceSign verifies the client's answer to pair-success: an
// error iq is a rejection, a result carries the device's own signature.
func checkPairDeviceSign(resp *waBinary.Node, identity *waAdv.ADVSignedDeviceIdentity, clientIdentity []byte) error {
	if typ, _ := resp.Attrs["type"].(string); typ == "error" {
		e := resp.GetChildByTag("error")
		return fmt.Errorf("%w: client refused pairing: %v %v", ErrPairingFailed, e.Attrs["code"], e.Attrs["text"])
	}
	raw, ok := resp.GetChildByTag("pair-device-sign", "device-identity").Content.([]byte)
	if !ok {
		return fmt.Errorf("%w: no pair-device-sign in the client's answer", ErrPairingFailed)
	}
	var signed waAdv.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(raw, &signed); err != nil {
		return fmt.Errorf("%w: pair-device-sign: %w", ErrPairingFailed, err)
	}
	msg := concat(whatsmeow.AdvDeviceSignaturePrefix, identity.Details, clientIdentity, identity.AccountSignatureKey)
	if !bytes.Equal(signed.Details, identity.Details) || !verify(clientIdentity, msg, signed.DeviceSignature) {
		return fmt.Errorf("%w: device signature does not verify", ErrPairingFailed)
	}
	return nil
}

// phoneSignedIdentity is what the phone of user produces when it links the
// companion with identity key clientIdentity as device number device: the
// device identity details signed with the phone's identity key.
func phoneSignedIdentity(user string, device uint32, clientIdentity []byte) (*waAdv.ADVSignedDeviceIdentity, *waAdv.ADVDeviceIdentity, error) {
	details := &waAdv.ADVDeviceIdentity{
		RawID:       proto.Uint32(randomUint32()),
		Timestamp:   proto.Uint64(uint64(time.Now().Unix())),
		KeyIndex:    proto.Uint32(device),
		AccountType: waAdv.ADVEncryptionType_E2EE.Enum(),
		DeviceType:  waAdv.ADVEncryptionType_E2EE.Enum(),
	}
	raw, err := proto.Marshal(details)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal device identity: %w", err)
	}
	phone := phoneIdentity(user)
	sig := sign(phone, concat(whatsmeow.AdvAccountSignaturePrefix, raw, clientIdentity))
	return &waAdv.ADVSignedDeviceIdentity{
		Details:             raw,
		AccountSignatureKey: phone.Pub[:],
		AccountSignature:    sig[:],
	}, details, nil
}

// hmacContainer wraps the signed identity with an HMAC keyed by the
// client's ADV secret, which proves the phone read the client's QR code
// (or derived the secret from the pairing code).
func hmacContainer(identity *waAdv.ADVSignedDeviceIdentity, advSecret []byte) ([]byte, error) {
	raw, err := proto.Marshal(identity)
	if err != nil {
		return nil, fmt.Errorf("marshal signed device identity: %w", err)
	}
	mac := hmac.New(sha256.New, advSecret)
	mac.Write(raw)
	out, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentityHMAC{Details: raw, HMAC: mac.Sum(nil)})
	if err != nil {
		return nil, fmt.Errorf("marshal device identity container: %w", err)
	}
	return out, nil
}

// deviceSignature is the companion's own signature over its identity, as
// whatsmeow computes it when it accepts pair-success.
func deviceSignature(identity *waAdv.ADVSignedDeviceIdentity, device *keys.KeyPair) []byte {
	sig := sign(device, concat(whatsmeow.AdvDeviceSignaturePrefix, identity.Details, device.Pub[:], identity.AccountSignatureKey))
	return sig[:]
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func randomBase64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
