package m365sim

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mail: POST /v1.0/users/{id | userPrincipalName | mail}/sendMail and the Sent Items lookup
// GET /v1.0/users/{…}/mailFolders/SentItems/messages?$filter=internetMessageId eq '…', with
// Exchange Online's sending limits and Outlook's per-app, per-mailbox throttling. See doc.go.

// Mail permissions (application roles) the mail routes accept.
var (
	permMailSend = []string{"Mail.Send"}
	permMailRead = []string{"Mail.ReadBasic.All", "Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}
)

func init() {
	// The read roles of the Sent Items lookup, with Microsoft Graph's app role ids (permissions
	// reference). Registered here so mail stays in one file; Consent accepts any name in Roles.
	Roles["Mail.ReadBasic.All"] = "693c5e45-0940-467d-9b8a-1022fb9d42ef"
	Roles["Mail.ReadBasic"] = "6be147d2-ea4f-4b5a-a3fa-3eab6f3c140a"
	Roles["Mail.Read"] = "810c84a8-4a9e-49e6-bf7d-12d183f40d01"
	Roles["Mail.ReadWrite"] = "e2a3a72e-5f79-4c64-b1b1-878b674786c9"
}

// Exchange Online and Outlook defaults (Exchange Online limits; Graph throttling limits).
const (
	DefaultMailPerMinute        = 30     // messages per mailbox per minute
	DefaultMailConcurrency      = 4      // concurrent Outlook requests per app per mailbox
	DefaultMailDailyRecipients  = 10_000 // recipients per mailbox per rolling 24 hours
	DefaultMailRequestsPer10Min = 10_000 // Outlook requests per app per mailbox per 10 minutes
	// MaxMailRecipients is Exchange Online's recipient limit per message (to + cc + bcc).
	MaxMailRecipients = 500
	// MaxMailHeaders is how many internetMessageHeaders Graph accepts on one message.
	MaxMailHeaders = 5
)

// MailLimits are the limits sendMail enforces. A zero field takes the default; a negative
// count disables that limit. Windows are rolling, in sim time (Options.Clock + AdvanceClock).
type MailLimits struct {
	// PerMinute: messages per sending mailbox per rolling 60 s, all apps (Exchange: 30).
	PerMinute int `json:"perMinute"`
	// Concurrency: sendMail requests of one app to one mailbox in flight at once (Outlook: 4).
	// A request is in flight while it waits Latency.
	Concurrency int `json:"concurrency"`
	// DailyRecipients: to+cc+bcc recipients per sending mailbox per rolling 24 h (Exchange: 10 000).
	DailyRecipients int `json:"dailyRecipients"`
	// RequestsPer10Min: Outlook requests (sendMail and Sent Items lookups) of one app to one
	// mailbox per rolling 10 minutes (Outlook: 10 000).
	RequestsPer10Min int `json:"requestsPer10Min"`
	// Latency is how long (wall time) an accepted sendMail takes to answer 202 (default 0). It
	// lets Concurrency matter. The admin API takes a Go duration string or milliseconds.
	Latency time.Duration `json:"latency"`
}

func (l MailLimits) withDefaults() MailLimits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.PerMinute, DefaultMailPerMinute)
	def(&l.Concurrency, DefaultMailConcurrency)
	def(&l.DailyRecipients, DefaultMailDailyRecipients)
	def(&l.RequestsPer10Min, DefaultMailRequestsPer10Min)
	l.Latency = max(l.Latency, 0)
	return l
}

// SentMail is one accepted sendMail, as the sim captured it.
type SentMail struct {
	From              string            `json:"from"` // the sending mailbox's mail address
	To                []string          `json:"to,omitempty"`
	Cc                []string          `json:"cc,omitempty"`
	Bcc               []string          `json:"bcc,omitempty"`
	ReplyTo           []string          `json:"replyTo,omitempty"`
	Subject           string            `json:"subject"`
	ContentType       string            `json:"contentType"` // Graph's bodyType: "text" or "html"
	Content           string            `json:"content"`
	InternetMessageID string            `json:"internetMessageId"`
	Headers           map[string]string `json:"headers,omitempty"` // internetMessageHeaders
	SavedToSentItems  bool              `json:"savedToSentItems"`
	SentAt            time.Time         `json:"sentAt"`
	ClientID          string            `json:"clientId"` // the app that sent it
}

// MailStats count sendMail outcomes since the start (or ResetMailStats).
type MailStats struct {
	Accepted   int64 `json:"accepted"`
	Recipients int64 `json:"recipients"` // of the accepted mails
	// Requests refused for a limit, by limit.
	ThrottledRate        int64 `json:"throttledRate"`
	ThrottledConcurrency int64 `json:"throttledConcurrency"`
	ThrottledDaily       int64 `json:"throttledDaily"`
	ThrottledRequests    int64 `json:"throttledRequests"`
	// Invalid counts 400 answers (validation), Denied 403/404 answers (permission, access
	// policy, unknown mailbox).
	Invalid int64 `json:"invalid"`
	Denied  int64 `json:"denied"`
	// PeakConcurrency is the most sendMail requests of one app to one mailbox ever in flight at
	// once; InFlight how many are in flight now (waiting Latency).
	PeakConcurrency int `json:"peakConcurrency"`
	InFlight        int `json:"inFlight"`
}

// Violations is the number of requests refused for a limit (a well-behaved client keeps it 0).
func (m MailStats) Violations() int64 {
	return m.ThrottledRate + m.ThrottledConcurrency + m.ThrottledDaily + m.ThrottledRequests
}

type stamp struct {
	at time.Time
	n  int
}

// window is a rolling window of weighted time stamps, oldest first, with their running sum
// (the benchmark pushes tens of thousands of sends through one mailbox).
type window struct {
	q     []stamp
	head  int // q[:head] have left the window
	total int // sum of q[head:]
}

func (w *window) prune(now time.Time, span time.Duration) {
	for w.head < len(w.q) && !now.Before(w.q[w.head].at.Add(span)) {
		w.total -= w.q[w.head].n
		w.head++
	}
	if w.head > 64 && w.head*2 > len(w.q) {
		w.q = append(w.q[:0], w.q[w.head:]...)
		w.head = 0
	}
}

// wait is how long until adding n keeps the window's sum within limit (0: now).
func (w *window) wait(now time.Time, span time.Duration, n, limit int) time.Duration {
	total := w.total + n
	if total <= limit {
		return 0
	}
	for _, s := range w.q[w.head:] {
		total -= s.n
		if total <= limit {
			return s.at.Add(span).Sub(now)
		}
	}
	return span // n alone is over the limit: no point retrying within the window
}

func (w *window) add(at time.Time, n int) {
	w.q = append(w.q, stamp{at, n})
	w.total += n
}

type appBox struct{ tenant, app, box string }

// mailbox is the sending state of one user's mailbox.
type mailbox struct {
	rate, daily window
	saved       map[string][]int32 // lower-cased internetMessageId -> indexes in the tenant's sent list
}

type mailState struct {
	limits   MailLimits
	wake     chan struct{} // closed (and replaced) when the limits change: Latency waits re-check
	sent     map[string][]SentMail
	boxes    map[string]*mailbox      // tenant + "/" + user object id
	apps     map[appBox]*window       // Outlook requests per app per mailbox
	inflight map[appBox]int           // sendMail requests waiting Latency
	policies map[[2]string][]string   // tenant, client id -> allowed mailboxes (lower-cased)
	byMail   map[string]mailIndexPart // tenant -> mail address index
	stats    MailStats
}

type mailIndexPart struct {
	version int
	idx     map[string]int32
}

func (m *mailState) init(l MailLimits) {
	m.limits = l.withDefaults()
	m.wake = make(chan struct{})
	m.sent = map[string][]SentMail{}
	m.boxes = map[string]*mailbox{}
	m.apps = map[appBox]*window{}
	m.inflight = map[appBox]int{}
	m.policies = map[[2]string][]string{}
	m.byMail = map[string]mailIndexPart{}
}

// SetMailLimits replaces the mail limits (zero fields take the defaults). Requests waiting
// Latency re-check it, so lowering Latency releases them.
func (s *Server) SetMailLimits(l MailLimits) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mail.limits = l.withDefaults()
	close(s.mail.wake)
	s.mail.wake = make(chan struct{})
}

// MailLimits returns the limits in force (defaults filled in).
func (s *Server) MailLimits() MailLimits {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mail.limits
}

// SentMail returns every mail the tenant's mailboxes sent, in order of acceptance.
func (s *Server) SentMail(tenantID string) []SentMail {
	return s.SentMailSince(tenantID, 0)
}

// SentMailSince returns the tenant's sent mails from index since on (for polling).
func (s *Server) SentMailSince(tenantID string, since int) []SentMail {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.mail.sent[strings.ToLower(tenantID)]
	if since < 0 || since >= len(l) {
		return nil
	}
	return slices.Clone(l[since:])
}

// MailStats returns the sendMail counters.
func (s *Server) MailStats() MailStats {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mail.stats
	for _, n := range s.mail.inflight {
		st.InFlight += n
	}
	return st
}

// ResetMailStats zeroes the mail counters (not the captured mail or the limit windows).
func (s *Server) ResetMailStats() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mail.stats = MailStats{}
}

// SetMailAccessPolicy scopes the app's mail access in the tenant to the allowed mailboxes
// (object id, UPN or mail, case-insensitive), as an Exchange application access policy
// (New-ApplicationAccessPolicy -AccessRight RestrictAccess): sendMail and Sent Items lookups
// for any other mailbox answer 403 ErrorAccessDenied.
func (s *Server) SetMailAccessPolicy(tenantID, clientID string, allowed ...string) error {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	l := make([]string, 0, len(allowed))
	for _, a := range allowed {
		l = append(l, strings.ToLower(strings.TrimSpace(a)))
	}
	s.mail.policies[[2]string{t.id, strings.ToLower(clientID)}] = l
	return nil
}

// ClearMailAccessPolicy removes the app's access policy in the tenant (access to every mailbox).
func (s *Server) ClearMailAccessPolicy(tenantID, clientID string) error {
	t, unlock, err := s.lockTenant(tenantID)
	if err != nil {
		return err
	}
	defer unlock()
	delete(s.mail.policies, [2]string{t.id, strings.ToLower(clientID)})
	return nil
}

// --- routing ---------------------------------------------------------------------------------

// sentItemsSeg matches the Sent Items folder segment forms: mailFolders/{name} is handled by the
// caller; this one is mailFolders('SentItems').
var sentItemsSeg = regexp.MustCompile(`^(?i)mailFolders\('([^']*)'\)$`)

func (s *Server) mailRoute(r *http.Request, segs []string) (route, bool) {
	n := len(segs)
	if n < 3 || segs[0] != "users" || segs[1] == "" {
		return route{}, false
	}
	switch {
	case n == 3 && strings.EqualFold(segs[2], "sendMail"):
		if r.Method != http.MethodPost {
			return route{}, true
		}
		return route{"sendMail", s.serveSendMail}, true
	case n == 5 && strings.EqualFold(segs[2], "mailFolders") && strings.EqualFold(segs[4], "messages"),
		n == 4 && sentItemsSeg.MatchString(segs[2]) && strings.EqualFold(segs[3], "messages"):
		folder := segs[3]
		if n == 4 {
			folder = sentItemsSeg.FindStringSubmatch(segs[2])[1]
		}
		if r.Method != http.MethodGet || !strings.EqualFold(folder, "sentitems") {
			return route{}, true // other folders and methods are not implemented (501)
		}
		return route{"sentItems", s.serveSentItems}, true
	}
	return route{}, false
}

// --- errors ----------------------------------------------------------------------------------

func outlookDenied() gresp {
	return errResp(http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
}

func policyDenied() gresp {
	return errResp(http.StatusForbidden, "ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.")
}

func invalidRecipients(detail string) gresp {
	return errResp(http.StatusBadRequest, "ErrorInvalidRecipients", "At least one recipient is not valid., "+detail)
}

// throttled is a 429 with a fractional-seconds Retry-After (rounded up to the millisecond).
func throttled(code, msg string, after time.Duration) gresp {
	ms := (after + time.Millisecond - 1) / time.Millisecond
	if ms < 1 {
		ms = 1
	}
	r := errResp(http.StatusTooManyRequests, code, msg)
	r.hdr = map[string]string{"Retry-After": strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)}
	return r
}

// --- mailbox resolution ----------------------------------------------------------------------

// mailUser resolves the {id | userPrincipalName | mail} segment to a user with a mailbox.
func (s *Server) mailUser(g *gctx, seg string) (*userRec, *gresp) {
	key, _ := url.PathUnescape(seg)
	lk := strings.ToLower(key)
	t := g.t
	i, ok := t.userIDs[lk]
	if !ok {
		i, ok = t.upns[lk]
	}
	if !ok {
		i, ok = s.mailIndex(t)[lk]
	}
	if !ok || t.users[i].state == stateGone {
		return nil, new(errResp(http.StatusNotFound, "ErrorInvalidUser", fmt.Sprintf("The requested user '%s' is invalid.", key)))
	}
	u := t.users[i]
	if u.state != stateActive || u.Mail == "" {
		return nil, new(errResp(http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."))
	}
	if allowed, ok := s.mail.policies[[2]string{t.id, strings.ToLower(g.appID)}]; ok &&
		!slices.ContainsFunc(allowed, func(a string) bool {
			return a == strings.ToLower(u.ID) || a == strings.ToLower(u.Mail) || a == strings.ToLower(u.UserPrincipalName)
		}) {
		return nil, new(policyDenied())
	}
	return u, nil
}

// mailIndex maps lower-cased mail addresses to user indexes, rebuilt when the tenant changed.
func (s *Server) mailIndex(t *tenant) map[string]int32 {
	p, ok := s.mail.byMail[t.id]
	if ok && p.version == t.version {
		return p.idx
	}
	idx := make(map[string]int32, len(t.users))
	for _, u := range t.users {
		if u.Mail != "" && u.state != stateGone {
			idx[strings.ToLower(u.Mail)] = u.idx
		}
	}
	s.mail.byMail[t.id] = mailIndexPart{version: t.version, idx: idx}
	return idx
}

func (s *Server) box(t *tenant, u *userRec) *mailbox {
	k := t.id + "/" + strings.ToLower(u.ID)
	b := s.mail.boxes[k]
	if b == nil {
		b = &mailbox{saved: map[string][]int32{}}
		s.mail.boxes[k] = b
	}
	return b
}

// outlookBudget checks Outlook's per-app, per-mailbox request budget: a 429 when the request
// would exceed it, else the window to count it in once it is answered (refused requests,
// whatever the reason, do not count).
func (s *Server) outlookBudget(g *gctx, u *userRec) (*window, *gresp) {
	lim := s.mail.limits.RequestsPer10Min
	if lim <= 0 {
		return nil, nil
	}
	k := appBox{g.t.id, strings.ToLower(g.appID), strings.ToLower(u.ID)}
	w := s.mail.apps[k]
	if w == nil {
		w = &window{}
		s.mail.apps[k] = w
	}
	w.prune(g.now, 10*time.Minute)
	if d := w.wait(g.now, 10*time.Minute, 1, lim); d > 0 {
		s.mail.stats.ThrottledRequests++
		return nil, new(throttled("ApplicationThrottled", "Application is over its MailboxRequests limit.", d))
	}
	return w, nil
}

// --- sendMail --------------------------------------------------------------------------------

type mailRecipient struct {
	EmailAddress *struct {
		Address string `json:"address"`
		Name    string `json:"name"`
	} `json:"emailAddress"`
}

type sendMailBody struct {
	Message *struct {
		Subject string `json:"subject"`
		Body    *struct {
			ContentType string `json:"contentType"`
			Content     string `json:"content"`
		} `json:"body"`
		ToRecipients           []mailRecipient `json:"toRecipients"`
		CcRecipients           []mailRecipient `json:"ccRecipients"`
		BccRecipients          []mailRecipient `json:"bccRecipients"`
		ReplyTo                []mailRecipient `json:"replyTo"`
		InternetMessageID      *string         `json:"internetMessageId"`
		InternetMessageHeaders *[]struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"internetMessageHeaders"`
	} `json:"message"`
	SaveToSentItems json.RawMessage `json:"saveToSentItems"`
}

// maxSendMailBody bounds the JSON request (Graph's limit for a JSON sendMail is 4 MB; larger
// messages need an upload session, which the sim does not implement).
const maxSendMailBody = 4 << 20

var messageIDPattern = regexp.MustCompile(`^<[^<>@\s]+@[^<>@\s]+>$`)

func (s *Server) serveSendMail(w http.ResponseWriter, r *http.Request) {
	body := io.Reader(r.Body)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		// The Graph SDKs' compression handler gzips request bodies; Graph accepts them.
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.graphError(w, r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
			return
		}
		defer zr.Close()
		body = zr
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxSendMailBody+1))
	if err != nil {
		return // the client went away
	}
	var (
		wait  time.Duration
		wake  chan struct{}
		start = time.Now()
		key   appBox
	)
	resp := s.runGraphDenied(r, permMailSend, outlookDenied(), func(r *http.Request, g *gctx) gresp {
		out := s.sendMail(r, g, raw, &key)
		if out.err == nil {
			wait, wake = s.mail.limits.Latency, s.mail.wake
		}
		return out
	})
	if resp.err != nil && resp.err.status != http.StatusUnauthorized {
		s.mu.Lock()
		if resp.err.status == http.StatusBadRequest || resp.err.status == http.StatusRequestEntityTooLarge {
			s.mail.stats.Invalid++
		} else if resp.err.status == http.StatusForbidden || resp.err.status == http.StatusNotFound {
			s.mail.stats.Denied++
		}
		s.mu.Unlock()
	}
	if resp.err == nil && key != (appBox{}) {
		// In flight: wait Latency (re-read whenever SetMailLimits changes it), then answer.
		for wait > 0 {
			t := time.NewTimer(time.Until(start.Add(wait)))
			select {
			case <-t.C:
				wait = 0
			case <-wake:
				t.Stop()
				s.mu.Lock()
				wait, wake = s.mail.limits.Latency, s.mail.wake
				s.mu.Unlock()
				if !time.Now().Before(start.Add(wait)) {
					wait = 0
				}
			case <-r.Context().Done():
				t.Stop()
				wait = 0
			}
		}
		s.mu.Lock()
		if s.mail.inflight[key]--; s.mail.inflight[key] <= 0 {
			delete(s.mail.inflight, key)
		}
		s.mu.Unlock()
	}
	s.writeGraph(w, r, resp)
}

// sendMail validates and admits one sendMail under the state lock. On success the mail is
// captured and one concurrency slot (*key) is held until the caller has waited Latency.
func (s *Server) sendMail(r *http.Request, g *gctx, raw []byte, key *appBox) gresp {
	if e := checkQuery(r.URL.Query()); e != nil {
		return *e
	}
	u, e := s.mailUser(g, strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/users/"), "/")[0])
	if e != nil {
		return *e
	}
	lim := s.mail.limits
	k := appBox{g.t.id, strings.ToLower(g.appID), strings.ToLower(u.ID)}
	if lim.Concurrency > 0 && s.mail.inflight[k] >= lim.Concurrency {
		s.mail.stats.ThrottledConcurrency++
		return throttled("ApplicationThrottled", "Application is over its MailboxConcurrency limit.", max(lim.Latency, time.Second))
	}
	budget, e := s.outlookBudget(g, u)
	if e != nil {
		return *e
	}
	if len(raw) > maxSendMailBody {
		return errResp(http.StatusRequestEntityTooLarge, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
	}
	m, e := parseSendMail(raw)
	if e != nil {
		return *e
	}
	n := len(m.To) + len(m.Cc) + len(m.Bcc)

	// Exchange Online sending limits of the mailbox (all apps).
	b := s.box(g.t, u)
	if lim.PerMinute > 0 {
		b.rate.prune(g.now, time.Minute)
		if d := b.rate.wait(g.now, time.Minute, 1, lim.PerMinute); d > 0 {
			s.mail.stats.ThrottledRate++
			return throttled("ApplicationThrottled", fmt.Sprintf("Application is over its message rate limit: the mailbox can send %d messages per minute.", lim.PerMinute), d)
		}
	}
	if lim.DailyRecipients > 0 {
		b.daily.prune(g.now, 24*time.Hour)
		if d := b.daily.wait(g.now, 24*time.Hour, n, lim.DailyRecipients); d > 0 {
			s.mail.stats.ThrottledDaily++
			return throttled("ErrorSubmissionQuotaExceeded", fmt.Sprintf("Cannot submit message: the mailbox has reached its recipient rate limit of %d recipients per 24 hours.", lim.DailyRecipients), d)
		}
	}
	b.rate.add(g.now, 1)
	b.daily.add(g.now, n)
	if budget != nil {
		budget.add(g.now, 1)
	}

	m.From = u.Mail
	m.SentAt = g.now.UTC()
	m.ClientID = g.appID
	if m.InternetMessageID == "" {
		var id [16]byte
		rand.Read(id[:])
		m.InternetMessageID = "<" + strings.ToUpper(hex.EncodeToString(id[:])) + "@m365sim.outlook.example>"
	}
	l := s.mail.sent[g.t.id]
	if m.SavedToSentItems {
		lk := strings.ToLower(m.InternetMessageID)
		b.saved[lk] = append(b.saved[lk], int32(len(l)))
	}
	s.mail.sent[g.t.id] = append(l, m)
	s.mail.stats.Accepted++
	s.mail.stats.Recipients += int64(n)
	s.mail.inflight[k]++
	s.mail.stats.PeakConcurrency = max(s.mail.stats.PeakConcurrency, s.mail.inflight[k])
	*key = k
	return gresp{status: http.StatusAccepted}
}

// parseSendMail decodes and validates a sendMail body as Graph and Exchange do.
func parseSendMail(raw []byte) (SentMail, *gresp) {
	var m SentMail
	var body sendMailBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return m, new(errResp(http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."))
	}
	msg := body.Message
	if msg == nil {
		return m, new(errResp(http.StatusBadRequest, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty."))
	}
	m.SavedToSentItems = true
	if v := strings.Trim(strings.ToLower(string(body.SaveToSentItems)), `"`); v != "" && v != "null" {
		switch v {
		case "true":
		case "false":
			m.SavedToSentItems = false
		default:
			return m, new(errResp(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Cannot convert the literal '%s' to the expected type 'Edm.Boolean'.", string(body.SaveToSentItems))))
		}
	}
	m.Subject = msg.Subject
	m.ContentType = "text"
	if msg.Body != nil {
		m.Content = msg.Body.Content
		switch strings.ToLower(msg.Body.ContentType) {
		case "", "text":
		case "html":
			m.ContentType = "html"
		default:
			return m, new(errResp(http.StatusBadRequest, "RequestBodyRead", fmt.Sprintf("Requested value '%s' was not found.", msg.Body.ContentType)))
		}
	}

	n := len(msg.ToRecipients) + len(msg.CcRecipients) + len(msg.BccRecipients)
	if n == 0 {
		return m, new(invalidRecipients("A message can't be sent because it contains no recipients."))
	}
	if n > MaxMailRecipients {
		return m, new(invalidRecipients(fmt.Sprintf("This message wasn't delivered to anyone because there are too many recipients. The limit is %d. This message has %d recipients.", MaxMailRecipients, n)))
	}
	addrs := func(rs []mailRecipient, check bool) ([]string, *gresp) {
		var out []string
		for _, rc := range rs {
			a := ""
			if rc.EmailAddress != nil {
				a = strings.TrimSpace(rc.EmailAddress.Address)
			}
			if check && !validAddress(a) {
				return nil, new(invalidRecipients(fmt.Sprintf("Recipient '%s' is not resolved. All recipients must be resolved before a message can be submitted.", a)))
			}
			if check && strings.HasSuffix(strings.ToLower(a), ".invalid") {
				// Sim convention: .invalid domains (RFC 2606) never resolve.
				return nil, new(invalidRecipients(fmt.Sprintf("Recipient '%s' is not resolved. All recipients must be resolved before a message can be submitted.", a)))
			}
			out = append(out, a)
		}
		return out, nil
	}
	var e *gresp
	if m.To, e = addrs(msg.ToRecipients, true); e != nil {
		return m, e
	}
	if m.Cc, e = addrs(msg.CcRecipients, true); e != nil {
		return m, e
	}
	if m.Bcc, e = addrs(msg.BccRecipients, true); e != nil {
		return m, e
	}
	m.ReplyTo, _ = addrs(msg.ReplyTo, false)

	if hs := msg.InternetMessageHeaders; hs != nil {
		if len(*hs) == 0 || len(*hs) > MaxMailHeaders {
			return m, new(errResp(http.StatusBadRequest, "InvalidInternetMessageHeaderCollection", fmt.Sprintf("Maximum number of headers in one message should be less than or equal to %d.", MaxMailHeaders)))
		}
		m.Headers = make(map[string]string, len(*hs))
		for _, h := range *hs {
			if !strings.HasPrefix(h.Name, "x-") && !strings.HasPrefix(h.Name, "X-") {
				return m, new(errResp(http.StatusBadRequest, "InvalidInternetMessageHeader", fmt.Sprintf("The internet message header name '%s' should start with 'x-' or 'X-'.", h.Name)))
			}
			m.Headers[h.Name] = h.Value
		}
	}
	if id := msg.InternetMessageID; id != nil && *id != "" {
		if !messageIDPattern.MatchString(*id) {
			return m, new(errResp(http.StatusBadRequest, "InvalidInternetMessageId", fmt.Sprintf("The internet message id '%s' is not valid: it must have the form '<local@domain>' (RFC 2822).", *id)))
		}
		m.InternetMessageID = *id
	}
	return m, nil
}

// validAddress reports whether a is a bare, syntactically valid address (local@domain).
func validAddress(a string) bool {
	if a == "" || strings.ContainsAny(a, "<> \t") {
		return false
	}
	p, err := mail.ParseAddress(a)
	if err != nil || !strings.EqualFold(p.Address, a) {
		return false
	}
	local, domain, ok := strings.Cut(a, "@")
	return ok && local != "" && domain != "" && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

// --- Sent Items lookup -----------------------------------------------------------------------

var sentItemProps = []string{"id", "internetMessageId", "subject", "sentDateTime", "from", "toRecipients", "ccRecipients", "bccRecipients"}

// filterEq matches `prop eq 'literal'`, a quote inside the literal written twice (OData).
var filterEq = regexp.MustCompile(`^\s*([A-Za-z/]+)\s+eq\s+'((?:[^']|'')*)'\s*$`)

func (s *Server) serveSentItems(w http.ResponseWriter, r *http.Request) {
	s.writeGraph(w, r, s.runGraphDenied(r, permMailRead, outlookDenied(), s.sentItems))
}

func (s *Server) sentItems(r *http.Request, g *gctx) gresp {
	q := r.URL.Query()
	if e := checkQuery(q, "filter", "select", "top"); e != nil {
		return *e
	}
	seg := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1.0/users/"), "/")[0]
	u, e := s.mailUser(g, seg)
	if e != nil {
		return *e
	}
	budget, e := s.outlookBudget(g, u)
	if e != nil {
		return *e
	}
	sel := []string{}
	if v := qget(q, "select"); v != "" {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			i := slices.IndexFunc(sentItemProps, func(n string) bool { return strings.EqualFold(n, p) })
			if i < 0 {
				return errResp(http.StatusBadRequest, "RequestBroker--ParseUri", fmt.Sprintf("Could not find a property named '%s' on type 'Microsoft.OutlookServices.Message'.", p))
			}
			if !slices.Contains(sel, sentItemProps[i]) {
				sel = append(sel, sentItemProps[i])
			}
		}
	}
	top := 10 // Outlook's default page size
	if v := qget(q, "top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errResp(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid value '%s' for $top.", v))
		}
		top = min(n, 1000)
	}
	f := qget(q, "filter")
	if f == "" {
		return unhandledQuery("Sent Items listing is implemented only with $filter=internetMessageId eq '<id>'")
	}
	mt := filterEq.FindStringSubmatch(f)
	switch {
	case mt == nil && strings.Count(f, "'")%2 == 1:
		return errResp(http.StatusBadRequest, "BadRequest", "Invalid filter clause: there is an unterminated string literal.")
	case mt == nil || !strings.EqualFold(mt[1], "internetMessageId"):
		return unhandledQuery(fmt.Sprintf("Sent Items $filter %q is not implemented (only internetMessageId eq '<id>')", f))
	}
	if budget != nil {
		budget.add(g.now, 1)
	}
	want := strings.ReplaceAll(mt[2], "''", "'")
	all := s.mail.sent[g.t.id]
	var page []int32
	for _, i := range s.box(g.t, u).saved[strings.ToLower(want)] {
		if len(page) < top {
			page = append(page, i)
		}
	}
	ctx := g.base + "/v1.0/$metadata#users('" + url.PathEscape(seg) + "')/mailFolders('SentItems')/messages"
	if len(sel) > 0 {
		ctx += "(" + strings.Join(sel, ",") + ")"
	}
	props := sel
	if len(props) == 0 {
		props = sentItemProps
	}
	return gresp{body: objectList(ctx, -1, page, func(e *enc, i int32) {
		m := all[i]
		e.str("@odata.etag", `W/"`+sentItemID(g.t.id, i)[:16]+`"`)
		e.str("id", sentItemID(g.t.id, i))
		for _, p := range props {
			switch p {
			case "internetMessageId":
				e.str(p, m.InternetMessageID)
			case "subject":
				e.str(p, m.Subject)
			case "sentDateTime":
				e.str(p, m.SentAt.UTC().Format("2006-01-02T15:04:05Z"))
			case "from":
				e.key(p)
				writeRecipient(e, m.From)
			case "toRecipients", "ccRecipients", "bccRecipients":
				l := map[string][]string{"toRecipients": m.To, "ccRecipients": m.Cc, "bccRecipients": m.Bcc}[p]
				e.key(p)
				e.openArr()
				for _, a := range l {
					e.elem()
					writeRecipient(e, a)
				}
				e.closeArr()
			}
		}
	}, "")}
}

func writeRecipient(e *enc, addr string) {
	e.open()
	e.key("emailAddress")
	e.open()
	e.str("name", addr)
	e.str("address", addr)
	e.close()
	e.close()
}

// sentItemID is the Outlook item id of the tenant's i-th sent mail (stable, opaque).
func sentItemID(tenantID string, i int32) string {
	return "AAMkAD" + base64.RawURLEncoding.EncodeToString([]byte(uuidFrom(tenantID, "sent", strconv.Itoa(int(i)))))
}
