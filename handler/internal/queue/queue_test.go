package queue

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
)

func TestDevHostPublish(t *testing.T) {
	var got DevHostMessage
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		if strings.Contains(r.URL.Path, "/nosuch/") {
			http.Error(w, "unknown queue nosuch", http.StatusNotFound)
			return
		}
		if strings.Contains(r.URL.Path, "/broken/") {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)

	p, err := Open(Connection{ConnectionString: "devhost=" + srv.URL}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	err = p.Publish(t.Context(), Message{Queue: SyncJobs, ID: "run-1/step-0", Body: []byte(`{"org":"acme"}`), ContentType: "application/json", NotBefore: at})
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/_devhost/queues/sync-jobs/messages" || got.MessageID != "run-1/step-0" || string(got.Body) != `{"org":"acme"}` || !got.ScheduledEnqueueTime.Equal(at) {
		t.Errorf("stand-in got %s %+v", gotPath, got)
	}

	for _, tc := range []struct {
		name string
		m    Message
		want error
	}{
		{"no id", Message{Queue: SyncJobs, Body: []byte("x")}, ErrInvalid},
		{"no queue", Message{ID: "a"}, ErrInvalid},
		{"too big", Message{Queue: SyncJobs, ID: "a", Body: make([]byte, maxBody+1)}, ErrInvalid},
		{"unknown queue", Message{Queue: "nosuch", ID: "a"}, ErrNotFound},
		{"server error", Message{Queue: "broken", ID: "a"}, ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := p.Publish(t.Context(), tc.m); !errors.Is(err, tc.want) {
				t.Errorf("Publish err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDevHostUnreachableIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	p, err := NewDevHost(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), Message{Queue: SyncJobs, ID: "a"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

func TestOpenRejectsBadConnections(t *testing.T) {
	for _, c := range []Connection{
		{},
		{ConnectionString: "devhost=not a url"},
		{ConnectionString: "Endpoint=nonsense;SharedAccessKey=s3cret"},
	} {
		_, err := Open(c, Options{})
		if err == nil {
			t.Errorf("Open(%+v) succeeded", c)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the key: %v", err)
		}
	}
}

func TestToServiceBus(t *testing.T) {
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.FixedZone("CET", 3600))
	got := toServiceBus(Message{Queue: SyncJobs, ID: "id-1", Body: []byte("b"), ContentType: "application/json", Subject: "sync", Properties: map[string]string{"org": "acme"}, NotBefore: at})
	if *got.MessageID != "id-1" || *got.ContentType != "application/json" || *got.Subject != "sync" || got.ApplicationProperties["org"] != "acme" ||
		got.ScheduledEnqueueTime.Location() != time.UTC || !got.ScheduledEnqueueTime.Equal(at) {
		t.Errorf("toServiceBus = %+v", got)
	}
	if plain := toServiceBus(Message{ID: "x"}); plain.ScheduledEnqueueTime != nil || plain.ContentType != nil {
		t.Errorf("empty fields should stay nil: %+v", plain)
	}
}

func TestTranslate(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{&azservicebus.Error{Code: azservicebus.CodeNotFound}, ErrNotFound},
		{&azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}, ErrAuth},
		{&azservicebus.Error{Code: azservicebus.CodeConnectionLost}, ErrUnavailable},
		{&azservicebus.Error{Code: azservicebus.CodeTimeout}, ErrUnavailable},
		{context.DeadlineExceeded, ErrUnavailable},
	} {
		if err := translate("op", tc.in); !errors.Is(err, tc.want) {
			t.Errorf("translate(%v) = %v, want %v", tc.in, err, tc.want)
		}
	}
}
