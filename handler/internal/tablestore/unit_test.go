package tablestore

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/leapchange/m365/handler/internal/azuritetest"
	"github.com/leapchange/m365/handler/internal/errkind"
)

// fakeTransport answers every request with one canned response.
type fakeTransport struct {
	status int
	header http.Header
	body   string
	err    error
}

func (f fakeTransport) Do(req *http.Request) (*http.Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	h := f.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: f.status, Header: h, Body: io.NopCloser(strings.NewReader(f.body)), Request: req}, nil
}

func openFake(t *testing.T, f fakeTransport) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{
		ConnectionString: azuritetest.ConnectionString(1),
		Prefix:           "testfake",
		ClientOptions: azcore.ClientOptions{
			Transport: f,
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServiceErrorsMapToKinds(t *testing.T) {
	org, _ := NewOrg("acme")
	for name, tc := range map[string]struct {
		f    fakeTransport
		want error
	}{
		"429":            {fakeTransport{status: 429}, ErrThrottled},
		"503 ServerBusy": {fakeTransport{status: 503, header: http.Header{"X-Ms-Error-Code": {"ServerBusy"}}}, ErrThrottled},
		"500":            {fakeTransport{status: 500}, ErrUnavailable},
		"504":            {fakeTransport{status: 504}, ErrUnavailable},
		"403":            {fakeTransport{status: 403, header: http.Header{"X-Ms-Error-Code": {"AuthorizationFailure"}}}, ErrAuth},
		"401":            {fakeTransport{status: 401}, ErrAuth},
		"413":            {fakeTransport{status: 413, header: http.Header{"X-Ms-Error-Code": {"EntityTooLarge"}}}, ErrInvalid},
		"network":        {fakeTransport{err: errors.New("connection refused")}, nil},
		"deadline":       {fakeTransport{err: context.DeadlineExceeded}, ErrUnavailable},
		"404 no code":    {fakeTransport{status: 404}, ErrNotFound},
		"412 no code":    {fakeTransport{status: 412}, ErrConflict},
	} {
		t.Run(name, func(t *testing.T) {
			s := openFake(t, tc.f)
			tbl := s.Table("items")
			tbl.ready.Store(true) // skip creation: the fake answers everything the same way
			_, _, err := Get[struct{}](t.Context(), tbl, org, "k")
			if err == nil {
				t.Fatal("Get succeeded against a failing service")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if k := errkind.Of(err); k.Transient() != (tc.want == ErrThrottled || tc.want == ErrUnavailable) {
				t.Errorf("errkind.Of(%v) = %v", err, k)
			}
			var re *azcore.ResponseError
			if tc.f.err == nil && !errors.As(err, &re) {
				t.Errorf("err %v does not carry the *azcore.ResponseError", err)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("message is not one line: %q", err)
			}
			if got := s.Stats(); got.Requests != 1 || (tc.f.status == 429 || tc.f.status == 503) != (got.Throttled == 1) {
				t.Errorf("Stats = %+v", got)
			}
		})
	}
}

func TestInnerBatchError(t *testing.T) {
	body := "--batchresponse_x\r\nContent-Type: multipart/mixed; boundary=changesetresponse_y\r\n\r\n" +
		"--changesetresponse_y\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"HTTP/1.1 412 Precondition Failed\r\nContent-ID: 8\r\nContent-Type: application/json\r\n\r\n" +
		`{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"lang":"en-US","value":"6:The update condition specified in the request was not satisfied."}}}` +
		"\r\n--changesetresponse_y--\r\n--batchresponse_x--\r\n"
	resp := &http.Response{StatusCode: 202, Body: io.NopCloser(strings.NewReader(body))}
	status, code, index := innerBatchError(resp)
	if status != 412 || code != "UpdateConditionNotSatisfied" || index != 6 {
		t.Errorf("innerBatchError = %d %q %d, want 412 UpdateConditionNotSatisfied 6 (message prefix wins over Content-ID)", status, code, index)
	}
}

func TestSplit(t *testing.T) {
	mk := func(keys ...string) []Op {
		var ops []Op
		for _, k := range keys {
			ops = append(ops, Op{Key: k})
		}
		return ops
	}
	sizes := func(n, each int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = each
		}
		return s
	}
	var many []string
	for i := range 201 {
		many = append(many, strings.Repeat("k", i+1))
	}
	for name, tc := range map[string]struct {
		ops   []Op
		sizes []int
		want  []chunk
	}{
		"one":        {mk("a"), sizes(1, 10), []chunk{{0, 1}}},
		"201":        {mk(many...), sizes(201, 10), []chunk{{0, 100}, {100, 200}, {200, 201}}},
		"repeat":     {mk("a", "b", "a", "c", "b", "b"), sizes(6, 10), []chunk{{0, 2}, {2, 5}, {5, 6}}},
		"bytes":      {mk("a", "b", "c"), sizes(3, 2<<20), []chunk{{0, 1}, {1, 2}, {2, 3}}},
		"big single": {mk("a"), sizes(1, 8<<20), []chunk{{0, 1}}},
	} {
		if got := split(tc.ops, tc.sizes); !slices.Equal(got, tc.want) {
			t.Errorf("%s: split = %v, want %v", name, got, tc.want)
		}
	}
}

func TestOpenChecksConfigWithoutIO(t *testing.T) {
	ctx := t.Context()
	for name, cfg := range map[string]Config{
		"nothing":       {},
		"both":          {ConnectionString: azuritetest.ConnectionString(1), ServiceURL: "https://a.table.core.windows.net"},
		"no credential": {ServiceURL: "https://a.table.core.windows.net"},
		"bad prefix":    {ConnectionString: azuritetest.ConnectionString(1), Prefix: "1abc"},
		"long prefix":   {ConnectionString: azuritetest.ConnectionString(1), Prefix: "a" + strings.Repeat("b", 32)},
		"bad conn":      {ConnectionString: "nonsense"},
	} {
		if _, err := Open(ctx, cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%s) err = %v, want ErrInvalid", name, err)
		}
	}
	// Port 1 has nothing listening: Open must not notice.
	if _, err := Open(ctx, Config{ConnectionString: azuritetest.ConnectionString(1), Prefix: "Prod"}); err != nil {
		t.Errorf("Open did I/O or rejected a good config: %v", err)
	}
}

func TestTablePanicsOnBadName(t *testing.T) {
	s, err := Open(t.Context(), Config{ConnectionString: azuritetest.ConnectionString(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "ab", "1abc", "a-b", strings.Repeat("a", 32)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Table(%q) did not panic", name)
				}
			}()
			s.Table(name)
		}()
	}
	if s.Table("items") != s.Table("items") {
		t.Error("Table returned two handles for one table")
	}
}

func TestDropTablesRefusesNonTestPrefix(t *testing.T) {
	for _, p := range []string{"", "prod", "leap", "t", "tenant1", "tabc", "test"} {
		s, err := Open(t.Context(), Config{ConnectionString: azuritetest.ConnectionString(1), Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DropTables(t.Context()); !errors.Is(err, ErrInvalid) {
			t.Errorf("DropTables with prefix %q: err = %v, want ErrInvalid", p, err)
		}
	}
	for _, p := range []string{azuritetest.Prefix(), "testabc", "t" + strings.Repeat("0", 11) + "1" + "x"} {
		if p[1] == '0' {
			continue // a 1970 time: not accepted, checked below
		}
		if !IsTestPrefix(p) {
			t.Errorf("IsTestPrefix(%q) = false", p)
		}
	}
	if IsTestPrefix("t" + strings.Repeat("0", 12) + "1") {
		t.Error("IsTestPrefix accepted a 1970 timestamp")
	}
}

func TestKeyEscape(t *testing.T) {
	for in, want := range map[string]string{
		"Alice.Smith@contoso.com": "Alice.Smith@contoso.com",
		"a+b":                     "a~2Bb",
		"~":                       "~7E",
		"o'b":                     "o~27b",
		"é":                       "~C3~A9",
		"a/b#c?d\\":               "a~2Fb~23c~3Fd~5C",
	} {
		if got := KeyEscape(in); got != want {
			t.Errorf("KeyEscape(%q) = %q, want %q", in, got, want)
		}
		if back, err := KeyUnescape(want); err != nil || back != in {
			t.Errorf("KeyUnescape(%q) = %q, %v", want, back, err)
		}
	}
	if KeyEscape("ab")+KeyEscape("+c") != KeyEscape("ab+c") {
		t.Error("KeyEscape does not work piece by piece")
	}
	for _, bad := range []string{"~", "~4", "~zz", "a b", "a|b"} {
		if _, err := KeyUnescape(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("KeyUnescape(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestFilterHelpers(t *testing.T) {
	for f, want := range map[string]bool{
		"a eq 1":               true,
		"(a eq 1) or (b eq 2)": true,
		"a eq ')'":             true,
		"a eq 'it''s (x'":      true,
		"true) or (true":       false,
		"a eq 'x":              false,
		"((a)":                 false,
	} {
		if got := balanced(f); got != want {
			t.Errorf("balanced(%q) = %v, want %v", f, got, want)
		}
	}
	if end, ok := prefixEnd("u|"); !ok || end != "u}" {
		t.Errorf("prefixEnd(u|) = %q, %v", end, ok)
	}
	if Quote("it's") != "'it''s'" {
		t.Errorf("Quote(it's) = %s", Quote("it's"))
	}
}

func TestEncodeTypes(t *testing.T) {
	type embedded struct {
		Inner int64 `json:"inner"`
	}
	type entity struct {
		embedded
		S  string    `json:"s"`
		I  int       `json:"i"`
		I8 int8      `json:"i8"`
		F  float32   `json:"f"`
		T  time.Time `json:"t"`
		N  int64     `json:"n,string"`
		X  string    `json:"-"`
	}
	org, _ := NewOrg("acme")
	e, err := encode(org, "k", entity{embedded{5}, "s", 1, 2, 1, time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC), 9, "x"})
	if err != nil {
		t.Fatal(err)
	}
	got := string(e.body)
	for _, want := range []string{
		`"inner":"5"`, `"inner@odata.type":"Edm.Int64"`, `"i":"1"`, `"i@odata.type":"Edm.Int64"`, `"i8":2`,
		`"f":1`, `"f@odata.type":"Edm.Double"`, `"t":"2026-01-01T00:00:00.0000000Z"`, `"t@odata.type":"Edm.DateTime"`,
		`"n":"9"`, `"PartitionKey":"acme"`, `"RowKey":"k"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("encoded %s\nlacks %s", got, want)
		}
	}
	if strings.Contains(got, `"X"`) || strings.Contains(got, `n@odata`) {
		t.Errorf("encoded %s has a skipped or string-tagged field wrong", got)
	}
}
