package devhost

import (
	"crypto/rand"
	"encoding/hex"
)

// newMessageID returns a random message id in the 32-hex-digit form the Service Bus SDK generates.
func newMessageID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
