package scripts

// Tests for scripts/local-stack.sh (the services and local.settings.json of a `func start`
// session) and local.settings.funcstart.example.json:
//
//	go test -run LocalStack ./scripts
//
// TestLocalStack starts the real script: Azurite (blob, queue, table) from node_modules and the
// simulated tenant built from handler/cmd/m365sim (standard library only, so it builds quickly),
// then checks that the settings it wrote reach both, and that SIGTERM stops everything.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// funcStartExtraSettings are the keys of a `func start` local.settings.json that the handler
// does not read itself: the host's runtime and storage, and the CA bundle for the simulated
// tenant (read by Go's crypto/x509).
var funcStartExtraSettings = []string{"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "SSL_CERT_FILE"}

// handlerSettingNames reads settingNames from handler/config.go, the list of every setting the
// handler reads, so that this test follows it without importing package main.
func handlerSettingNames(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "handler", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\bsettingNames\s*=\s*\[\]string\{(.*?)\n\}`).FindSubmatch(src)
	if m == nil {
		t.Fatal("handler/config.go: no `settingNames = []string{…}` (this test reads the handler's settings from it)")
	}
	var names []string
	for _, q := range regexp.MustCompile(`"([^"]+)"`).FindAllSubmatch(m[1], -1) {
		names = append(names, string(q[1]))
	}
	if len(names) < 10 {
		t.Fatalf("handler/config.go settingNames: only %d names parsed: %q", len(names), names)
	}
	return names
}

type funcStartSettings struct {
	IsEncrypted *bool             `json:"IsEncrypted"`
	Values      map[string]string `json:"Values"`
	Host        struct {
		LocalHttpPort int    `json:"LocalHttpPort"`
		CORS          string `json:"CORS"`
	} `json:"Host"`
}

func readFuncStartSettings(t *testing.T, path string) funcStartSettings {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s funcStartSettings
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // Core Tools reads IsEncrypted, Values, Host (and ConnectionStrings)
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: not a local.settings.json of string values: %v", path, err)
	}
	if s.IsEncrypted == nil || *s.IsEncrypted {
		t.Errorf("%s: IsEncrypted must be false", path)
	}
	return s
}

// checkSettingKeys: every setting the handler reads (except the port the host sets) is present,
// and nothing else besides funcStartExtraSettings.
func checkSettingKeys(t *testing.T, name string, values map[string]string, handlerNames []string) {
	t.Helper()
	for _, k := range handlerNames {
		if k == "FUNCTIONS_CUSTOMHANDLER_PORT" {
			if _, ok := values[k]; ok {
				t.Errorf("%s sets FUNCTIONS_CUSTOMHANDLER_PORT, which the Functions host sets", name)
			}
			continue
		}
		if _, ok := values[k]; !ok {
			t.Errorf("%s lacks %s (handler/config.go reads it)", name, k)
		}
	}
	for k := range values {
		if !slices.Contains(handlerNames, k) && !slices.Contains(funcStartExtraSettings, k) {
			t.Errorf("%s has %s, which neither the handler nor the host reads", name, k)
		}
	}
	if got := values["FUNCTIONS_WORKER_RUNTIME"]; got != "custom" {
		t.Errorf("%s: FUNCTIONS_WORKER_RUNTIME = %q, want custom", name, got)
	}
	if values["AzureWebJobsStorage"] == "" {
		t.Errorf("%s: AzureWebJobsStorage is empty; Core Tools needs it for every trigger but HTTP", name)
	}
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkHandlerRules applies the checks of handler/config.go's validate that a local.settings.json
// can fail (that file is authoritative; this is its shape, so a mistake shows here before the
// handler refuses to start under `func start`).
func checkHandlerRules(t *testing.T, name string, v map[string]string) {
	t.Helper()
	isURL := func(s string, schemes ...string) bool {
		u, err := url.Parse(s)
		return err == nil && u.Host != "" && slices.Contains(schemes, u.Scheme)
	}
	isLocalOrHTTPS := func(s string) bool {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return false
		}
		ip := net.ParseIP(u.Hostname())
		return u.Scheme == "https" || (u.Scheme == "http" && (u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())))
	}
	tc := v["TablesConnection"]
	if !strings.Contains(tc, "AccountName=") && !strings.Contains(tc, "TableEndpoint=") {
		t.Errorf("%s: TablesConnection is not a storage connection string: %q", name, tc)
	}
	sb, ns := v["ServiceBusConnection"], v["ServiceBusConnection__fullyQualifiedNamespace"]
	if !strings.Contains(sb, "Endpoint=sb://") && (sb != "" || ns == "") {
		t.Errorf("%s: ServiceBusConnection must be a Service Bus connection string (Endpoint=sb://…), or empty beside ServiceBusConnection__fullyQualifiedNamespace, under func start; got %q", name, sb)
	}
	for _, k := range []string{"M365_CLIENT_ID", "BOT_APP_ID", "BOT_TENANT_ID"} {
		if !guidRE.MatchString(v[k]) {
			t.Errorf("%s: %s must be a GUID, got %q", name, k, v[k])
		}
	}
	for _, k := range []string{"M365_CLIENT_SECRET", "BOT_APP_SECRET"} {
		if v[k] == "" {
			t.Errorf("%s: %s is empty", name, k)
		}
	}
	for _, k := range []string{"GRAPH_BASE_URL", "AZURE_AUTHORITY_HOST", "BOT_OPENID_METADATA_URL"} {
		if !isURL(v[k], "https") {
			t.Errorf("%s: %s must be an https URL, got %q", name, k, v[k])
		}
	}
	for _, k := range []string{"PUBLIC_BASE_URL", "LEAP_APP_URL"} {
		if !isLocalOrHTTPS(v[k]) {
			t.Errorf("%s: %s must be https, or http on loopback, got %q", name, k, v[k])
		}
	}
	if n := len(strings.TrimSpace(v["STATE_SIGNING_KEY"])); n < 32 {
		t.Errorf("%s: STATE_SIGNING_KEY has %d bytes, the handler wants at least 32", name, n)
	}
}

func TestLocalStackExampleSettings(t *testing.T) {
	root := repoRoot(t)
	s := readFuncStartSettings(t, filepath.Join(root, "local.settings.funcstart.example.json"))
	checkSettingKeys(t, "local.settings.funcstart.example.json", s.Values, handlerSettingNames(t))
	checkHandlerRules(t, "local.settings.funcstart.example.json", s.Values)
	if s.Host.LocalHttpPort != 7071 {
		t.Errorf("example Host.LocalHttpPort = %d, want 7071 (the port PUBLIC_BASE_URL names)", s.Host.LocalHttpPort)
	}
	if got := s.Values["PUBLIC_BASE_URL"]; got != "http://127.0.0.1:7071" {
		t.Errorf("example PUBLIC_BASE_URL = %q, want http://127.0.0.1:7071", got)
	}
}

func runLocalStack(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "scripts", "local-stack.sh")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestLocalStackUsage(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("local-stack.sh is a bash script")
	}
	out, err := runLocalStack(t, "--help")
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"--out", "--users", "--groups", "--port", "--service-bus", "--service-bus-namespace", "--consented", "--state", "package.sh", "READY"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %s:\n%s", want, out)
		}
	}

	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return -1
	}
	for _, args := range [][]string{{"--bogus"}, {"--users", "0"}, {"--port", "70000"}, {"--service-bus", "devhost"}, {"--service-bus-namespace", "not a host"}, {"--out"}} {
		out, err := runLocalStack(t, args...)
		if exitCode(err) != 2 {
			t.Errorf("%q: exit %d (%v), want 2 (usage)\n%s", args, exitCode(err), err, out)
		}
	}

	// A folder without the packaged app: refused before anything starts, naming package.sh.
	empty := t.TempDir()
	out, err = runLocalStack(t, "--out", empty, "--state", filepath.Join(t.TempDir(), "state"))
	if exitCode(err) != 1 || !strings.Contains(out, "scripts/package.sh") {
		t.Errorf("--out without a packaged app: exit %d, want 1 and a hint naming scripts/package.sh:\n%s", exitCode(err), out)
	}
	if _, err := os.Stat(filepath.Join(empty, "local.settings.json")); err == nil {
		t.Error("local.settings.json written into a folder without the packaged app")
	}
}

// lockedBuffer is a bytes.Buffer safe to write from one goroutine and read from another.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// storageEndpoints returns the BlobEndpoint, QueueEndpoint and TableEndpoint of a connection string.
func storageEndpoints(cs string) map[string]string {
	eps := map[string]string{}
	for part := range strings.SplitSeq(cs, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.HasSuffix(k, "Endpoint") && k != "DefaultEndpointsProtocol" {
			eps[k] = v
		}
	}
	return eps
}

func TestLocalStack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("local-stack.sh targets Linux (process groups, /etc/ssl CA bundle)")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "node_modules", ".bin", "azurite")); err != nil {
		t.Fatalf("Azurite is not installed (%v): run `npm ci` in %s (scripts/test.sh does)", err, root)
	}

	// A staged app folder as scripts/package.sh leaves it (only what the script looks at).
	stage := filepath.Join(t.TempDir(), "app")
	hostJSON, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(stage, "host.json"), string(hostJSON))
	if err := os.WriteFile(filepath.Join(stage, "handler"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	port := freeTCPPort(t)

	cmd := exec.Command("bash", filepath.Join(root, "scripts", "local-stack.sh"),
		"--out", stage, "--state", stateDir, "--users", "30", "--groups", "3", "--port", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A setting the environment already defines would win over local.settings.json under Core
	// Tools: the script must say how to run func start without it.
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var stdoutText lockedBuffer
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			stdoutText.Write([]byte(line + "\n"))
			if p, ok := strings.CutPrefix(line, "READY "); ok {
				ready <- p
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		// Whatever happened, nothing the script started outlives the test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	var settingsPath string
	select {
	case settingsPath = <-ready:
	case err := <-exited:
		t.Fatalf("local-stack.sh exited before READY: %v\nstdout:\n%s\nstderr:\n%s", err, stdoutText.String(), stderr.String())
	case <-time.After(5 * time.Minute): // a failure guard for a cold build cache, not a speed check
		t.Fatalf("no READY line from local-stack.sh after 5 minutes\nstderr:\n%s", stderr.String())
	}
	if want := filepath.Join(stage, "local.settings.json"); settingsPath != want {
		t.Errorf("READY names %s, want %s", settingsPath, want)
	}

	// The written settings: keys like the example's, the handler's rules, private file.
	if st, err := os.Stat(settingsPath); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("local.settings.json holds secrets but has mode %v", st.Mode().Perm())
	}
	s := readFuncStartSettings(t, settingsPath)
	v := s.Values
	checkSettingKeys(t, "generated local.settings.json", v, handlerSettingNames(t))
	checkHandlerRules(t, "generated local.settings.json", v)
	example := readFuncStartSettings(t, filepath.Join(root, "local.settings.funcstart.example.json"))
	var gotKeys, exampleKeys []string
	for k := range v {
		gotKeys = append(gotKeys, k)
	}
	for k := range example.Values {
		exampleKeys = append(exampleKeys, k)
	}
	slices.Sort(gotKeys)
	slices.Sort(exampleKeys)
	if !slices.Equal(gotKeys, exampleKeys) {
		t.Errorf("generated keys differ from local.settings.funcstart.example.json:\n got %q\nwant %q", gotKeys, exampleKeys)
	}
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	if v["PUBLIC_BASE_URL"] != public || s.Host.LocalHttpPort != port {
		t.Errorf("PUBLIC_BASE_URL = %q, Host.LocalHttpPort = %d; want %s and %d (--port)", v["PUBLIC_BASE_URL"], s.Host.LocalHttpPort, public, port)
	}
	if !strings.Contains(stdoutText.String(), "env -u SSL_CERT_FILE func start") {
		t.Errorf("with SSL_CERT_FILE in the environment, the script does not say to run `env -u SSL_CERT_FILE func start`:\n%s", stdoutText.String())
	}
	if strings.Contains(stdoutText.String()+stderr.String(), v["M365_CLIENT_SECRET"]) {
		t.Error("local-stack.sh printed the app secret")
	}
	if t.Failed() {
		return
	}

	// AzureWebJobsStorage names all three Azurite services, and each answers HTTP.
	eps := storageEndpoints(v["AzureWebJobsStorage"])
	for _, k := range []string{"BlobEndpoint", "QueueEndpoint", "TableEndpoint"} {
		ep, ok := eps[k]
		if !ok {
			t.Errorf("AzureWebJobsStorage has no %s: %q", k, v["AzureWebJobsStorage"])
			continue
		}
		resp, err := http.Get(ep + "?comp=list")
		if err != nil {
			t.Errorf("%s %s: %v", k, ep, err)
			continue
		}
		resp.Body.Close()
		if resp.Header.Get("x-ms-request-id") == "" && resp.Header.Get("Server") == "" {
			t.Errorf("%s %s: the answer does not look like Azurite's (%s)", k, ep, resp.Status)
		}
	}
	if got := storageEndpoints(v["TablesConnection"])["TableEndpoint"]; got != eps["TableEndpoint"] {
		t.Errorf("TablesConnection's TableEndpoint %q is not AzureWebJobsStorage's %q", got, eps["TableEndpoint"])
	}

	// The simulated tenant, trusted through SSL_CERT_FILE alone: admin consent redirects to our
	// callback (the redirect URI the script registered), then the app's credentials get a token
	// for the tenant, and Graph answers with it.
	pem, err := os.ReadFile(v["SSL_CERT_FILE"])
	if err != nil {
		t.Fatalf("SSL_CERT_FILE: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("SSL_CERT_FILE holds no certificate")
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}
	authority := v["AZURE_AUTHORITY_HOST"]
	tenant := v["BOT_TENANT_ID"]
	callback := v["PUBLIC_BASE_URL"] + "/api/consent/callback"
	q := url.Values{"client_id": {v["M365_CLIENT_ID"]}, "scope": {"https://graph.microsoft.com/.default"},
		"redirect_uri": {callback}, "state": {"s1"}}
	resp, err := client.Get(authority + "organizations/v2.0/adminconsent?" + q.Encode())
	if err != nil {
		t.Fatalf("admin consent: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, callback+"?") || !strings.Contains(loc, "admin_consent=True") {
		t.Fatalf("admin consent: %s Location %q, want 302 to %s with admin_consent=True\n%s", resp.Status, loc, callback, body)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {v["M365_CLIENT_ID"]},
		"client_secret": {v["M365_CLIENT_SECRET"]}, "scope": {"https://graph.microsoft.com/.default"}}
	resp, err = client.PostForm(authority+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.AccessToken == "" {
		t.Fatalf("token for tenant %s with M365_CLIENT_ID/SECRET: %s (%v)", tenant, resp.Status, err)
	}
	req, _ := http.NewRequest("GET", v["GRAPH_BASE_URL"]+"/users?$top=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("Graph: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET GRAPH_BASE_URL/users: %s, want 200", resp.Status)
	}

	// SIGTERM (what Ctrl-C's SIGINT does too) stops the script and everything it started.
	simURL, _ := url.Parse(authority)
	addrs := []string{simURL.Host}
	for _, ep := range eps {
		u, _ := url.Parse(ep)
		addrs = append(addrs, u.Host)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("local-stack.sh after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute): // failure guard
		t.Fatalf("local-stack.sh still running a minute after SIGTERM\n%s", stderr.String())
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after local-stack.sh stopped", a)
		}
	}
}
