package appfiles

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Problem is one finding of [App.Validate]. Warnings are advice (the host would run the app);
// everything else would make the host or this project misbehave.
type Problem struct {
	Function string // "" for host.json
	Message  string
	Warning  bool
}

func (p Problem) String() string {
	where := "host.json"
	if p.Function != "" {
		where = p.Function + "/function.json"
	}
	if p.Warning {
		return where + ": warning: " + p.Message
	}
	return where + ": " + p.Message
}

// Problems is the result of [App.Validate].
type Problems []Problem

// Err joins the non-warning problems into one error, or returns nil.
func (ps Problems) Err() error {
	var errs []error
	for _, p := range ps {
		if !p.Warning {
			errs = append(errs, errors.New(p.String()))
		}
	}
	return errors.Join(errs...)
}

// Warnings returns only the warnings.
func (ps Problems) Warnings() Problems {
	return slices.DeleteFunc(slices.Clone(ps), func(p Problem) bool { return !p.Warning })
}

var (
	functionName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,127}$`)
	bindingName  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*|\$return)$`)
	queueName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$`)
	httpMethods  = []string{"get", "post", "put", "delete", "patch", "head", "options", "trace"}
	authLevels   = []string{"anonymous", "function", "admin", "user", "system"}
)

// Validate checks the app against what the Functions host and this project need and reports every
// problem it finds.
func (a *App) Validate() Problems {
	var ps Problems
	hostErr := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	h := a.Host
	if h.Version != "2.0" {
		hostErr("version must be \"2.0\", got %q", h.Version)
	}
	if h.FunctionTimeout != "" && h.FunctionTimeout != "-1" {
		if _, err := ParseTimeSpan(h.FunctionTimeout); err != nil {
			hostErr("functionTimeout: %v", err)
		}
	}
	if ch := h.CustomHandler; ch == nil {
		hostErr("customHandler section is missing")
	} else {
		if ch.Description.DefaultExecutablePath == "" {
			hostErr("customHandler.description.defaultExecutablePath is empty")
		}
		if ch.InitializationTimeout != "" {
			if _, err := ParseTimeSpan(ch.InitializationTimeout); err != nil {
				hostErr("customHandler.initializationTimeout: %v", err)
			}
		}
		if !ch.EnableProxyingHTTPRequest && !ch.EnableForwardingHTTPRequest {
			ps = append(ps, Problem{Warning: true, Message: "neither enableProxyingHttpRequest nor enableForwardingHttpRequest is set: HTTP functions are invoked in JSON mode on /<Name>"})
		}
	}
	if sb := h.Extensions.ServiceBus; sb != nil {
		if sb.MaxConcurrentCalls < 0 {
			hostErr("extensions.serviceBus.maxConcurrentCalls must be positive")
		}
		if sb.AutoCompleteMessages != nil && !*sb.AutoCompleteMessages {
			hostErr("extensions.serviceBus.autoCompleteMessages must stay true for custom handlers")
		}
		if sb.MaxAutoLockRenewalDuration != "" {
			if _, err := ParseTimeSpan(sb.MaxAutoLockRenewalDuration); err != nil {
				hostErr("extensions.serviceBus.maxAutoLockRenewalDuration: %v", err)
			}
		}
	}

	routes := map[string]string{} // normalized template → function
	for _, f := range a.Functions {
		ps = append(ps, a.validateFunction(f, routes)...)
	}
	return ps
}

func (a *App) validateFunction(f *Function, routes map[string]string) Problems {
	var ps Problems
	bad := func(format string, args ...any) {
		ps = append(ps, Problem{Function: f.Name, Message: fmt.Sprintf(format, args...)})
	}
	warn := func(format string, args ...any) {
		ps = append(ps, Problem{Function: f.Name, Warning: true, Message: fmt.Sprintf(format, args...)})
	}
	if !functionName.MatchString(f.Name) {
		bad("folder name %q is not a valid function name (letters, digits, '_' or '-', starting with a letter)", f.Name)
	}
	if len(f.Bindings) == 0 {
		bad("no bindings")
		return ps
	}
	triggers := 0
	names := map[string]bool{}
	for i := range f.Bindings {
		b := &f.Bindings[i]
		if strings.HasSuffix(strings.ToLower(b.Type), "trigger") {
			triggers++
		}
		if !bindingName.MatchString(b.Name) {
			bad("binding %d (%s): name %q is not a valid identifier", i, b.Type, b.Name)
		} else if names[strings.ToLower(b.Name)] {
			bad("binding name %q is used twice", b.Name)
		}
		names[strings.ToLower(b.Name)] = true
		if !strings.EqualFold(b.Direction, DirIn) && !strings.EqualFold(b.Direction, DirOut) && !strings.EqualFold(b.Direction, "inout") {
			bad("binding %q: direction must be \"in\" or \"out\", got %q", b.Name, b.Direction)
		}
		if b.DataType != "" && !slices.Contains([]string{"binary", "string", "stream"}, strings.ToLower(b.DataType)) {
			bad("binding %q: dataType must be binary, string or stream, got %q", b.Name, b.DataType)
		}
		switch {
		case b.Is(TypeHTTPTrigger, ""):
			if !strings.EqualFold(b.Direction, DirIn) {
				bad("httpTrigger %q must have direction \"in\"", b.Name)
			}
			ps = append(ps, a.validateHTTP(f, b, routes)...)
		case b.Is(TypeHTTP, ""):
			if !strings.EqualFold(b.Direction, DirOut) {
				bad("http binding %q must have direction \"out\"", b.Name)
			}
		case b.Is(TypeTimerTrigger, ""):
			sched, err := ParseSchedule(b.Schedule)
			if err != nil {
				bad("timerTrigger %q: %v", b.Name, err)
			} else if b.UseMonitor != nil && *b.UseMonitor && sched.MinInterval() < 60e9 {
				warn("timerTrigger %q: useMonitor is pointless for schedules firing more than once a minute", b.Name)
			}
		case b.Is(TypeServiceBusTrigger, ""), b.Is(TypeServiceBus, ""):
			kind := "serviceBus output"
			if b.Is(TypeServiceBusTrigger, "") {
				kind = "serviceBusTrigger"
				if !strings.EqualFold(b.Direction, DirIn) {
					bad("serviceBusTrigger %q must have direction \"in\"", b.Name)
				}
				if !strings.EqualFold(b.DataType, "binary") {
					warn("serviceBusTrigger %q: set \"dataType\": \"binary\" (string bodies are double-encoded and their JSON fields leak into Metadata)", b.Name)
				}
				if b.Cardinality != "" && !strings.EqualFold(b.Cardinality, "one") {
					bad("serviceBusTrigger %q: cardinality must be \"one\", got %q", b.Name, b.Cardinality)
				}
				if b.IsSessionsEnabled {
					bad("serviceBusTrigger %q: sessions are not supported", b.Name)
				}
			} else if !strings.EqualFold(b.Direction, DirOut) {
				bad("serviceBus binding %q must have direction \"out\"", b.Name)
			} else if !strings.EqualFold(b.DataType, "binary") {
				warn("serviceBus output %q: without \"dataType\": \"binary\" every string output is tried as base64 (the host's base64 trap); send objects", b.Name)
			}
			if b.QueueName == "" {
				if b.TopicName != "" {
					bad("%s %q: topics are not supported, use queueName", kind, b.Name)
				} else {
					bad("%s %q: queueName is required", kind, b.Name)
				}
			} else if !queueName.MatchString(b.QueueName) {
				bad("%s %q: queueName %q is not a valid queue name", kind, b.Name, b.QueueName)
			}
			if b.Connection == "" {
				bad("%s %q: connection is required (the setting prefix, e.g. ServiceBusConnection)", kind, b.Name)
			}
		default:
			warn("binding %q: type %q is not understood by this project's tooling", b.Name, b.Type)
		}
	}
	if triggers != 1 {
		bad("must have exactly one trigger binding, has %d", triggers)
	}
	if f.count(TypeHTTPTrigger, "") == 1 && !a.IsRawHTTP(f) && a.Host.CustomHandler != nil &&
		(a.Host.CustomHandler.EnableProxyingHTTPRequest || a.Host.CustomHandler.EnableForwardingHTTPRequest) {
		warn("HTTP function is not proxied (needs exactly one httpTrigger and one http output and nothing else): it is invoked in JSON mode as POST /%s", f.Name)
	}
	return ps
}

func (a *App) validateHTTP(f *Function, b *Binding, routes map[string]string) Problems {
	var ps Problems
	bad := func(format string, args ...any) {
		ps = append(ps, Problem{Function: f.Name, Message: fmt.Sprintf(format, args...)})
	}
	tmpl := b.Route
	if tmpl == "" {
		tmpl = f.Name // the host's default route is the function name
	}
	r, err := ParseRoute(tmpl)
	if err != nil {
		bad("httpTrigger %q: %v", b.Name, err)
	} else {
		key := normalizeRoute(r)
		for _, m := range b.Methods {
			if !slices.Contains(httpMethods, strings.ToLower(m)) {
				bad("httpTrigger %q: unknown method %q", b.Name, m)
			}
		}
		if other, ok := routes[key]; ok && methodsOverlap(a.Function(other), b) {
			bad("route %q conflicts with function %s", tmpl, other)
		}
		routes[key] = f.Name
		if strings.HasPrefix(strings.ToLower(strings.Trim(tmpl, "/")), "admin") {
			bad("httpTrigger %q: routes starting with \"admin\" are reserved by the host", b.Name)
		}
	}
	if b.AuthLevel != "" && !slices.Contains(authLevels, strings.ToLower(b.AuthLevel)) {
		bad("httpTrigger %q: authLevel must be anonymous, function or admin, got %q", b.Name, b.AuthLevel)
	}
	return ps
}

func normalizeRoute(r *Route) string {
	var parts []string
	for _, s := range r.Segments {
		switch {
		case s.Literal != "":
			parts = append(parts, strings.ToLower(s.Literal))
		case s.CatchAll:
			parts = append(parts, "{*}")
		default:
			parts = append(parts, "{}")
		}
	}
	return strings.Join(parts, "/")
}

func methodsOverlap(f *Function, b *Binding) bool {
	if f == nil {
		return true
	}
	var other []string
	for i := range f.Bindings {
		if f.Bindings[i].Is(TypeHTTPTrigger, "") {
			other = f.Bindings[i].Methods
		}
	}
	if len(other) == 0 || len(b.Methods) == 0 {
		return true
	}
	for _, m := range b.Methods {
		for _, o := range other {
			if strings.EqualFold(m, o) {
				return true
			}
		}
	}
	return false
}
