package scripts

// Tests for scripts/package.sh, scripts/deploy.sh and infra/*.bicep (standard library only).
//
//   go test ./scripts
//
// The packaging tests never compile the real handler (it links the Graph SDK): they build a tiny
// linux/amd64 binary and hand it to package.sh through HANDLER_BIN.

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The contract's function names (the README's "What works today") and the queue each Service Bus
// function is triggered by.
var contractFunctions = map[string]string{
	"Api":                 "",
	"Health":              "",
	"ConsentCallback":     "",
	"GraphNotifications":  "",
	"GraphLifecycle":      "",
	"BotMessages":         "",
	"SyncScheduler":       "",
	"SyncWorker":          "sync-jobs",
	"SubscriptionRenewer": "",
	"ChannelEventWorker":  "channel-events",
	"MailSender":          "outbound-mail",
	"TeamsSender":         "outbound-teams",
}

var contractQueues = []string{"sync-jobs", "channel-events", "outbound-mail", "outbound-teams"}

// The contract's settings (the README's "Settings") the deployed app must get from infra. Left out
// on purpose: FUNCTIONS_CUSTOMHANDLER_PORT (set by the host) and AZURE_AUTHORITY_HOST (azidentity's
// default; tests only). TablesConnection and ServiceBusConnection are deployed in their
// identity-based `__` forms.
var contractSettings = []string{
	"TablesConnection__tableServiceUri",
	"ServiceBusConnection__fullyQualifiedNamespace",
	"TABLE_PREFIX",
	"M365_CLIENT_ID",
	"M365_CLIENT_SECRET",
	"GRAPH_BASE_URL",
	"BOT_APP_ID",
	"BOT_APP_SECRET",
	"BOT_TENANT_ID",
	"BOT_OPENID_METADATA_URL",
	"PUBLIC_BASE_URL",
	"LEAP_APP_URL",
	"STATE_SIGNING_KEY",
	"AzureWebJobsStorage__accountName",
	"APPLICATIONINSIGHTS_CONNECTION_STRING",
	// The app runs as a user-assigned identity: every identity-based connection names it.
	"AzureWebJobsStorage__credential",
	"AzureWebJobsStorage__clientId",
	"TablesConnection__clientId",
	"ServiceBusConnection__credential",
	"ServiceBusConnection__clientId",
	"APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}

var keyVaultSettings = []string{"M365_CLIENT_SECRET", "BOT_APP_SECRET", "STATE_SIGNING_KEY", "NOTIFY_CERT_PEM"}

var (
	tinyOnce sync.Once
	tinyPath string
	tinyErr  error
	tinyDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyDir != "" {
		os.RemoveAll(tinyDir)
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd() // go test runs in the package directory: <repo>/scripts
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// tinyHandler builds (once) a minimal linux/amd64 executable to package instead of the real handler.
func tinyHandler(t *testing.T) string {
	t.Helper()
	tinyOnce.Do(func() {
		tinyDir, tinyErr = os.MkdirTemp("", "tiny-handler-")
		if tinyErr != nil {
			return
		}
		src := filepath.Join(tinyDir, "main.go")
		tinyErr = os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644)
		if tinyErr != nil {
			return
		}
		tinyPath = filepath.Join(tinyDir, "handler")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tinyPath, "main.go")
		cmd.Dir = tinyDir
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			tinyErr = fmt.Errorf("go build tiny handler: %v\n%s", err, out)
		}
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tinyPath
}

type pkgRun struct {
	stage, zip, output string
	err                error
}

// runPackage runs scripts/package.sh --root root --out <tmp>/stage --zip <tmp>/app.zip.
func runPackage(t *testing.T, root string, env []string, extraArgs ...string) pkgRun {
	t.Helper()
	tmp := t.TempDir()
	r := pkgRun{stage: filepath.Join(tmp, "stage"), zip: filepath.Join(tmp, "app.zip")}
	args := append([]string{filepath.Join(repoRoot(t), "scripts", "package.sh"),
		"--root", root, "--out", r.stage, "--zip", r.zip}, extraArgs...)
	cmd := exec.Command("bash", args...)
	cmd.Env = append(append(os.Environ(), "HANDLER_BIN="+tinyHandler(t)), env...)
	out, err := cmd.CombinedOutput()
	r.output, r.err = string(out), err
	return r
}

// expectedFiles lists what the staged app root must hold for root: host.json, handler and
// <Name>/function.json for every functions/<Name>/ folder.
func expectedFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	want := map[string]string{
		"host.json": filepath.Join(root, "host.json"),
		"handler":   "",
	}
	entries, err := os.ReadDir(filepath.Join(root, "functions"))
	if err != nil {
		t.Fatalf("read %s/functions: %v", root, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			want[e.Name()+"/function.json"] = filepath.Join(root, "functions", e.Name(), "function.json")
		}
	}
	return want
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkPackage verifies the staged directory and the zip against root.
func checkPackage(t *testing.T, root string, r pkgRun) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("package.sh failed: %v\n%s", r.err, r.output)
	}
	want := expectedFiles(t, root)
	handlerBytes, err := os.ReadFile(tinyHandler(t))
	if err != nil {
		t.Fatal(err)
	}

	// host.json: copied unchanged, and it starts ./handler.
	hostJSON, err := os.ReadFile(filepath.Join(r.stage, "host.json"))
	if err != nil {
		t.Fatalf("staged host.json: %v", err)
	}
	var host struct {
		Version       string `json:"version"`
		CustomHandler *struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
		} `json:"customHandler"`
	}
	if err := json.Unmarshal(hostJSON, &host); err != nil {
		t.Fatalf("host.json is not valid JSON: %v", err)
	}
	if host.CustomHandler == nil || host.CustomHandler.Description.DefaultExecutablePath != "handler" {
		t.Errorf("host.json customHandler.description.defaultExecutablePath must be \"handler\"")
	}
	if host.Version != "2.0" {
		t.Errorf("host.json version = %q, want \"2.0\"", host.Version)
	}

	// The staged tree holds exactly the expected files, byte for byte.
	got := map[string]fs.FileMode{}
	err = filepath.WalkDir(r.stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.stage, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && strings.Contains(rel, "/") {
				t.Errorf("nested directory staged: %s", rel)
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			t.Errorf("staged %s is not a regular file (%v)", rel, info.Mode())
		}
		got[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("stray file staged: %s", name)
		}
		if filepath.Base(name) == "local.settings.json" {
			t.Errorf("local.settings.json must never be staged (found %s)", name)
		}
	}
	for _, name := range sortedKeys(want) {
		mode, ok := got[name]
		if !ok {
			t.Errorf("missing from the stage: %s", name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.stage, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if name == "handler" {
			if mode&0o111 == 0 {
				t.Errorf("staged handler is not executable: %v", mode)
			}
			if !bytes.Equal(data, handlerBytes) {
				t.Errorf("staged handler differs from HANDLER_BIN")
			}
			continue
		}
		src, err := os.ReadFile(want[name])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, src) {
			t.Errorf("staged %s differs from %s", name, want[name])
		}
		if strings.HasSuffix(name, "/function.json") {
			var fn struct {
				Bindings []map[string]any `json:"bindings"`
			}
			if err := json.Unmarshal(data, &fn); err != nil || len(fn.Bindings) == 0 {
				t.Errorf("%s: not valid JSON with a non-empty bindings array (err=%v)", name, err)
			}
		}
	}

	// The zip holds the same files (no directory entries), same bytes, handler executable.
	zr, err := zip.OpenReader(r.zip)
	if err != nil {
		t.Fatalf("open zip: %v", err)
	}
	defer zr.Close()
	seen := map[string]bool{}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue // directory entries are harmless, but package.sh writes none
		}
		if strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "\\") || strings.Contains(f.Name, "..") {
			t.Errorf("bad zip entry name %q", f.Name)
		}
		if seen[f.Name] {
			t.Errorf("duplicate zip entry %s", f.Name)
		}
		seen[f.Name] = true
		if _, ok := want[f.Name]; !ok {
			t.Errorf("stray zip entry: %s", f.Name)
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read zip entry %s: %v", f.Name, err)
		}
		staged, _ := os.ReadFile(filepath.Join(r.stage, filepath.FromSlash(f.Name)))
		if !bytes.Equal(data, staged) {
			t.Errorf("zip entry %s differs from the staged file", f.Name)
		}
		mode := f.Mode()
		if !mode.IsRegular() {
			t.Errorf("zip entry %s is not a regular file (%v)", f.Name, mode)
		}
		if f.Name == "handler" && mode&0o111 == 0 {
			t.Errorf("zip entry handler has no exec bit (mode %v, creator %d)", mode, f.CreatorVersion>>8)
		}
		if f.Name != "handler" && mode&0o111 != 0 {
			t.Errorf("zip entry %s should not be executable (mode %v)", f.Name, mode)
		}
	}
	for _, name := range sortedKeys(want) {
		if !seen[name] {
			t.Errorf("missing from the zip: %s", name)
		}
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureRoot copies scripts/testdata/app and adds what must not be packaged.
func fixtureRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "app")
	copyTree(t, filepath.Join(repoRoot(t), "scripts", "testdata", "app"), root)
	writeFile(t, filepath.Join(root, "local.settings.json"), `{"IsEncrypted":false,"Values":{"FUNCTIONS_WORKER_RUNTIME":"Custom","M365_CLIENT_SECRET":"do-not-ship"}}`)
	writeFile(t, filepath.Join(root, "functions", "Api", "local.settings.json"), `{}`)
	writeFile(t, filepath.Join(root, "functions", "Api", "notes.md"), "not deployed\n")
	writeFile(t, filepath.Join(root, "functions", "README.md"), "not deployed\n")
	writeFile(t, filepath.Join(root, "go.mod"), "module example.invalid/app\n")
	writeFile(t, filepath.Join(root, "handler", "main.go"), "package main\n")
	return root
}

// TestPackage runs package.sh on the fixture app root first, then on the repository root.
func TestPackage(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("package.sh is a bash script for Linux build machines")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash is needed to run scripts/package.sh: %v", err)
	}

	t.Run("fixture", func(t *testing.T) {
		root := fixtureRoot(t)
		r := runPackage(t, root, nil)
		checkPackage(t, root, r)
		for _, want := range []string{"staged", "handler", "host.json", "Api/function.json", "wrote"} {
			if !strings.Contains(r.output, want) {
				t.Errorf("package.sh output does not mention %q:\n%s", want, r.output)
			}
		}
	})

	for _, zipper := range []string{"python3", "zip", "go"} {
		t.Run("fixture-zipper-"+zipper, func(t *testing.T) {
			if _, err := exec.LookPath(zipper); err != nil {
				t.Skipf("%s not installed: the %s zip path is not exercised on this machine", zipper, zipper)
			}
			root := fixtureRoot(t)
			r := runPackage(t, root, []string{"PACKAGE_ZIPPER=" + zipper})
			checkPackage(t, root, r)
			if !strings.Contains(r.output, "("+zipper+",") {
				t.Errorf("package.sh did not use %s:\n%s", zipper, r.output)
			}
		})
	}

	t.Run("fixture-errors", func(t *testing.T) {
		root := fixtureRoot(t)
		os.Remove(filepath.Join(root, "host.json"))
		if r := runPackage(t, root, nil); r.err == nil || !strings.Contains(r.output, "host.json") {
			t.Errorf("missing host.json: want a failure naming host.json, got err=%v\n%s", r.err, r.output)
		}

		root = fixtureRoot(t)
		os.MkdirAll(filepath.Join(root, "functions", "Empty"), 0o755)
		if r := runPackage(t, root, nil); r.err == nil || !strings.Contains(r.output, "Empty") {
			t.Errorf("function folder without function.json: want a failure naming it, got err=%v\n%s", r.err, r.output)
		}

		root = fixtureRoot(t)
		out := filepath.Join(t.TempDir(), "busy")
		writeFile(t, filepath.Join(out, "keep.txt"), "mine")
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "package.sh"),
			"--root", root, "--out", out, "--zip", filepath.Join(t.TempDir(), "a.zip"))
		cmd.Env = append(os.Environ(), "HANDLER_BIN="+tinyHandler(t))
		if outb, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("non-empty --out without --force must fail:\n%s", outb)
		}
		if _, err := os.Stat(filepath.Join(out, "keep.txt")); err != nil {
			t.Errorf("package.sh touched a non-empty --out directory it refused: %v", err)
		}
	})

	// The repository's own app root, once functions/ exists there.
	t.Run("repo", func(t *testing.T) {
		root := repoRoot(t)
		if _, err := os.Stat(filepath.Join(root, "functions")); err != nil {
			t.Skipf("repository has no functions/ yet (%v): only the fixture app root was packaged", err)
		}
		if _, err := os.Stat(filepath.Join(root, "host.json")); err != nil {
			t.Fatalf("repository has functions/ but no host.json at %s: the app cannot be packaged (%v)",
				filepath.Join(root, "host.json"), err)
		}
		r := runPackage(t, root, nil)
		checkPackage(t, root, r)
		if t.Failed() {
			return
		}
		checkContractFunctions(t, r.stage)
	})
}

// checkContractFunctions compares the packaged functions with contractFunctions and infra's queues.
func checkContractFunctions(t *testing.T, stage string) {
	t.Helper()
	entries, err := os.ReadDir(stage)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			got[e.Name()] = true
		}
	}
	for _, name := range sortedKeys(contractFunctions) {
		if !got[name] {
			t.Errorf("function %s (function contract) is missing: no functions/%s/function.json", name, name)
		}
	}
	queues := map[string]bool{}
	for _, q := range contractQueues {
		queues[q] = true
	}
	for _, name := range sortedKeys(got) {
		wantQueue, ok := contractFunctions[name]
		if !ok {
			t.Errorf("function %s is not in the function contract", name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(stage, name, "function.json"))
		if err != nil {
			t.Fatal(err)
		}
		var fn struct {
			Bindings []struct {
				Type       string `json:"type"`
				Direction  string `json:"direction"`
				QueueName  string `json:"queueName"`
				Connection string `json:"connection"`
			} `json:"bindings"`
		}
		if err := json.Unmarshal(data, &fn); err != nil {
			t.Errorf("%s/function.json: %v", name, err)
			continue
		}
		trigger := ""
		for _, b := range fn.Bindings {
			if !strings.HasPrefix(strings.ToLower(b.Type), "servicebus") {
				continue
			}
			if !queues[b.QueueName] {
				t.Errorf("%s/function.json: queue %q is not one infra creates %v", name, b.QueueName, contractQueues)
			}
			if b.Connection != "ServiceBusConnection" {
				t.Errorf("%s/function.json: Service Bus connection %q, want ServiceBusConnection (the app setting prefix infra sets)", name, b.Connection)
			}
			if strings.EqualFold(b.Type, "serviceBusTrigger") {
				trigger = b.QueueName
			}
		}
		if trigger != wantQueue {
			t.Errorf("%s/function.json: triggered by queue %q, the contract says %q", name, trigger, wantQueue)
		}
	}
}

func TestDeployScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash: %v", err)
	}
	root := repoRoot(t)
	for _, s := range []string{"package.sh", "deploy.sh"} {
		path := filepath.Join(root, "scripts", s)
		if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
	deploy := filepath.Join(root, "scripts", "deploy.sh")
	out, err := exec.Command("bash", deploy, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("deploy.sh --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--resource-group", "--what-if", "az deployment group create", "az functionapp deploy", "infra/main.bicep", "M365_CLIENT_SECRET", "STATE_SIGNING_KEY"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("deploy.sh usage does not mention %q", want)
		}
	}
	// Parameter checks happen before any Azure call.
	for _, args := range [][]string{{}, {"-g", "rg", "--skip-infra"}, {"-g", "rg", "--skip-infra", "--skip-code"}, {"--bogus"}} {
		cmd := exec.Command("bash", append([]string{deploy}, args...)...)
		cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin") // no az here either way
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("deploy.sh %v succeeded, want a usage error:\n%s", args, out)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Bicep
// ---------------------------------------------------------------------------------------------

// bicepFile is a Bicep source with comments blanked (code) and, in addition, string contents blanked
// outside ${...} interpolations (skel). Both keep every byte offset of the source.
type bicepFile struct {
	path, src, code, skel string
}

func parseBicep(t *testing.T, path string) *bicepFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	src := string(data)
	code := []byte(src)
	skel := []byte(src)
	blank := func(b []byte, i int) {
		if b[i] != '\n' {
			b[i] = ' '
		}
	}
	// modes: 0 code, 1 string, 2 multi-line string; a stack handles ${ } inside strings.
	type frame struct{ mode, depth int }
	stack := []frame{{0, 0}}
	var brackets []byte
	line := 1
	fail := func(format string, a ...any) {
		t.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, a...))
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		top := &stack[len(stack)-1]
		if c == '\n' {
			line++
		}
		switch top.mode {
		case 0:
			switch {
			case strings.HasPrefix(src[i:], "//"):
				for i < len(src) && src[i] != '\n' {
					blank(code, i)
					blank(skel, i)
					i++
				}
				i--
			case strings.HasPrefix(src[i:], "/*"):
				end := strings.Index(src[i+2:], "*/")
				if end < 0 {
					fail("unterminated /* comment")
					return &bicepFile{path, src, string(code), string(skel)}
				}
				for j := i; j < i+2+end+2; j++ {
					if src[j] == '\n' {
						line++
					}
					blank(code, j)
					blank(skel, j)
				}
				i += 2 + end + 1
			case strings.HasPrefix(src[i:], "'''"):
				stack = append(stack, frame{2, 0})
				i += 2
			case c == '\'':
				stack = append(stack, frame{1, 0})
			case c == '{' || c == '[' || c == '(':
				brackets = append(brackets, c)
				top.depth++
			case c == '}' && len(stack) > 1 && top.depth == 0:
				stack = stack[:len(stack)-1] // end of ${...}
			case c == '}' || c == ']' || c == ')':
				open := map[byte]byte{'}': '{', ']': '[', ')': '('}[c]
				if len(brackets) == 0 || brackets[len(brackets)-1] != open {
					fail("unbalanced %q", c)
				} else {
					brackets = brackets[:len(brackets)-1]
				}
				top.depth--
			}
		case 1:
			switch {
			case c == '\\':
				skel[i] = '_'
				if i+1 < len(src) {
					skel[i+1] = '_'
				}
				i++
			case c == '\'':
				stack = stack[:len(stack)-1]
			case strings.HasPrefix(src[i:], "${"):
				stack = append(stack, frame{0, 0})
				i++
			case c == '\n':
				fail("newline in a single-quoted string")
			default:
				skel[i] = '_'
			}
		case 2:
			if strings.HasPrefix(src[i:], "'''") {
				stack = stack[:len(stack)-1]
				i += 2
			} else {
				blank(skel, i)
			}
		}
	}
	if len(stack) != 1 {
		t.Errorf("%s: unterminated string or interpolation", path)
	}
	if len(brackets) != 0 {
		t.Errorf("%s: %d unclosed bracket(s) %q", path, len(brackets), brackets)
	}
	return &bicepFile{path, src, string(code), string(skel)}
}

// block returns the offsets of the bracketed block that opens at skel[open].
func (f *bicepFile) block(t *testing.T, open int) (int, int) {
	t.Helper()
	depth := 0
	for i := open; i < len(f.skel); i++ {
		switch f.skel[i] {
		case '{', '[', '(':
			depth++
		case '}', ']', ')':
			depth--
			if depth == 0 {
				return open, i + 1
			}
		}
	}
	t.Fatalf("%s: unclosed block at offset %d", f.path, open)
	return 0, 0
}

// topLevelKeys returns the keys of the object block skel[start:end] at its first level.
func (f *bicepFile) topLevelKeys(start, end int) []string {
	var keys []string
	depth := 0
	lineStart := true
	for i := start; i < end; i++ {
		c := f.skel[i]
		switch c {
		case '{', '[', '(':
			depth++
		case '}', ']', ')':
			depth--
		case '\n':
			lineStart = true
			continue
		}
		if lineStart && depth == 1 && c != ' ' && c != '\t' {
			if m := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*|'[^']*')\s*:`).FindStringSubmatch(f.code[i:end]); m != nil {
				keys = append(keys, strings.Trim(m[1], "'"))
			}
		}
		if c != ' ' && c != '\t' {
			lineStart = false
		}
	}
	return keys
}

type bicepParam struct {
	typ      string
	required bool
}

var (
	reParam  = regexp.MustCompile(`(?m)^param\s+([A-Za-z_][A-Za-z0-9_]*)\s+([A-Za-z\[\]?]+)\s*(=)?`)
	reOutput = regexp.MustCompile(`(?m)^output\s+([A-Za-z_][A-Za-z0-9_]*)\s`)
	reVar    = regexp.MustCompile(`(?m)^var\s+([A-Za-z_][A-Za-z0-9_]*)\s*=`)
	reModule = regexp.MustCompile(`(?m)^module\s+([A-Za-z_][A-Za-z0-9_]*)\s+'([^']+)'\s*=[^{]*\{`)
)

func (f *bicepFile) params() map[string]bicepParam {
	out := map[string]bicepParam{}
	for _, m := range reParam.FindAllStringSubmatch(f.skel, -1) {
		out[m[1]] = bicepParam{typ: m[2], required: m[3] == "" && !strings.HasSuffix(m[2], "?")}
	}
	return out
}

func (f *bicepFile) outputs() map[string]bool {
	out := map[string]bool{}
	for _, m := range reOutput.FindAllStringSubmatch(f.skel, -1) {
		out[m[1]] = true
	}
	return out
}

// checkUsed reports params and vars that are declared but never referenced (bicep lint: no-unused-*).
func (f *bicepFile) checkUsed(t *testing.T) {
	t.Helper()
	names := map[string]string{}
	for n := range f.params() {
		names[n] = "param"
	}
	for _, m := range reVar.FindAllStringSubmatch(f.skel, -1) {
		names[m[1]] = "var"
	}
	for n, kind := range names {
		re := regexp.MustCompile(`\b` + n + `\b`)
		uses := 0
		for _, loc := range re.FindAllStringIndex(f.skel, -1) {
			// Skip the declaration and object keys (`name:`), which are not references.
			lineStart := strings.LastIndex(f.skel[:loc[0]], "\n") + 1
			if regexp.MustCompile(`^(param|var|output)\s+$`).MatchString(f.skel[lineStart:loc[0]]) {
				continue
			}
			before := f.skel[:loc[0]]
			after := strings.TrimLeft(f.skel[loc[1]:], " \t")
			if strings.HasPrefix(after, ":") && strings.TrimSpace(f.skel[lineStart:loc[0]]) == "" {
				continue
			}
			if strings.HasSuffix(before, ".") { // property access x.name
				continue
			}
			uses++
		}
		if uses == 0 {
			t.Errorf("%s: %s %s is declared but never used", filepath.Base(f.path), kind, n)
		}
	}
}

func TestInfraBicep(t *testing.T) {
	root := repoRoot(t)
	infra := filepath.Join(root, "infra")
	mainPath := filepath.Join(infra, "main.bicep")
	if _, err := os.Stat(mainPath); err != nil {
		t.Fatalf("infra/main.bicep: %v", err)
	}

	// With a Bicep CLI, compile and lint for real.
	if bicep, err := exec.LookPath("bicep"); err == nil {
		for _, args := range [][]string{{"build", "--stdout", mainPath}, {"lint", mainPath}} {
			out, err := exec.Command(bicep, args...).CombinedOutput()
			if err != nil {
				t.Errorf("bicep %s: %v\n%s", args[0], err, out)
			} else if args[0] == "lint" && bytes.Contains(out, []byte("Warning")) {
				t.Errorf("bicep lint warnings:\n%s", out)
			}
		}
	} else {
		t.Log("no bicep CLI on PATH: structural checks only (install the Bicep CLI to compile and lint)")
	}

	mainFile := parseBicep(t, mainPath)
	files := map[string]*bicepFile{"main.bicep": mainFile}
	modPaths, _ := filepath.Glob(filepath.Join(infra, "modules", "*.bicep"))
	if len(modPaths) == 0 {
		t.Fatal("no infra/modules/*.bicep")
	}
	for _, p := range modPaths {
		files["modules/"+filepath.Base(p)] = parseBicep(t, p)
	}
	for _, f := range files {
		f.checkUsed(t)
	}

	// Every module call: file exists, params known to the module, required params passed,
	// and every <module>.outputs.<x> is an output of that module.
	modules := map[string]*bicepFile{}
	for _, loc := range reModule.FindAllStringSubmatchIndex(mainFile.skel, -1) {
		sym := mainFile.skel[loc[2]:loc[3]]
		rel := mainFile.code[loc[4]:loc[5]]
		mod, ok := files[filepath.ToSlash(filepath.Clean(rel))]
		if !ok {
			t.Errorf("main.bicep: module %s refers to %s, which does not exist", sym, rel)
			continue
		}
		modules[sym] = mod
		start, end := mainFile.block(t, loc[1]-1)
		keys := mainFile.topLevelKeys(start, end)
		paramsStart := -1
		for _, k := range keys {
			if k == "params" {
				paramsStart = strings.Index(mainFile.skel[start:end], "params:") + start
			}
		}
		passed := map[string]bool{}
		if paramsStart >= 0 {
			open := strings.Index(mainFile.skel[paramsStart:], "{") + paramsStart
			ps, pe := mainFile.block(t, open)
			for _, k := range mainFile.topLevelKeys(ps, pe) {
				passed[k] = true
			}
		}
		declared := mod.params()
		for k := range passed {
			if _, ok := declared[k]; !ok {
				t.Errorf("main.bicep: module %s passes %s, which %s does not declare", sym, k, rel)
			}
		}
		for name, p := range declared {
			if p.required && !passed[name] {
				t.Errorf("main.bicep: module %s does not pass required param %s of %s", sym, name, rel)
			}
		}
	}
	for _, m := range regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_]*)\.outputs\.([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(mainFile.skel, -1) {
		mod, ok := modules[m[1]]
		if !ok {
			t.Errorf("main.bicep: %s.outputs.%s: no module %s", m[1], m[2], m[1])
		} else if !mod.outputs()[m[2]] {
			t.Errorf("main.bicep: %s.outputs.%s is not an output of %s", m[1], m[2], filepath.Base(mod.path))
		}
	}

	// The contract's queues (contractQueues).
	qm := regexp.MustCompile(`(?m)^var\s+queueNames\s*=\s*\[`).FindStringIndex(mainFile.skel)
	if qm == nil {
		t.Error("main.bicep: no `var queueNames = [...]`")
	} else {
		s, e := mainFile.block(t, qm[1]-1)
		var got []string
		for _, m := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(mainFile.code[s:e], -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, ",") != strings.Join(contractQueues, ",") {
			t.Errorf("main.bicep queueNames = %v, want %v", got, contractQueues)
		}
	}

	// The contract's app settings (contractSettings).
	all := func(pred func(f *bicepFile) bool) bool {
		for _, f := range files {
			if pred(f) {
				return true
			}
		}
		return false
	}
	settingsFile := files["modules/appsettings.bicep"]
	if settingsFile == nil {
		t.Fatal("no infra/modules/appsettings.bicep")
	}
	keys := map[string]bool{}
	for _, loc := range regexp.MustCompile(`(?m)^var\s+[A-Za-z_][A-Za-z0-9_]*\s*=\s*\{`).FindAllStringIndex(settingsFile.skel, -1) {
		s, e := settingsFile.block(t, loc[1]-1)
		for _, k := range settingsFile.topLevelKeys(s, e) {
			keys[k] = true
		}
	}
	for _, s := range contractSettings {
		if !keys[s] {
			t.Errorf("app setting %s (README, Settings) is not set in modules/appsettings.bicep", s)
		}
	}
	for _, s := range keyVaultSettings {
		if !regexp.MustCompile(`(?m)^\s*` + s + `:\s*'@Microsoft\.KeyVault\(SecretUri=\$\{keyVaultUri\}secrets/\$\{[^}]+\}\)'`).MatchString(settingsFile.code) {
			t.Errorf("app setting %s must be a @Microsoft.KeyVault(SecretUri=...) reference", s)
		}
	}
	if all(func(f *bicepFile) bool {
		return regexp.MustCompile(`FUNCTIONS_WORKER_RUNTIME'?\s*:|'FUNCTIONS_WORKER_RUNTIME'`).MatchString(f.code)
	}) {
		t.Error("FUNCTIONS_WORKER_RUNTIME must not be an app setting on Flex Consumption (runtime goes in functionAppConfig)")
	}
	checkSettingsWrittenWithSite(t, files)
	checkDeploymentOrder(t, files)
	checkMaximumInstanceCount(t, files)

	// Facts the design depends on, by file.
	mustContain := map[string][]string{
		"main.bicep": {
			"param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'",
			"param botOpenIdMetadataUrl string = 'https://login.botframework.com/v1/.well-known/openidconfiguration'",
			"'https://${appName}.azurewebsites.net'", // PUBLIC_BASE_URL default, known before the site exists
			"lockDuration: 'PT5M'",
			"param maxDeliveryCount int = 10",
			"param leapAppUrl string\n",
			"param tablePrefix string = ''",
			"@secure()\nparam m365ClientSecret",
			"@secure()\nparam botAppSecret",
			"@secure()\nparam stateSigningKey",
			"output functionAppName string",
			"output defaultHostName string",
			"output functionsBaseUrl string",
			// azd conventions (azure.yaml): environment name, tags, outputs for the hooks.
			"param environmentName string = ''",
			"'azd-env-name': environmentName",
			"'azd-service-name': azdServiceName",
			"output AZURE_FUNCTION_APP_NAME string",
			"output AZURE_FUNCTION_APP_ID string",
		},
		"modules/functionapp.bicep": {
			"'Microsoft.Web/serverfarms@", "name: 'FC1'", "tier: 'FlexConsumption'", "reserved: true",
			"kind: 'functionapp,linux'", "type: 'UserAssigned'", "httpsOnly: true", "minTlsVersion: '1.2'",
			"ftpsState: 'Disabled'", "functionAppConfig: {", "type: 'blobContainer'", "type: 'UserAssignedIdentity'",
			"userAssignedIdentityResourceId: identityId", "keyVaultReferenceIdentity: identityId",
			"name: 'custom'", "instanceMemoryMB: instanceMemoryMB", "maximumInstanceCount: maximumInstanceCount",
			"name: 'http'", "alwaysReady:", "name: 'ftp'", "allow: false",
		},
		"modules/identity.bicep": {"'Microsoft.ManagedIdentity/userAssignedIdentities@", "output principalId string", "output clientId string"},
		"modules/servicebus.bicep": {
			"name: 'Standard'", "disableLocalAuth: true", "maxDeliveryCount: maxDeliveryCount",
			"requiresDuplicateDetection: true", "duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow",
			"lockDuration: lockDuration", "deadLetteringOnMessageExpiration: true", "output fullyQualifiedNamespace string",
		},
		"modules/keyvault.bicep": {"enableRbacAuthorization: true", "@secure()"},
		"modules/storage.bicep":  {"minimumTlsVersion: 'TLS1_2'", "allowSharedKeyAccess: false", "allowBlobPublicAccess: false", "supportsHttpsTrafficOnly: true"},
		"modules/roles.bicep": {
			"4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0", // Azure Service Bus Data Receiver
			"69a216fc-b8fb-44d8-bc22-1f3c2cd27a39", // Azure Service Bus Data Sender
			"090c5cfd-751d-490a-894a-3ce6f1109419", // Azure Service Bus Data Owner (trigger scaling), per queue
			"if (serviceBusScaleRights)",
			"0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", // Storage Table Data Contributor
			"b7e6dc6d-f1e8-4753-8033-0f276bb0955b", // Storage Blob Data Owner
			"4633458b-17de-408a-b874-0445c86b69e6", // Key Vault Secrets User
			"scope: queues[i]", "scope: dataStorage", "scope: hostStorage", "scope: vault",
			"principalType: 'ServicePrincipal'",
		},
	}
	for name, wants := range mustContain {
		f := files[name]
		if f == nil {
			t.Errorf("missing infra/%s", name)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(f.code, w) {
				t.Errorf("infra/%s does not contain %q", name, w)
			}
		}
	}
	// No role broader than data plane: no Owner/Contributor role ids.
	for _, id := range []string{"8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c"} {
		if all(func(f *bicepFile) bool { return strings.Contains(f.code, id) }) {
			t.Errorf("infra assigns a control-plane role %s; the app needs data-plane roles only", id)
		}
	}
	// API versions are dated and not previews.
	for name, f := range files {
		for _, m := range regexp.MustCompile(`'([A-Za-z.]+/[A-Za-z/]+)@([^']+)'`).FindAllStringSubmatch(f.code, -1) {
			if !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(m[2]) {
				t.Errorf("infra/%s: %s uses API version %s (want a stable dated version)", name, m[1], m[2])
			}
		}
	}

	checkParametersFile(t, filepath.Join(infra, "main.parameters.json"), mainFile)
}

// checkParametersFile checks infra/main.parameters.json, the one parameters file of azd and deploy.sh:
// every parameter exists in main.bicep, required ones are present, and every value is a "${VAR}"
// placeholder (azd fills it from its environment, deploy.sh from the shell's), so no id, URL or secret
// is ever committed; the azd conventions environmentName/location map to AZURE_ENV_NAME/AZURE_LOCATION.
func checkParametersFile(t *testing.T, path string, mainFile *bicepFile) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("infra/main.parameters.json: %v", err)
	}
	var pf struct {
		Schema     string `json:"$schema"`
		Parameters map[string]struct {
			Value any `json:"value"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(data, &pf); err != nil {
		t.Fatalf("main.parameters.json: %v", err)
	}
	if !strings.Contains(pf.Schema, "deploymentParameters.json") {
		t.Errorf("main.parameters.json: $schema %q is not the ARM deployment parameters schema", pf.Schema)
	}
	declared := mainFile.params()
	placeholder := regexp.MustCompile(`^\$\{([A-Z][A-Z0-9_]*)\}$`)
	vars := map[string]string{}
	for _, k := range sortedKeys(pf.Parameters) {
		if _, ok := declared[k]; !ok {
			t.Errorf("main.parameters.json sets %s, which main.bicep does not declare", k)
		}
		v, ok := pf.Parameters[k].Value.(string)
		m := placeholder.FindStringSubmatch(v)
		if !ok || m == nil {
			t.Errorf("main.parameters.json: %s = %v, want a \"${VAR}\" placeholder (values come from the azd or shell environment, never from the file)", k, pf.Parameters[k].Value)
			continue
		}
		vars[k] = m[1]
	}
	for _, name := range sortedKeys(declared) {
		if declared[name].required {
			if _, ok := pf.Parameters[name]; !ok {
				t.Errorf("main.parameters.json lacks required parameter %s", name)
			}
		}
	}
	for param, want := range map[string]string{
		"environmentName":  "AZURE_ENV_NAME",
		"location":         "AZURE_LOCATION",
		"m365ClientSecret": "M365_CLIENT_SECRET",
		"botAppSecret":     "BOT_APP_SECRET",
		"stateSigningKey":  "STATE_SIGNING_KEY",
	} {
		if vars[param] != want {
			t.Errorf("main.parameters.json: %s should be \"${%s}\" (got %q)", param, want, vars[param])
		}
	}
	// Secrets reach the template only as @secure() parameters.
	for _, param := range []string{"m365ClientSecret", "botAppSecret", "stateSigningKey"} {
		if !strings.Contains(mainFile.code, "@secure()\nparam "+param+" string") {
			t.Errorf("main.bicep: %s must be a @secure() string parameter", param)
		}
	}
}

// checkSettingsWrittenWithSite: the complete app settings are written in the site resource itself
// (siteConfig.appSettings), never by a separate Microsoft.Web/sites/config resource, so that the PUT of
// a redeploy replaces the settings with the complete set instead of the host settings alone.
func checkSettingsWrittenWithSite(t *testing.T, files map[string]*bicepFile) {
	t.Helper()
	for _, name := range sortedKeys(files) {
		f := files[name]
		if regexp.MustCompile(`'Microsoft\.Web/sites/config@|resource\s+\w+\s+'config'|name:\s*'appsettings'`).MatchString(f.code) {
			t.Errorf("infra/%s writes app settings as a separate config resource; they belong in the site (siteConfig.appSettings)", name)
		}
	}
	settings := files["modules/appsettings.bicep"]
	if settings != nil {
		if regexp.MustCompile(`(?m)^resource\s`).MatchString(settings.skel) {
			t.Error("modules/appsettings.bicep computes the settings; it must not create resources")
		}
		if !strings.Contains(settings.code, "output settings object = union(hostSettings, telemetrySettings, appSettings, extraSettings)") {
			t.Error("modules/appsettings.bicep must output the host, telemetry and app settings (and the extras) together")
		}
	}
	fa := files["modules/functionapp.bicep"]
	if fa != nil {
		re := regexp.MustCompile(`siteConfig:\s*\{[^}]*appSettings:\s*\[\s*for\s+(\w+)\s+in\s+items\(appSettings\)\s*:\s*\{\s*name:\s*(\w+)\.key\s+value:\s*(\w+)\.value`)
		if m := re.FindStringSubmatch(fa.code); m == nil || m[1] != m[2] || m[1] != m[3] {
			t.Error("modules/functionapp.bicep: the site's siteConfig.appSettings must be the complete settings (for s in items(appSettings): {name: s.key, value: s.value})")
		}
	}
	if main := files["main.bicep"]; main != nil && !strings.Contains(main.code, "appSettings: appSettings.outputs.settings") {
		t.Error("main.bicep must pass appSettings.outputs.settings to the function app module")
	}
}

// moduleBlock returns the text of `module <sym> ... = { ... }` in f.
func moduleBlock(t *testing.T, f *bicepFile, sym string) string {
	t.Helper()
	loc := regexp.MustCompile(`(?m)^module\s+` + sym + `\s+'[^']+'\s*=[^{]*\{`).FindStringIndex(f.skel)
	if loc == nil {
		t.Errorf("%s: no module %s", filepath.Base(f.path), sym)
		return ""
	}
	s, e := f.block(t, loc[1]-1)
	return f.code[s:e]
}

// checkDeploymentOrder: identity -> role assignments -> site. The roles are granted to the user-assigned
// identity before the Function App exists, so the site is created with working Key Vault references and
// identity-based connections (Microsoft: "create a user-assigned identity and give it access to the vault
// in advance", app-service-key-vault-references).
func checkDeploymentOrder(t *testing.T, files map[string]*bicepFile) {
	t.Helper()
	main := files["main.bicep"]
	if main == nil {
		return
	}
	roles := moduleBlock(t, main, "roles")
	if !strings.Contains(roles, "principalId: identity.outputs.principalId") {
		t.Error("main.bicep: the role assignments must be for the user-assigned identity (principalId: identity.outputs.principalId)")
	}
	if strings.Contains(roles, "functionApp.") {
		t.Error("main.bicep: the role assignments must not wait for the Function App (they come before it)")
	}
	fa := moduleBlock(t, main, "functionApp")
	if !regexp.MustCompile(`dependsOn:\s*\[[^\]]*\broles\b`).MatchString(fa) {
		t.Error("main.bicep: module functionApp must depend on roles, so the site starts with access granted")
	}
	if !strings.Contains(fa, "identityId: identity.outputs.id") {
		t.Error("main.bicep: module functionApp must run as the user-assigned identity (identityId: identity.outputs.id)")
	}
	if settings := moduleBlock(t, main, "appSettings"); !strings.Contains(settings, "identityClientId: identity.outputs.clientId") ||
		!strings.Contains(settings, "keyVaultUri: keyVault.outputs.vaultUri") {
		t.Error("main.bicep: the app settings must name the identity's client id and take the vault URI from the key vault module (so the secrets exist before the site)")
	}
	if f := files["modules/functionapp.bicep"]; f != nil && regexp.MustCompile(`type:\s*'SystemAssigned`).MatchString(f.code) {
		t.Error("modules/functionapp.bicep: the app must run as the user-assigned identity only")
	}
}

// checkMaximumInstanceCount: every maximumInstanceCount parameter is bounded to what Flex Consumption
// accepts in every region: 40..1000 (infra/README.md explains the regional below-40 preview).
func checkMaximumInstanceCount(t *testing.T, files map[string]*bicepFile) {
	t.Helper()
	found := 0
	for _, name := range sortedKeys(files) {
		f := files[name]
		for _, m := range regexp.MustCompile(`(?m)((?:^@.*\n)*)^param\s+maximumInstanceCount\s+int`).FindAllStringSubmatch(f.code, -1) {
			found++
			if !strings.Contains(m[1], "@minValue(40)\n") || !strings.Contains(m[1], "@maxValue(1000)\n") {
				t.Errorf("infra/%s: param maximumInstanceCount must be bounded with @minValue(40) and @maxValue(1000), got decorators:\n%s", name, m[1])
			}
		}
	}
	if found == 0 {
		t.Error("no maximumInstanceCount parameter found in infra/")
	}
}

// ---------------------------------------------------------------------------------------------
// deploy.sh against a fake az
// ---------------------------------------------------------------------------------------------

// fakeAz logs every call to $FAKE_AZ_DIR/calls.log and answers from files in $FAKE_AZ_DIR: outputs.json
// for `deployment group show`, kv-<n>.json for the n-th Key Vault reference status read (the last one
// repeats), and FAKE_DEPLOY_FAILS failures (message FAKE_DEPLOY_ERROR) before `functionapp deploy`
// succeeds. Parameter files passed as @file are copied to params-<n>.json with their mode in params-<n>.mode.
const fakeAz = `#!/usr/bin/env bash
set -u
d=$FAKE_AZ_DIR
echo "az $*" >>"$d/calls.log"
count() { local n; n=$(cat "$d/$1.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$d/$1.count"; echo "$n"; }
case "$1 $2" in
  "account show" | "group show") exit 0 ;;
  "deployment group")
    case "$3" in
      create | what-if)
        for a in "$@"; do
          case "$a" in
            @*) n=$(count params); cp "${a#@}" "$d/params-$n.json"
                (stat -c %a "${a#@}" 2>/dev/null || stat -f %Lp "${a#@}") >"$d/params-$n.mode" ;;
          esac
        done
        exit 0 ;;
      show) cat "$d/outputs.json"; exit 0 ;;
    esac ;;
  "functionapp show") echo "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Web/sites/leap-func"; exit 0 ;;
  "functionapp deploy")
    n=$(count deploy)
    if [ "$n" -le "${FAKE_DEPLOY_FAILS:-0}" ]; then
      echo "${FAKE_DEPLOY_ERROR:-ERROR: Status Code: 403. AuthorizationPermissionMismatch: This request is not authorized to perform this operation using this permission.}" >&2
      exit 1
    fi
    exit 0 ;;
  "rest --method")
    case "$3" in
      post) exit 0 ;;
      get)
        n=$(count kv)
        f="$d/kv-$n.json"
        [ -f "$f" ] || f=$(ls "$d"/kv-*.json | sort -V | tail -n 1)
        cat "$f"; exit 0 ;;
    esac ;;
esac
echo "fake az: unexpected call: $*" >&2
exit 3
`

// kvStatus renders the answer of GET .../config/configreferences/appsettings for the three secrets.
func kvStatus(statuses map[string]string) string {
	var items []map[string]any
	for _, name := range keyVaultSettings {
		st := statuses[name]
		if st == "" {
			st = "Resolved"
		}
		items = append(items, map[string]any{
			"name":       name,
			"properties": map[string]any{"status": st, "details": "fake " + st},
		})
	}
	data, _ := json.Marshal(map[string]any{"value": items})
	return string(data)
}

type deployRun struct {
	dir, output string
	err         error
}

func (r deployRun) calls() string {
	data, _ := os.ReadFile(filepath.Join(r.dir, "calls.log"))
	return string(data)
}

func (r deployRun) count(name string) int {
	data, err := os.ReadFile(filepath.Join(r.dir, name+".count"))
	if err != nil {
		return 0
	}
	var n int
	fmt.Sscan(string(data), &n)
	return n
}

// runDeploy runs scripts/deploy.sh with the fake az first on PATH, the environment cleaned of the
// variables deploy.sh reads, then env, and the Key Vault status answers kv (in order).
func runDeploy(t *testing.T, env []string, kv []string, args ...string) deployRun {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "az"), fakeAz)
	if err := os.Chmod(filepath.Join(bin, "az"), 0o755); err != nil {
		t.Fatal(err)
	}
	outputs := map[string]any{}
	for k, v := range map[string]string{
		"functionAppName":       "leap-func",
		"AZURE_FUNCTION_APP_ID": "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Web/sites/leap-func",
		"defaultHostName":       "leap-func.azurewebsites.net",
		"publicBaseUrl":         "https://leap-func.azurewebsites.net",
		"functionsBaseUrl":      "https://leap-func.azurewebsites.net/api",
		"consentRedirectUri":    "https://leap-func.azurewebsites.net/api/consent/callback",
		"graphNotificationUrl":  "https://leap-func.azurewebsites.net/api/graph/notifications",
		"graphLifecycleUrl":     "https://leap-func.azurewebsites.net/api/graph/lifecycle",
		"botMessagingEndpoint":  "https://leap-func.azurewebsites.net/api/messages",
	} {
		outputs[k] = map[string]string{"type": "String", "value": v}
	}
	data, _ := json.Marshal(outputs)
	writeFile(t, filepath.Join(dir, "outputs.json"), string(data))
	for i, answer := range kv {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("kv-%d.json", i+1)), answer)
	}
	zipPath := filepath.Join(dir, "app.zip")
	writeFile(t, zipPath, "not really a zip")

	var clean []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "M365_"), strings.HasPrefix(name, "BOT_"), strings.HasPrefix(name, "AZURE_"),
			strings.HasPrefix(name, "LEAP_"), strings.HasPrefix(name, "FAKE_"),
			name == "STATE_SIGNING_KEY", name == "PUBLIC_BASE_URL", name == "DEPLOY_RETRY_DELAYS", name == "PATH":
			continue
		}
		clean = append(clean, kv)
	}
	clean = append(clean, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "FAKE_AZ_DIR="+dir,
		"DEPLOY_RETRY_DELAYS=0 0 0")
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "scripts", "deploy.sh")}, args...)...)
	if len(args) > 0 && args[0] == "@zip" {
		cmd.Args = append([]string{"bash", filepath.Join(repoRoot(t), "scripts", "deploy.sh"), "--zip", zipPath}, args[1:]...)
	}
	cmd.Env = append(clean, env...)
	out, err := cmd.CombinedOutput()
	return deployRun{dir: dir, output: string(out), err: err}
}

// deployEnv is a complete environment for a first deployment with deploy.sh.
var deployEnv = []string{
	"M365_CLIENT_ID=11111111-1111-1111-1111-111111111111",
	"BOT_APP_ID=22222222-2222-2222-2222-222222222222",
	"LEAP_APP_URL=https://app.leapchange.example",
	"M365_CLIENT_SECRET=m365-secret-value",
	"BOT_APP_SECRET=bot-secret-value",
	"STATE_SIGNING_KEY=state-signing-key-value-of-at-least-32-bytes",
}

func TestDeployScriptAgainstFakeAz(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("deploy.sh is a bash script")
	}
	for _, tool := range []string{"bash", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: deploy.sh needs it", tool)
		}
	}
	denied := kvStatus(map[string]string{"M365_CLIENT_SECRET": "AccessToKeyVaultDenied"})
	resolved := kvStatus(nil)

	t.Run("first-deployment-waits-for-role-propagation", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, append([]string{"FAKE_DEPLOY_FAILS=2"}, deployEnv...), []string{denied, resolved}, "@zip", "-g", "rg")
		if r.err != nil {
			t.Fatalf("deploy.sh failed: %v\n%s", r.err, r.output)
		}
		calls := r.calls()
		create, get, deploy := strings.Index(calls, "az deployment group create"), strings.Index(calls, "az rest --method get"), strings.Index(calls, "az functionapp deploy")
		if create < 0 || get < create || deploy < get {
			t.Errorf("want infrastructure, then the Key Vault reference check, then the code; calls:\n%s", calls)
		}
		if !strings.Contains(calls, "configreferences/appsettings/refresh") {
			t.Errorf("the Key Vault references were not refreshed; calls:\n%s", calls)
		}
		if n := r.count("kv"); n != 2 {
			t.Errorf("Key Vault reference status read %d times, want 2 (denied, then resolved)", n)
		}
		if n := r.count("deploy"); n != 3 {
			t.Errorf("code upload tried %d times, want 3 (two 403s, then success)", n)
		}
		for _, want := range []string{
			"M365_CLIENT_SECRET: AccessToKeyVaultDenied", "Key Vault references not resolved yet", "all Key Vault references resolve",
			"upload refused with 403", "still propagating", "attempt 2/4", "attempt 3/4",
			"AZURE_ENV_NAME not set: parameter environmentName left to the template default",
		} {
			if !strings.Contains(r.output, want) {
				t.Errorf("output lacks %q:\n%s", want, r.output)
			}
		}
		// Parameters: ${VAR} resolved from the environment, unset ones left out, files private.
		var resolvedParams struct {
			Parameters map[string]struct {
				Value any `json:"value"`
			} `json:"parameters"`
		}
		data, err := os.ReadFile(filepath.Join(r.dir, "params-1.json"))
		if err != nil {
			t.Fatalf("no parameters file reached az: %v", err)
		}
		if err := json.Unmarshal(data, &resolvedParams); err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"m365ClientId": "11111111-1111-1111-1111-111111111111", "botAppId": "22222222-2222-2222-2222-222222222222", "leapAppUrl": "https://app.leapchange.example"} {
			if got := resolvedParams.Parameters[k].Value; got != want {
				t.Errorf("resolved parameter %s = %v, want %q", k, got, want)
			}
		}
		for _, k := range []string{"environmentName", "location", "botTenantId", "publicBaseUrl"} {
			if p, ok := resolvedParams.Parameters[k]; ok {
				t.Errorf("parameter %s = %v was passed although its variable is unset (the template default must apply)", k, p.Value)
			}
		}
		for i := 1; i <= r.count("params"); i++ {
			mode, _ := os.ReadFile(filepath.Join(r.dir, fmt.Sprintf("params-%d.mode", i)))
			if strings.TrimSpace(string(mode)) != "600" {
				t.Errorf("parameters file %d had mode %s, want 600 (it may hold secrets)", i, strings.TrimSpace(string(mode)))
			}
		}
		secrets, _ := os.ReadFile(filepath.Join(r.dir, fmt.Sprintf("params-%d.json", r.count("params"))))
		for _, v := range []string{"m365-secret-value", "bot-secret-value", "state-signing-key-value-of-at-least-32-bytes"} {
			if !strings.Contains(string(secrets), v) {
				t.Errorf("the secrets parameters file lacks a secret from the environment")
			}
			if strings.Contains(calls, v) || strings.Contains(r.output, v) {
				t.Errorf("a secret value appeared on an az command line or in the output")
			}
		}
	})

	t.Run("upload-refused-until-the-end", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, append([]string{"FAKE_DEPLOY_FAILS=99"}, deployEnv...), []string{resolved}, "@zip", "-g", "rg")
		if r.err == nil {
			t.Fatalf("deploy.sh succeeded although every upload was refused:\n%s", r.output)
		}
		if n := r.count("deploy"); n != 4 {
			t.Errorf("code upload tried %d times, want 4 (bounded by DEPLOY_RETRY_DELAYS)", n)
		}
		if !strings.Contains(r.output, "still refused (403) after 4 attempts") || !strings.Contains(r.output, "--skip-infra --app leap-func") {
			t.Errorf("the final message should say how often it tried and how to resume:\n%s", r.output)
		}
	})

	t.Run("other-upload-errors-are-not-retried", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, append([]string{"FAKE_DEPLOY_FAILS=1", "FAKE_DEPLOY_ERROR=ERROR: the package is not a valid zip"}, deployEnv...),
			[]string{resolved}, "@zip", "-g", "rg")
		if r.err == nil || r.count("deploy") != 1 || !strings.Contains(r.output, "not retried") {
			t.Errorf("want one attempt and a clear failure (err=%v, attempts=%d):\n%s", r.err, r.count("deploy"), r.output)
		}
	})

	t.Run("missing-secret-stops-before-the-code", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, deployEnv, []string{kvStatus(map[string]string{"STATE_SIGNING_KEY": "SecretNotFound"})}, "@zip", "-g", "rg")
		if r.err == nil {
			t.Fatalf("deploy.sh succeeded with an unresolvable Key Vault reference:\n%s", r.output)
		}
		if strings.Contains(r.calls(), "functionapp deploy") {
			t.Error("code was uploaded although a Key Vault reference cannot resolve")
		}
		if r.count("kv") != 1 || !strings.Contains(r.output, "STATE_SIGNING_KEY: SecretNotFound") || !strings.Contains(r.output, "No code was uploaded") {
			t.Errorf("want an immediate, explicit failure naming the setting:\n%s", r.output)
		}
	})

	t.Run("references-never-resolve", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, deployEnv, []string{denied}, "@zip", "-g", "rg")
		if r.err == nil || r.count("kv") != 4 || strings.Contains(r.calls(), "functionapp deploy") ||
			!strings.Contains(r.output, "still do not resolve after 4 attempts") {
			t.Errorf("want 4 bounded checks, no upload and a clear failure (err=%v, checks=%d):\n%s", r.err, r.count("kv"), r.output)
		}
	})

	t.Run("required-parameter-missing", func(t *testing.T) {
		t.Parallel()
		var env []string
		for _, kv := range deployEnv {
			if !strings.HasPrefix(kv, "M365_CLIENT_ID=") {
				env = append(env, kv)
			}
		}
		r := runDeploy(t, env, []string{resolved}, "@zip", "-g", "rg")
		if r.err == nil || !strings.Contains(r.output, "m365ClientId") || r.calls() != "" {
			t.Errorf("want a failure naming m365ClientId before any az call (err=%v, calls=%q):\n%s", r.err, r.calls(), r.output)
		}
	})

	t.Run("check-settings-only", func(t *testing.T) {
		t.Parallel()
		r := runDeploy(t, nil, []string{denied, resolved}, "-g", "rg", "--check-settings", "--app", "leap-func")
		if r.err != nil {
			t.Fatalf("deploy.sh --check-settings failed: %v\n%s", r.err, r.output)
		}
		calls := r.calls()
		if strings.Contains(calls, "deployment group") || strings.Contains(calls, "functionapp deploy") || !strings.Contains(calls, "functionapp show") {
			t.Errorf("--check-settings must only look the app up and check its references; calls:\n%s", calls)
		}
		if r.count("kv") != 2 {
			t.Errorf("want 2 status reads (denied, resolved), got %d", r.count("kv"))
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Bicep grammar (tree-sitter-bicep through infra/check/parse-bicep.mjs)
// ---------------------------------------------------------------------------------------------

// bicepParser returns node and infra/check/parse-bicep.mjs, or skips the test when Node.js or the parser
// (package.json devDependencies web-tree-sitter and tree-sitter-bicep) is not installed.
func bicepParser(t *testing.T) (node, script string) {
	t.Helper()
	root := repoRoot(t)
	script = filepath.Join(root, "infra", "check", "parse-bicep.mjs")
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("infra/check/parse-bicep.mjs: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the Bicep grammar check needs Node.js 20+ (TestInfraBicep's structural checks still ran)")
	}
	for _, f := range []string{"node_modules/web-tree-sitter/package.json", "node_modules/tree-sitter-bicep/tree-sitter-bicep.wasm"} {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(f))); err != nil {
			t.Skipf("the Bicep parser is not installed (%s is missing): run `npm ci` in the repository root to install "+
				"package.json's devDependencies web-tree-sitter and tree-sitter-bicep (TestInfraBicep's structural checks still ran)", f)
		}
	}
	return node, script
}

// runBicepParser runs the parser in dir and returns its combined output and exit code.
func runBicepParser(t *testing.T, node, script, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("node %s: %v\n%s", script, err, out)
		}
		code = exitErr.ExitCode()
	}
	return string(out), code
}

// TestBicepGrammar parses every .bicep file under infra/ with a real Bicep grammar, and checks that the
// check can fail: broken snippets are reported with file:line:col.
func TestBicepGrammar(t *testing.T) {
	node, script := bicepParser(t)
	root := repoRoot(t)

	t.Run("infra", func(t *testing.T) {
		var files []string
		filepath.WalkDir(filepath.Join(root, "infra"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".bicep") {
				files = append(files, p)
			}
			return err
		})
		out, code := runBicepParser(t, node, script, root)
		if code != 0 {
			t.Fatalf("infra/*.bicep do not parse (exit %d):\n%s", code, out)
		}
		if want := fmt.Sprintf("%d file(s) parsed, no syntax errors", len(files)); !strings.Contains(out, want) {
			t.Errorf("want %q (every .bicep file under infra/), got:\n%s", want, out)
		}
	})

	t.Run("broken-snippets-are-reported", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "broken.bicep"), "param name string = 'https://example.com//x'\n\n"+
			"resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: name\n  location: = 'westeurope'\n}\n")
		writeFile(t, filepath.Join(dir, "unclosed.bicep"), "var settings = {\n  a: 1\n\nvar b = 2\n")
		writeFile(t, filepath.Join(dir, "fine.bicep"), "param p string\noutput o string = p\n")
		out, code := runBicepParser(t, node, script, dir, dir)
		if code != 1 {
			t.Fatalf("exit %d, want 1 for syntax errors:\n%s", code, out)
		}
		if !regexp.MustCompile(`(?m)broken\.bicep:5:13: syntax error`).MatchString(out) {
			t.Errorf("the stray '=' at broken.bicep line 5, column 13 is not reported as file:line:col:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)unclosed\.bicep:\d+:\d+: `).MatchString(out) {
			t.Errorf("the unclosed object in unclosed.bicep is not reported:\n%s", out)
		}
		if strings.Contains(out, "fine.bicep") {
			t.Errorf("fine.bicep is reported although it is valid:\n%s", out)
		}
	})

	t.Run("double-slash-in-strings", func(t *testing.T) {
		// tree-sitter-bicep 1.1.0 lexes `//` inside some strings as a comment; the script masks string
		// contents before parsing so that valid files like servicebus.bicep are not reported.
		dir := t.TempDir()
		src := "param endpoint string = 'https://ns.servicebus.windows.net:443/'\n" +
			"var host = split(split(endpoint, '//')[1], '/')[0]\n" +
			"var u = 'a//b${'//'}c\\'//'\n"
		writeFile(t, filepath.Join(dir, "slashes.bicep"), src)
		if out, code := runBicepParser(t, node, script, dir, "slashes.bicep"); code != 0 {
			t.Errorf("valid strings containing // are reported (exit %d):\n%s", code, out)
		}
		out, code := runBicepParser(t, node, script, dir, "--no-mask", "slashes.bicep")
		t.Logf("without masking (the grammar bug the mask works around), exit %d:\n%s", code, out)
	})

	t.Run("setup-errors", func(t *testing.T) {
		if out, code := runBicepParser(t, node, script, t.TempDir(), "no-such.bicep"); code != 2 {
			t.Errorf("a missing file should exit 2, got %d:\n%s", code, out)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// azure.yaml (Azure Developer CLI)
// ---------------------------------------------------------------------------------------------

// yamlEntries flattens the block-mapping subset of YAML that azure.yaml uses into "a.b.c" -> scalar
// (comments dropped, block scalars kept as their text).
func yamlEntries(t *testing.T, src string) map[string]string {
	t.Helper()
	entries := map[string]string{}
	type level struct {
		indent int
		key    string
	}
	var stack []level
	lines := strings.Split(src, "\n")
	keyRe := regexp.MustCompile(`^( *)([A-Za-z0-9_.-]+):(?: +(.*))?$`)
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.Contains(line, "\t") {
			t.Errorf("azure.yaml:%d: tab in indentation", i+1)
		}
		m := keyRe.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("azure.yaml:%d: not a `key: value` line: %q", i+1, line)
			continue
		}
		indent := len(m[1])
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		path := m[2]
		if len(stack) > 0 {
			path = stack[len(stack)-1].key + "." + m[2]
		}
		value := strings.TrimSpace(m[3])
		if value != "" && !strings.HasPrefix(value, `"`) && !strings.HasPrefix(value, "'") {
			if c := strings.Index(value, " #"); c >= 0 {
				value = strings.TrimSpace(value[:c])
			}
		}
		switch value {
		case "":
			stack = append(stack, level{indent, path})
		case "|", ">":
			var block []string
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				block = append(block, strings.TrimSpace(lines[i]))
			}
			entries[path] = strings.Join(block, "\n")
		default:
			entries[path] = strings.Trim(value, `"'`)
		}
	}
	return entries
}

// TestAzureYAML checks the azd project file against infra/main.bicep and scripts/: structure only, since
// azd and a subscription are not available here (README "Deploying" says what was verified where).
func TestAzureYAML(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "azure.yaml"))
	if err != nil {
		t.Fatalf("azure.yaml: %v", err)
	}
	y := yamlEntries(t, string(data))
	if !strings.Contains(string(data), "schemas/v1.0/azure.yaml.json") {
		t.Error("azure.yaml should name azd's v1.0 schema (yaml-language-server comment) for editors")
	}
	if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(y["name"]) {
		t.Errorf("azure.yaml name %q: azd allows lower-case letters, digits and hyphens", y["name"])
	}
	for k, want := range map[string]string{"infra.provider": "bicep", "infra.path": "infra", "infra.module": "main"} {
		if y[k] != want {
			t.Errorf("azure.yaml %s = %q, want %q", k, y[k], want)
		}
	}

	// The one service is the Function App that main.bicep tags with azd-service-name.
	mainSrc, err := os.ReadFile(filepath.Join(root, "infra", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^var azdServiceName = '([^']+)'`).FindSubmatch(mainSrc)
	if m == nil {
		t.Fatal("main.bicep: no `var azdServiceName = '...'`")
	}
	svc := "services." + string(m[1])
	if _, ok := y[svc+".host"]; !ok {
		t.Fatalf("azure.yaml has no service %q (the azd-service-name main.bicep tags the Function App with)", string(m[1]))
	}
	for k, want := range map[string]string{
		".host":     "function",
		".language": "custom", // azd's own `go` packs one binary for the Go worker, without function folders
		".project":  ".",
		".dist":     "dist/app.zip",
	} {
		if y[svc+k] != want {
			t.Errorf("azure.yaml %s%s = %q, want %q", svc, k, y[svc+k], want)
		}
	}
	if run := y[svc+".hooks.prepackage.run"]; !strings.Contains(run, "scripts/package.sh") || !strings.Contains(run, "--zip "+y[svc+".dist"]) {
		t.Errorf("azure.yaml: the prepackage hook must build %s with scripts/package.sh, got %q", y[svc+".dist"], run)
	}
	if _, err := os.Stat(filepath.Join(root, "scripts", "package.sh")); err != nil {
		t.Error(err)
	}
	if v := y["requiredVersions.azd"]; !strings.HasPrefix(v, ">= 1.2") {
		t.Errorf("azure.yaml requiredVersions.azd = %q: the custom language needs azd >= 1.20.0", v)
	}

	// The postprovision hook checks the Key Vault references with deploy.sh, using outputs azd stores.
	hook := y["hooks.postprovision.run"]
	for _, want := range []string{"scripts/deploy.sh --check-settings", "$AZURE_RESOURCE_GROUP", "$AZURE_FUNCTION_APP_NAME"} {
		if !strings.Contains(hook, want) {
			t.Errorf("azure.yaml postprovision hook lacks %q:\n%s", want, hook)
		}
	}
	if !strings.Contains(string(mainSrc), "output AZURE_FUNCTION_APP_NAME string") {
		t.Error("main.bicep must output AZURE_FUNCTION_APP_NAME for the postprovision hook")
	}
	usage, err := exec.Command("bash", filepath.Join(root, "scripts", "deploy.sh"), "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(usage), "--check-settings") {
		t.Errorf("deploy.sh --help does not document --check-settings (err=%v)", err)
	}

	// No secret values in the project file: they come from azd env values (azd env set-secret).
	for _, s := range keyVaultSettings {
		if regexp.MustCompile(s + `\s*[:=]\s*\S`).Match(data) {
			t.Errorf("azure.yaml assigns %s; secrets belong in the azd environment, not in files", s)
		}
	}
}
