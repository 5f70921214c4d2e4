package richnotify_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/m365sim"
	"github.com/leapchange/m365/handler/internal/richnotify"
	"github.com/leapchange/m365/handler/internal/testenv"
)

// TestSimulatedTenantNotifications: the rich notifications the simulated tenant posts (it
// implements Graph's encryption itself) decrypt with the keyring, and their validationTokens
// pass the validator — the two implementations agree.
func TestSimulatedTenantNotifications(t *testing.T) {
	clk := testenv.NewClock(testNow)
	sim := testenv.StartSim(t, m365sim.Options{Clock: clk.Now})
	sim.AddTenant(tenantID, "contoso.example")
	sim.RegisterApp(appID, "s3cret-value")
	if err := sim.Consent(tenantID, appID, "Team.ReadBasic.All", "ChannelMessage.Read.All"); err != nil {
		t.Fatal(err)
	}
	team, err := sim.AddTeam(tenantID, m365sim.Team{DisplayName: "Finance"}, m365sim.Channel{DisplayName: "Budget"})
	if err != nil {
		t.Fatal(err)
	}
	chans, err := sim.ChannelsOf(tenantID, team.ID)
	if err != nil || len(chans) < 2 {
		t.Fatalf("channels %v, %v", chans, err)
	}
	channel := chans[1].ID

	var mu sync.Mutex
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("validationToken"); tok != "" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, tok)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(hook.Close)

	// An app-only token, then the subscription with our current certificate.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {"s3cret-value"}, "scope": {"https://graph.microsoft.com/.default"}}
	resp, err := sim.HTTPClient().PostForm(sim.URL()+"/"+tenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if tr.AccessToken == "" {
		t.Fatalf("no token (HTTP %d)", resp.StatusCode)
	}
	k := keyring(t)
	cur := k.Current()
	sub := fmt.Sprintf(`{"changeType":"created,updated","resource":"/teams/%s/channels/%s/messages","notificationUrl":%q,
		"expirationDateTime":%q,"clientState":"c1","includeResourceData":true,"encryptionCertificate":%q,"encryptionCertificateId":%q}`,
		team.ID, channel, hook.URL, clk.Now().Add(time.Hour).Format(time.RFC3339), cur.Base64DER(), cur.ID)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sim.GraphURL()+"/subscriptions", strings.NewReader(sub))
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = sim.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create subscription: HTTP %d %s", resp.StatusCode, raw)
	}

	id, err := sim.PostChannelMessage(tenantID, team.ID, channel, m365sim.ChannelMessageInput{AuthorID: "u1", AuthorName: "Ines", Content: "<p>Le déploiement est bloqué</p>"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.WaitDeliveries(t.Context()); err != nil {
		t.Fatal(err)
	}

	v := richnotify.NewTokenValidator(richnotify.TokenConfig{
		KeysURL: sim.URL() + "/common/discovery/v2.0/keys", AppID: appID, HTTPClient: sim.HTTPClient(), Now: clk.Now,
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d notification posts, want 1", len(bodies))
	}
	var coll struct {
		Value []struct {
			TenantID         string                       `json:"tenantId"`
			EncryptedContent *richnotify.EncryptedContent `json:"encryptedContent"`
		} `json:"value"`
		ValidationTokens []string `json:"validationTokens"`
	}
	if err := json.Unmarshal(bodies[0], &coll); err != nil {
		t.Fatal(err)
	}
	if len(coll.Value) != 1 || coll.Value[0].EncryptedContent == nil || len(coll.ValidationTokens) != 1 {
		t.Fatalf("collection %s", bodies[0])
	}
	if err := v.Validate(t.Context(), coll.ValidationTokens[0], coll.Value[0].TenantID); err != nil {
		t.Errorf("validation token: %v", err)
	}
	plain, err := k.Decrypt(*coll.Value[0].EncryptedContent)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	var msg struct {
		ID   string `json:"id"`
		Body struct {
			Content string `json:"content"`
		} `json:"body"`
	}
	if err := json.Unmarshal(plain, &msg); err != nil || msg.ID != id || !strings.Contains(msg.Body.Content, "déploiement") {
		t.Errorf("decrypted %s (%v), want message %s", plain, err, id)
	}
}
