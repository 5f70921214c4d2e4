package devhost

import (
	"crypto/rand"
	"encoding/hex"
)

// newUUID returns a random (version 4) UUID in the 8-4-4-4-12 form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newMessageID returns a random message id in the 32-hex-digit form the Service Bus SDK generates.
func newMessageID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
