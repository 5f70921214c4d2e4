// Package appfiles loads and validates the Azure Functions definition files of the app: host.json
// and one function.json per function folder.
//
// In the repository the function folders live under functions/ (functions/<Name>/function.json);
// in a deployed package they sit next to host.json. [Load] accepts both layouts. The function name
// is the folder name, exactly as the Functions host uses it.
//
// The package also parses the two small languages those files contain: HTTP route templates
// ([ParseRoute]) and NCRONTAB timer schedules ([ParseSchedule]).
package appfiles

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Binding types and directions used in function.json.
const (
	TypeHTTPTrigger       = "httpTrigger"
	TypeHTTP              = "http"
	TypeTimerTrigger      = "timerTrigger"
	TypeServiceBusTrigger = "serviceBusTrigger"
	TypeServiceBus        = "serviceBus"

	DirIn  = "in"
	DirOut = "out"
)

// App is an app root: host.json plus its functions, sorted by name.
type App struct {
	Root      string
	Host      Host
	Functions []*Function
}

// Host is the part of host.json this project uses.
type Host struct {
	Version         string         `json:"version"`
	FunctionTimeout string         `json:"functionTimeout,omitempty"`
	CustomHandler   *CustomHandler `json:"customHandler,omitempty"`
	Extensions      Extensions     `json:"extensions"`
}

// CustomHandler is host.json's customHandler section.
type CustomHandler struct {
	Description                 HandlerDescription `json:"description"`
	EnableForwardingHTTPRequest bool               `json:"enableForwardingHttpRequest,omitempty"`
	EnableProxyingHTTPRequest   bool               `json:"enableProxyingHttpRequest,omitempty"`
	InitializationTimeout       string             `json:"initializationTimeout,omitempty"`
}

// HandlerDescription says how the host starts the handler process.
type HandlerDescription struct {
	DefaultExecutablePath string   `json:"defaultExecutablePath"`
	WorkingDirectory      string   `json:"workingDirectory,omitempty"`
	Arguments             []string `json:"arguments,omitempty"`
}

// Extensions holds the binding extension settings of host.json.
type Extensions struct {
	ServiceBus *ServiceBusOptions `json:"serviceBus,omitempty"`
	HTTP       *HTTPOptions       `json:"http,omitempty"`
}

// ServiceBusOptions is extensions.serviceBus (extension 5.x names).
type ServiceBusOptions struct {
	PrefetchCount              int    `json:"prefetchCount,omitempty"`
	AutoCompleteMessages       *bool  `json:"autoCompleteMessages,omitempty"`
	MaxAutoLockRenewalDuration string `json:"maxAutoLockRenewalDuration,omitempty"`
	MaxConcurrentCalls         int    `json:"maxConcurrentCalls,omitempty"`
	MaxConcurrentSessions      int    `json:"maxConcurrentSessions,omitempty"`
	MaxMessageBatchSize        int    `json:"maxMessageBatchSize,omitempty"`
	SessionIdleTimeout         string `json:"sessionIdleTimeout,omitempty"`
}

// HTTPOptions is extensions.http.
type HTTPOptions struct {
	RoutePrefix *string `json:"routePrefix,omitempty"`
}

// Function is one function folder.
type Function struct {
	Name     string       `json:"-"` // the folder name
	Dir      string       `json:"-"` // the folder path
	Disabled bool         `json:"disabled,omitempty"`
	Bindings []Binding    `json:"bindings"`
	Retry    *RetryPolicy `json:"retry,omitempty"`
}

// RetryPolicy is a function-level retry policy.
type RetryPolicy struct {
	Strategy        string `json:"strategy"`
	MaxRetryCount   int    `json:"maxRetryCount"`
	DelayInterval   string `json:"delayInterval,omitempty"`
	MinimumInterval string `json:"minimumInterval,omitempty"`
	MaximumInterval string `json:"maximumInterval,omitempty"`
}

// Binding is one entry of function.json's bindings. Fields not used by a type stay empty.
type Binding struct {
	Type      string `json:"type"`
	Direction string `json:"direction"`
	Name      string `json:"name"`
	DataType  string `json:"dataType,omitempty"`

	// httpTrigger
	Route     string   `json:"route,omitempty"`
	Methods   []string `json:"methods,omitempty"`
	AuthLevel string   `json:"authLevel,omitempty"`

	// timerTrigger
	Schedule     string `json:"schedule,omitempty"`
	RunOnStartup bool   `json:"runOnStartup,omitempty"`
	UseMonitor   *bool  `json:"useMonitor,omitempty"`

	// serviceBusTrigger / serviceBus
	QueueName         string `json:"queueName,omitempty"`
	TopicName         string `json:"topicName,omitempty"`
	SubscriptionName  string `json:"subscriptionName,omitempty"`
	Connection        string `json:"connection,omitempty"`
	Cardinality       string `json:"cardinality,omitempty"`
	IsSessionsEnabled bool   `json:"isSessionsEnabled,omitempty"`
}

// Is reports whether b has type typ (case-insensitively, as the host compares) and direction dir
// ("" matches any direction).
func (b *Binding) Is(typ, dir string) bool {
	return strings.EqualFold(b.Type, typ) && (dir == "" || strings.EqualFold(b.Direction, dir))
}

// Trigger returns the function's trigger binding, or nil.
func (f *Function) Trigger() *Binding {
	for i := range f.Bindings {
		if strings.HasSuffix(strings.ToLower(f.Bindings[i].Type), "trigger") {
			return &f.Bindings[i]
		}
	}
	return nil
}

// Outputs returns the output bindings.
func (f *Function) Outputs() []*Binding {
	var out []*Binding
	for i := range f.Bindings {
		if strings.EqualFold(f.Bindings[i].Direction, DirOut) {
			out = append(out, &f.Bindings[i])
		}
	}
	return out
}

// count returns how many bindings have type typ and direction dir.
func (f *Function) count(typ, dir string) int {
	n := 0
	for i := range f.Bindings {
		if f.Bindings[i].Is(typ, dir) {
			n++
		}
	}
	return n
}

// IsRawHTTP reports whether the host forwards the original HTTP request to the handler for f
// (section 5 of the host reference): exactly one httpTrigger, exactly one http output, nothing else,
// and a forwarding or proxying flag in host.json. Otherwise an HTTP function is invoked in JSON mode.
func (a *App) IsRawHTTP(f *Function) bool {
	ch := a.Host.CustomHandler
	if ch == nil || !(ch.EnableProxyingHTTPRequest || ch.EnableForwardingHTTPRequest) {
		return false
	}
	return len(f.Bindings) == 2 && f.count(TypeHTTPTrigger, DirIn) == 1 && f.count(TypeHTTP, DirOut) == 1
}

// RoutePrefix is extensions.http.routePrefix, "api" by default.
func (a *App) RoutePrefix() string {
	if h := a.Host.Extensions.HTTP; h != nil && h.RoutePrefix != nil {
		return strings.Trim(*h.RoutePrefix, "/")
	}
	return "api"
}

// FunctionTimeout is host.json's functionTimeout; 0 means unbounded. Absent means the 30-minute
// default of the Flex Consumption, Premium and Dedicated plans.
func (a *App) FunctionTimeout() (time.Duration, error) {
	if a.Host.FunctionTimeout == "" {
		return 30 * time.Minute, nil
	}
	if a.Host.FunctionTimeout == "-1" {
		return 0, nil
	}
	return ParseTimeSpan(a.Host.FunctionTimeout)
}

// InitializationTimeout is customHandler.initializationTimeout, 30 s by default (the host's code
// default).
func (a *App) InitializationTimeout() (time.Duration, error) {
	if ch := a.Host.CustomHandler; ch != nil && ch.InitializationTimeout != "" {
		return ParseTimeSpan(ch.InitializationTimeout)
	}
	return 30 * time.Second, nil
}

// MaxConcurrentCalls is extensions.serviceBus.maxConcurrentCalls, 16 by default.
func (a *App) MaxConcurrentCalls() int {
	if sb := a.Host.Extensions.ServiceBus; sb != nil && sb.MaxConcurrentCalls > 0 {
		return sb.MaxConcurrentCalls
	}
	return 16
}

// Function returns the function named name (exact match), or nil.
func (a *App) Function(name string) *Function {
	for _, f := range a.Functions {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Load reads host.json at root and every <dir>/function.json, where the function folders are
// root/functions/* when root/functions exists (repository layout) and root/* otherwise (deployed
// layout). It fails on unreadable or malformed files, reporting all of them; call [App.Validate]
// for semantic checks.
func Load(root string) (*App, error) {
	a := &App{Root: root}
	hb, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return nil, fmt.Errorf("appfiles: %w", err)
	}
	var errs []error
	if err := json.Unmarshal(hb, &a.Host); err != nil {
		errs = append(errs, fmt.Errorf("host.json: %w", err))
	}
	dir := filepath.Join(root, "functions")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = root
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*", "function.json"))
	if err != nil {
		return nil, fmt.Errorf("appfiles: %w", err)
	}
	for _, p := range paths {
		fb, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f := &Function{Name: filepath.Base(filepath.Dir(p)), Dir: filepath.Dir(p)}
		if err := json.Unmarshal(fb, f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel(root, p), err))
			continue
		}
		a.Functions = append(a.Functions, f)
	}
	slices.SortFunc(a.Functions, func(x, y *Function) int { return strings.Compare(x.Name, y.Name) })
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("appfiles: %w", err)
	}
	return a, nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

// ParseTimeSpan parses a .NET TimeSpan as used in host.json: "hh:mm:ss", "d.hh:mm:ss",
// optionally with a fraction "hh:mm:ss.fff".
func ParseTimeSpan(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid TimeSpan %q (want hh:mm:ss or d.hh:mm:ss)", s)
	var days int64
	rest := s
	if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
		d, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil || d < 0 {
			return 0, bad
		}
		days, rest = d, s[i+1:]
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return 0, bad
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec >= 60 {
		return 0, bad
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec*float64(time.Second)), nil
}
