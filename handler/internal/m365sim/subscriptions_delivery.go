package m365sim

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Delivery of change and lifecycle notifications to the subscribers' webhooks, asynchronously,
// with retries, duplicates on demand, rich (encrypted) content and the webhook's accounting.

// WebhookOptions configure the deliveries (SetWebhookOptions). Zero fields take the defaults.
type WebhookOptions struct {
	// Client posts the validation requests and notifications (default: a client of its own,
	// trusting the system roots; set one that trusts an httptest TLS server's certificate).
	Client *http.Client
	// HandshakeTimeout bounds the validation request of a subscription (default 10 s, Graph's).
	HandshakeTimeout time.Duration
	// Timeout bounds one notification POST (default 10 s): no answer by then is a failure.
	Timeout time.Duration
	// SlowAfter: a notification acknowledged later than this counts as slow (default 3 s).
	SlowAfter time.Duration
	// Retries is how many times a notification answered non-2xx (or not at all) is posted
	// again (default 3); RetryBackoff is the first wait, doubling each time (default 1 s).
	// Graph retries with exponential back-off for up to 4 hours; the sim compresses that.
	Retries      int
	RetryBackoff time.Duration
	// Concurrency bounds the POSTs in flight (default 256); more wait their turn.
	Concurrency int
	// Batch > 1 coalesces plain notifications (no resource data) queued for the same URL into
	// one POST of up to Batch entries in value, as Graph batches them (it sends up to about
	// 100); 0 or 1 (default) posts every notification on its own. Identical duplicates
	// (SetNotificationDuplicates) may then share a POST.
	Batch int
	// BatchWindow is how long a batch waits for more notifications before it is posted
	// (default 5 ms; only with Batch > 1).
	BatchWindow time.Duration
}

func (o WebhookOptions) withDefaults() WebhookOptions {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = handshakeTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.SlowAfter <= 0 {
		o.SlowAfter = 3 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	o.Retries = max(o.Retries, 0)
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 256
	}
	if o.BatchWindow <= 0 {
		o.BatchWindow = 5 * time.Millisecond
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second, ForceAttemptHTTP2: true}}
	}
	return o
}

// WebhookStats account for the notification deliveries since the last ResetWebhookStats.
type WebhookStats struct {
	Delivered int64 `json:"delivered"` // notifications acknowledged 2xx (each duplicate counts)
	Failed    int64 `json:"failed"`    // notifications given up after the retries
	Retried   int64 `json:"retried"`   // POSTs repeated after a non-2xx answer or no answer
	Slow      int64 `json:"slow"`      // POSTs acknowledged later than SlowAfter
	Lifecycle int64 `json:"lifecycle"` // lifecycle notifications acknowledged 2xx
	Pending   int64 `json:"pending"`   // notifications not yet delivered or given up
	// AckP50 and AckP99 are percentiles of the time from sending a POST to its 2xx answer.
	AckP50 time.Duration `json:"ackP50"`
	AckP99 time.Duration `json:"ackP99"`
	AckMax time.Duration `json:"ackMax"`
}

type deliveryState struct {
	mu      sync.Mutex
	opts    WebhookOptions
	sem     chan struct{}
	wg      sync.WaitGroup // one count per notification not yet delivered or given up
	stats   WebhookStats
	latency []time.Duration
	outbox  map[outboxKey]*outbox // notifications waiting to be batched (WebhookOptions.Batch)
}

// outbox holds a URL's notifications waiting for a batch; it exists while its sender runs.
type outbox struct {
	items []notificationJSON
	full  chan struct{} // signalled when items reach a batch, to end the sender's wait early
}

// outboxKey is what notifications must share to go in one POST: the URL, and lifecycle or
// change notifications (they are accounted apart).
type outboxKey struct {
	endpoint  string
	lifecycle bool
}

func (d *deliveryState) init() {
	d.opts = WebhookOptions{}.withDefaults()
	d.sem = make(chan struct{}, d.opts.Concurrency)
}

// SetWebhookOptions changes how notifications are delivered (see WebhookOptions).
func (s *Server) SetWebhookOptions(o WebhookOptions) {
	d := &s.notify().delivery
	o = o.withDefaults()
	d.mu.Lock()
	defer d.mu.Unlock()
	if o.Concurrency != d.opts.Concurrency {
		d.sem = make(chan struct{}, o.Concurrency)
	}
	d.opts = o
}

func (s *Server) webhookOptions() WebhookOptions {
	d := &s.notify().delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opts
}

func (s *Server) webhookClient() *http.Client { return s.webhookOptions().Client }

// WebhookStats returns the delivery accounting.
func (s *Server) WebhookStats() WebhookStats {
	d := &s.notify().delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stats
	if n := len(d.latency); n > 0 {
		l := slices.Clone(d.latency)
		slices.Sort(l)
		st.AckP50, st.AckP99, st.AckMax = l[(n-1)*50/100], l[(n-1)*99/100], l[n-1]
	}
	return st
}

// ResetWebhookStats zeroes the accounting (not Pending).
func (s *Server) ResetWebhookStats() {
	d := &s.notify().delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats = WebhookStats{Pending: d.stats.Pending}
	d.latency = nil
}

// WaitDeliveries waits until every notification sent so far is delivered or given up (or ctx
// ends).
func (s *Server) WaitDeliveries(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.notify().delivery.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// --- payloads ------------------------------------------------------------------------------------

type resourceDataJSON struct {
	ID        string `json:"id"`
	ODataType string `json:"@odata.type"`
	ODataID   string `json:"@odata.id,omitempty"`
	// Directory notifications (users, groups) only.
	OrganizationID string            `json:"organizationId,omitempty"`
	MembersDelta   []memberDeltaJSON `json:"members@delta,omitempty"`
}

// EncryptedContent is a rich notification's encryptedContent.
type EncryptedContent struct {
	Data                            string `json:"data"`
	DataSignature                   string `json:"dataSignature"`
	DataKey                         string `json:"dataKey"`
	EncryptionCertificateID         string `json:"encryptionCertificateId"`
	EncryptionCertificateThumbprint string `json:"encryptionCertificateThumbprint"`
}

type notificationJSON struct {
	SubscriptionID                 string            `json:"subscriptionId"`
	SubscriptionExpirationDateTime string            `json:"subscriptionExpirationDateTime"`
	ChangeType                     string            `json:"changeType,omitempty"`
	LifecycleEvent                 string            `json:"lifecycleEvent,omitempty"`
	ClientState                    *string           `json:"clientState"`
	TenantID                       string            `json:"tenantId"`
	Resource                       string            `json:"resource,omitempty"`
	ResourceData                   *resourceDataJSON `json:"resourceData,omitempty"`
	EncryptedContent               *EncryptedContent `json:"encryptedContent,omitempty"`
}

type collectionJSON struct {
	Value            []notificationJSON `json:"value"`
	ValidationTokens []string           `json:"validationTokens,omitempty"`
}

// notificationTime is the form of subscriptionExpirationDateTime in notifications.
func notificationTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000-07:00") }

// messageResource is the notification's resource of a message or reply.
func messageResource(m *msgRec) string {
	r := "teams('" + m.TeamID + "')/channels('" + m.ChannelID + "')/messages('"
	if m.ReplyToID != "" {
		return r + m.ReplyToID + "')/replies('" + m.ID + "')"
	}
	return r + m.ID + "')"
}

// EncryptResourceData encrypts data as Graph does for a rich notification: a random 32-byte
// key, AES-256-CBC with the key's first 16 bytes as IV and PKCS#7 padding, the key wrapped with
// RSA-OAEP (SHA-1) for the certificate's public key, and an HMAC-SHA256 of the ciphertext
// under the key. certDER is the certificate (for its thumbprint).
func EncryptResourceData(data []byte, pub *rsa.PublicKey, certDER []byte, certID string) (EncryptedContent, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return EncryptedContent{}, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return EncryptedContent{}, err
	}
	pad := aes.BlockSize - len(data)%aes.BlockSize
	plain := append(slices.Clone(data), bytes.Repeat([]byte{byte(pad)}, pad)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:aes.BlockSize]).CryptBlocks(ct, plain)
	mac := hmac.New(sha256.New, key)
	mac.Write(ct)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, key, nil)
	if err != nil {
		return EncryptedContent{}, err
	}
	thumb := sha1.Sum(certDER)
	return EncryptedContent{
		Data:                            base64.StdEncoding.EncodeToString(ct),
		DataSignature:                   base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		DataKey:                         base64.StdEncoding.EncodeToString(wrapped),
		EncryptionCertificateID:         certID,
		EncryptionCertificateThumbprint: strings.ToUpper(hex.EncodeToString(thumb[:])),
	}, nil
}

// changedLocked notifies every live subscription to m's channel that wants changeType (s.mu
// held). The payloads are built now (a later change does not alter them) and posted
// asynchronously.
func (s *Server) changedLocked(tenantID string, m *msgRec, changeType string) {
	s.expireLocked()
	n := s.notify()
	t, err := s.tenantLocked(tenantID)
	if err != nil {
		return
	}
	var content []byte
	for _, sub := range n.subs {
		if sub.kind != subChannel || sub.tenant != t.id || !strings.EqualFold(sub.TeamID, m.TeamID) || sub.ChannelID != m.ChannelID || !sub.wants(changeType) {
			continue
		}
		res := messageResource(m)
		nj := notificationJSON{SubscriptionID: sub.ID, SubscriptionExpirationDateTime: notificationTime(sub.ExpirationDateTime),
			ChangeType: changeType, ClientState: orNull(sub.ClientState), TenantID: t.id, Resource: res,
			ResourceData: &resourceDataJSON{ID: m.ID, ODataType: "#Microsoft.Graph.chatMessage", ODataID: res}}
		var token func() (string, error)
		if sub.IncludeResourceData {
			if content == nil {
				w := m.wire(t.id, false)
				content, _ = json.Marshal(w)
			}
			ec, err := EncryptResourceData(content, sub.key, sub.certDER, sub.EncryptionCertificateID)
			if err != nil {
				s.opts.Logger.Error("m365sim: encrypting a notification", "err", err)
				continue
			}
			nj.EncryptedContent = &ec
			nj.ResourceData.ODataID = ""
			tenant, app := t.id, sub.appID
			token = func() (string, error) { return s.ValidationToken(tenant, app) }
		}
		for range 1 + n.dups {
			s.deliverNotification(sub.NotificationURL, nj, token, false)
		}
	}
}

// postLifecycle sends a lifecycle notification for sub (s.mu not held).
func (s *Server) postLifecycle(sub *subRec, event string) {
	if sub.LifecycleNotificationURL == "" {
		return
	}
	nj := notificationJSON{SubscriptionID: sub.ID, SubscriptionExpirationDateTime: notificationTime(sub.ExpirationDateTime),
		LifecycleEvent: event, ClientState: orNull(sub.ClientState), TenantID: sub.tenant}
	var token func() (string, error)
	if sub.IncludeResourceData {
		tenant, app := sub.tenant, sub.appID
		token = func() (string, error) { return s.ValidationToken(tenant, app) }
	}
	s.deliverNotification(sub.LifecycleNotificationURL, nj, token, true)
}

// deliverNotification posts one notification asynchronously, with retries. token, when not nil, mints the
// validationTokens entry (rich notifications). With WebhookOptions.Batch > 1 a plain
// notification joins the URL's outbox and goes with the others queued there (sendBatches).
func (s *Server) deliverNotification(endpoint string, nj notificationJSON, token func() (string, error), lifecycle bool) {
	d := &s.notify().delivery
	d.wg.Add(1)
	d.mu.Lock()
	d.stats.Pending++
	opts, sem := d.opts, d.sem
	if opts.Batch > 1 && token == nil {
		key := outboxKey{endpoint, lifecycle}
		if d.outbox == nil {
			d.outbox = map[outboxKey]*outbox{}
		}
		ob := d.outbox[key]
		if ob == nil {
			ob = &outbox{full: make(chan struct{}, 1)}
			d.outbox[key] = ob
			go s.sendBatches(d, key, ob)
		}
		if ob.items = append(ob.items, nj); len(ob.items) >= opts.Batch {
			select {
			case ob.full <- struct{}{}:
			default:
			}
		}
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	go s.deliverBatch(d, opts, sem, endpoint, []notificationJSON{nj}, token, lifecycle)
}

// sendBatches posts a URL's outbox in batches until it is empty: a batch is posted (in the
// background) when it is full or BatchWindow after its first notification came, whichever is
// first.
func (s *Server) sendBatches(d *deliveryState, key outboxKey, ob *outbox) {
	var deadline time.Time // of the batch being filled
	for {
		d.mu.Lock()
		opts, sem := d.opts, d.sem
		if len(ob.items) == 0 {
			delete(d.outbox, key)
			d.mu.Unlock()
			return
		}
		if len(ob.items) < opts.Batch {
			if deadline.IsZero() {
				deadline = time.Now().Add(opts.BatchWindow)
			}
			if wait := time.Until(deadline); wait > 0 {
				d.mu.Unlock()
				t := time.NewTimer(wait)
				select { // a stale signal only makes the loop look again
				case <-t.C:
				case <-ob.full:
				}
				t.Stop()
				continue
			}
		}
		deadline = time.Time{}
		n := min(len(ob.items), max(opts.Batch, 1))
		batch := slices.Clone(ob.items[:n])
		ob.items = ob.items[n:]
		d.mu.Unlock()
		go s.deliverBatch(d, opts, sem, key.endpoint, batch, nil, key.lifecycle)
	}
}

// deliverBatch posts notifications in one POST (with retries) and accounts for each of them.
func (s *Server) deliverBatch(d *deliveryState, opts WebhookOptions, sem chan struct{}, endpoint string, batch []notificationJSON, token func() (string, error), lifecycle bool) {
	ok := s.deliverOnce(d, opts, sem, endpoint, batch, token)
	n := int64(len(batch))
	d.mu.Lock()
	d.stats.Pending -= n
	switch {
	case !ok:
		d.stats.Failed += n
	case lifecycle:
		d.stats.Lifecycle += n
	default:
		d.stats.Delivered += n
	}
	d.mu.Unlock()
	for range batch {
		d.wg.Done()
	}
}

func (s *Server) deliverOnce(d *deliveryState, opts WebhookOptions, sem chan struct{}, endpoint string, batch []notificationJSON, token func() (string, error)) bool {
	body := collectionJSON{Value: batch}
	if token != nil {
		tok, err := token()
		if err != nil {
			s.opts.Logger.Error("m365sim: minting a validation token", "err", err)
			return false
		}
		body.ValidationTokens = []string{tok}
	}
	payload, _ := json.Marshal(body)
	wait := opts.RetryBackoff
	for attempt := 0; ; attempt++ {
		sem <- struct{}{}
		ok, dur := postNotification(opts, endpoint, payload)
		<-sem
		d.mu.Lock()
		if dur > opts.SlowAfter {
			d.stats.Slow++
		}
		if ok {
			if len(d.latency) < 1<<20 {
				d.latency = append(d.latency, dur)
			}
			d.mu.Unlock()
			return true
		}
		if attempt >= opts.Retries {
			d.mu.Unlock()
			return false
		}
		d.stats.Retried++
		d.mu.Unlock()
		time.Sleep(wait)
		wait *= 2
	}
}

// postNotification POSTs one notification collection; ok is a 2xx answer, dur the time to it.
func postNotification(opts WebhookOptions, endpoint string, payload []byte) (ok bool, dur time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return false, 0
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	start := time.Now()
	resp, err := opts.Client.Do(req)
	if err != nil {
		return false, time.Since(start)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300, time.Since(start)
}
