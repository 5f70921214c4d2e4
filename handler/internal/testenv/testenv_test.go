package testenv_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/queue"
	"github.com/leapchange/m365/handler/internal/tablestore"
	"github.com/leapchange/m365/handler/internal/testenv"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestRig: the tenant is consented (an app-only token has the roles), the store is the test's
// own, the queue keeps what is published.
func TestRig(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	tok, err := e.Credentials(testenv.Secret).Token(t.Context(), testenv.Tenant)
	if err != nil || len(tok.Roles) != 2 {
		t.Fatalf("token = %+v, %v; want the two consented roles", tok, err)
	}
	org, _ := tablestore.NewOrg("acme")
	if _, err := e.Store.Table("things").Insert(t.Context(), org, "k", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Queue.Publish(t.Context(), queue.Message{Queue: "q", ID: "1"}); err != nil || len(e.Queue.Published()) != 1 {
		t.Errorf("queue: %v, %d published", err, len(e.Queue.Published()))
	}
	bare := testenv.New(t, testenv.Options{NoConsent: true})
	if _, err := bare.Credentials(testenv.Secret).Token(t.Context(), testenv.Tenant); err == nil {
		t.Error("an unconsented tenant gave a token")
	}
}
