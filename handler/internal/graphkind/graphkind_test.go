package graphkind

import (
	"net/http"
	"testing"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   errkind.Kind
	}{
		{410, "", errkind.Resync},
		{400, "syncStateNotFound", errkind.Resync},
		{429, "", errkind.Throttled},
		{503, "", errkind.Throttled},
		{504, "", errkind.Throttled},
		{500, "", errkind.Unavailable},
		{502, "", errkind.Unavailable},
		{401, "InvalidAuthenticationToken", errkind.Unauthorized},
		{403, "Authorization_RequestDenied", errkind.Forbidden},
		{404, "Request_ResourceNotFound", errkind.NotFound},
		{400, "Request_BadRequest", errkind.Invalid},
		{409, "", errkind.Other},
	} {
		if got := Of(tc.status, tc.code); got != tc.want {
			t.Errorf("Of(%d, %q) = %v, want %v", tc.status, tc.code, got, tc.want)
		}
	}
}

func TestFromAnswer(t *testing.T) {
	e := FromAnswer(429, http.Header{"Retry-After": {"1.5"}}, []byte(`{"error":{"code":"TooManyRequests","message":"slow down"}}`))
	if e.Kind != errkind.Throttled || e.Code != "TooManyRequests" || e.Message != "slow down" || e.RetryAfter != 1500*time.Millisecond {
		t.Errorf("FromAnswer = %+v", e)
	}
	if e := FromAnswer(500, http.Header{}, []byte("not json")); e.Kind != errkind.Unavailable || e.Code != "" {
		t.Errorf("FromAnswer(garbage) = %+v", e)
	}
}
