// Package jwks caches the RSA signing keys an identity provider publishes as a JSON Web Key Set
// (RFC 7517): Bot Framework's keys for inbound activities, the Microsoft identity platform's for
// Graph's validationTokens. Keys are fetched on first use, refreshed daily, and refetched when a
// token names an unknown key id (a rotation) at most once a minute; concurrent callers wait for
// one fetch.
package jwks

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// MaxAge is how long fetched keys are used before a refresh (at least daily).
	MaxAge = 24 * time.Hour
	// RefetchPause is the least time between two fetches (successful or not).
	RefetchPause = time.Minute
	maxDocBytes  = 1 << 20
)

// ErrUnknownKey is returned when the key id is not in the (fresh enough) key set.
var ErrUnknownKey = errors.New("unknown signing key")

// Key is one RSA signing key of a set.
type Key struct {
	Public *rsa.PublicKey
	// Endorsements is Bot Framework's extension: the channels the key may sign for.
	Endorsements []string
}

// Config configures a Cache.
type Config struct {
	// Fetch reads the current key set (by kid), e.g. with FetchURL. Required.
	Fetch func(ctx context.Context) (map[string]Key, error)
	// Now is the clock for refreshes; default time.Now.
	Now func() time.Time
	// Logger receives refreshes and failed fetches; default discard.
	Logger *slog.Logger
	// Name prefixes the log messages, e.g. "botframework".
	Name string
}

// Cache holds a key set. It is safe for concurrent use.
type Cache struct {
	cfg Config

	fetchMu sync.Mutex // one fetch at a time

	mu          sync.Mutex
	keys        map[string]Key // by kid
	fetched     time.Time      // last successful fetch
	lastAttempt time.Time      // last fetch attempt (refetch pacing)
}

// New returns a Cache. It does no I/O.
func New(cfg Config) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "jwks"
	}
	return &Cache{cfg: cfg, keys: map[string]Key{}}
}

// Key returns the signing key kid: from the cache while it is younger than MaxAge, else after a
// refetch; an unknown kid triggers a refetch at most once per RefetchPause. A failed refresh keeps
// serving the cached keys. The error is ErrUnknownKey, or wraps the fetch failure when no key
// could be had.
func (c *Cache) Key(ctx context.Context, kid string) (Key, error) {
	k, ok, need := c.lookup(kid)
	if ok && !need {
		return k, nil
	}
	// Unknown here: wait for a fetch another caller may have in flight (several tokens arrive at
	// once after a start or a rotation), then look again.
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if k, ok, need = c.lookup(kid); !need {
		if ok {
			return k, nil
		}
		return Key{}, ErrUnknownKey
	}
	c.mu.Lock()
	c.lastAttempt = c.cfg.Now()
	c.mu.Unlock()
	keys, err := c.cfg.Fetch(ctx)
	if err != nil {
		c.cfg.Logger.WarnContext(ctx, c.cfg.Name+": fetching signing keys failed", "err", err)
		if ok {
			return k, nil // stale but known
		}
		return Key{}, fmt.Errorf("signing keys unavailable: %w", err)
	}
	c.mu.Lock()
	c.keys, c.fetched = keys, c.cfg.Now()
	c.mu.Unlock()
	c.cfg.Logger.InfoContext(ctx, c.cfg.Name+": signing keys refreshed", "keys", len(keys))
	k, ok = keys[kid]
	if !ok {
		return Key{}, ErrUnknownKey
	}
	return k, nil
}

// lookup reports the cached key and whether to fetch now: the keys were never fetched, are
// MaxAge old or lack kid, and the last attempt (successful or not) is at least RefetchPause old.
func (c *Cache) lookup(kid string) (k Key, ok, need bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	k, ok = c.keys[kid]
	due := c.fetched.IsZero() || now.Sub(c.fetched) >= MaxAge || !ok
	need = due && (c.lastAttempt.IsZero() || now.Sub(c.lastAttempt) >= RefetchPause)
	return k, ok, need
}

type document struct {
	Keys []struct {
		Kty          string   `json:"kty"`
		Use          string   `json:"use"`
		Kid          string   `json:"kid"`
		N            string   `json:"n"`
		E            string   `json:"e"`
		Endorsements []string `json:"endorsements"`
	} `json:"keys"`
}

// FetchURL reads the key set at url: its RSA signing keys (use "sig" or absent) with a kid and a
// modulus of at least 2048 bits. Unreadable keys are skipped (and logged to log, when not nil); a
// set without any usable key is an error.
func FetchURL(ctx context.Context, client *http.Client, url string, log *slog.Logger) (map[string]Key, error) {
	var doc document
	if err := GetJSON(ctx, client, url, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := map[string]Key{}
	for _, k := range doc.Keys {
		if k.Kty != "RSA" || k.Kid == "" || k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := rsaKey(k.N, k.E)
		if err != nil {
			if log != nil {
				log.WarnContext(ctx, "jwks: skipping an unreadable key", "kid", k.Kid, "err", err)
			}
			continue
		}
		keys[k.Kid] = Key{Public: pub, Endorsements: slices.Clone(k.Endorsements)}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no RSA signing keys")
	}
	return keys, nil
}

func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(n, "="))
	if err != nil {
		return nil, fmt.Errorf("modulus: %w", err)
	}
	eb, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(e, "="))
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, errors.New("bad exponent")
	}
	exp := int(new(big.Int).SetBytes(eb).Int64())
	mod := new(big.Int).SetBytes(nb)
	if mod.BitLen() < 2048 || exp < 3 {
		return nil, errors.New("key too weak")
	}
	return &rsa.PublicKey{N: mod, E: exp}, nil
}

// GetJSON GETs url with client (http.DefaultClient when nil) and decodes a 200 answer of at most
// 1 MiB into out.
func GetJSON(ctx context.Context, client *http.Client, url string, out any) error {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocBytes))
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}
