package appfiles

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Route is a parsed HTTP route template such as "orgs/{org}/{*rest}" (ASP.NET Core routing syntax as
// the Functions host uses it): literal segments match case-insensitively; {name} matches one
// non-empty segment; {name?} is optional (only as a trailing segment); {*name} is a catch-all that
// matches the rest of the path, possibly empty; {name:constraint} adds constraints (int, long,
// bool, guid, alpha, double, decimal, datetime, minlength(n), maxlength(n), length(n|a,b), min(n),
// max(n), range(a,b), regex(expr); several may be chained with ':').
type Route struct {
	Template string
	Segments []Segment
}

// Segment is one path segment of a route template.
type Segment struct {
	Literal     string       // set for literal segments
	Param       string       // set for parameter segments
	Optional    bool         // {x?}
	CatchAll    bool         // {*x}
	Constraints []Constraint // {x:int:min(1)}
}

// Constraint is one inline route constraint.
type Constraint struct {
	Name string   // lower-case, e.g. "int", "range"
	Args []string // e.g. ["1","10"] for range(1,10)
	re   *regexp.Regexp
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseRoute parses a route template.
func ParseRoute(tmpl string) (*Route, error) {
	r := &Route{Template: tmpl}
	t := strings.Trim(tmpl, "/")
	if strings.HasPrefix(tmpl, "~") {
		return nil, fmt.Errorf("route %q: '~' is not supported", tmpl)
	}
	if t == "" {
		return r, nil
	}
	seen := map[string]bool{}
	parts := strings.Split(t, "/")
	for i, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("route %q: empty segment", tmpl)
		}
		if !strings.ContainsAny(p, "{}") {
			r.Segments = append(r.Segments, Segment{Literal: p})
			continue
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(p, "{"), "}")
		if !strings.HasPrefix(p, "{") || !strings.HasSuffix(p, "}") || (strings.ContainsAny(inner, "{}") && !strings.Contains(inner, "regex(")) {
			return nil, fmt.Errorf("route %q: segment %q must be a literal or exactly one {parameter}", tmpl, p)
		}
		s, err := parseParam(inner)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", tmpl, err)
		}
		key := strings.ToLower(s.Param)
		if seen[key] {
			return nil, fmt.Errorf("route %q: parameter %q appears twice", tmpl, s.Param)
		}
		seen[key] = true
		last := i == len(parts)-1
		if s.CatchAll && !last {
			return nil, fmt.Errorf("route %q: catch-all {*%s} must be the last segment", tmpl, s.Param)
		}
		if s.Optional && !last {
			return nil, fmt.Errorf("route %q: optional {%s?} must be the last segment", tmpl, s.Param)
		}
		r.Segments = append(r.Segments, s)
	}
	return r, nil
}

func parseParam(body string) (Segment, error) {
	var s Segment
	name, cons, _ := strings.Cut(body, ":")
	if strings.HasPrefix(name, "**") {
		name = name[2:]
		s.CatchAll = true
	} else if strings.HasPrefix(name, "*") {
		name = name[1:]
		s.CatchAll = true
	}
	if strings.HasSuffix(name, "?") {
		name = strings.TrimSuffix(name, "?")
		s.Optional = true
	}
	if strings.HasSuffix(cons, "?") { // {id:int?}
		cons = strings.TrimSuffix(cons, "?")
		s.Optional = true
	}
	if strings.Contains(name, "=") {
		return s, fmt.Errorf("default values ({%s}) are not supported", body)
	}
	if !paramName.MatchString(name) {
		return s, fmt.Errorf("bad parameter name in {%s}", body)
	}
	if s.CatchAll && s.Optional {
		return s, fmt.Errorf("{%s}: a catch-all is already optional", body)
	}
	s.Param = name
	for cons != "" {
		var c string
		c, cons = cutConstraint(cons)
		k, err := parseConstraint(c)
		if err != nil {
			return s, fmt.Errorf("{%s}: %w", body, err)
		}
		s.Constraints = append(s.Constraints, k)
	}
	return s, nil
}

// cutConstraint splits "int:min(1)" into "int" and "min(1)", respecting parentheses.
func cutConstraint(s string) (string, string) {
	depth := 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ':':
			if depth == 0 {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

var constraintArgs = map[string]int{ // name → number of arguments (-1: 1 or 2)
	"int": 0, "long": 0, "bool": 0, "guid": 0, "alpha": 0, "double": 0, "decimal": 0, "float": 0, "datetime": 0,
	"minlength": 1, "maxlength": 1, "length": -1, "min": 1, "max": 1, "range": 2, "regex": 1,
}

func parseConstraint(c string) (Constraint, error) {
	name, args := c, ""
	if i := strings.IndexByte(c, '('); i >= 0 {
		if !strings.HasSuffix(c, ")") {
			return Constraint{}, fmt.Errorf("constraint %q: missing ')'", c)
		}
		name, args = c[:i], c[i+1:len(c)-1]
	}
	k := Constraint{Name: strings.ToLower(name)}
	want, ok := constraintArgs[k.Name]
	if !ok {
		return k, fmt.Errorf("unknown constraint %q", name)
	}
	if k.Name == "regex" {
		re, err := regexp.Compile("(?i)" + args)
		if err != nil {
			return k, fmt.Errorf("constraint %q: %w", c, err)
		}
		k.Args, k.re = []string{args}, re
		return k, nil
	}
	if args != "" {
		k.Args = strings.Split(args, ",")
	}
	n := len(k.Args)
	if (want >= 0 && n != want) || (want < 0 && n != 1 && n != 2) {
		return k, fmt.Errorf("constraint %q: wrong number of arguments", c)
	}
	for _, a := range k.Args {
		if _, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64); err != nil {
			return k, fmt.Errorf("constraint %q: argument %q is not an integer", c, a)
		}
	}
	return k, nil
}

func (k Constraint) arg(i int) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(k.Args[i]), 10, 64)
	return v
}

// Match reports whether v satisfies the constraint.
func (k Constraint) Match(v string) bool {
	switch k.Name {
	case "int":
		_, err := strconv.ParseInt(v, 10, 32)
		return err == nil
	case "long":
		_, err := strconv.ParseInt(v, 10, 64)
		return err == nil
	case "bool":
		_, err := strconv.ParseBool(strings.ToLower(v))
		return err == nil && (strings.EqualFold(v, "true") || strings.EqualFold(v, "false"))
	case "guid":
		return guidRE.MatchString(v)
	case "alpha":
		return alphaRE.MatchString(v)
	case "double", "decimal", "float":
		_, err := strconv.ParseFloat(v, 64)
		return err == nil
	case "datetime":
		return true // not checked locally
	case "minlength":
		return int64(len([]rune(v))) >= k.arg(0)
	case "maxlength":
		return int64(len([]rune(v))) <= k.arg(0)
	case "length":
		n := int64(len([]rune(v)))
		if len(k.Args) == 1 {
			return n == k.arg(0)
		}
		return n >= k.arg(0) && n <= k.arg(1)
	case "min", "max", "range":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		switch k.Name {
		case "min":
			return n >= k.arg(0)
		case "max":
			return n <= k.arg(0)
		}
		return n >= k.arg(0) && n <= k.arg(1)
	case "regex":
		return k.re.MatchString(v)
	}
	return false
}

var (
	guidRE  = regexp.MustCompile(`^(?i)\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$`)
	alphaRE = regexp.MustCompile(`^[A-Za-z]+$`)
)

// Match matches an escaped request path relative to the route prefix (e.g. "orgs/acme/m365") and
// returns the route parameters (unescaped; a catch-all keeps its slashes).
func (r *Route) Match(path string) (map[string]string, bool) {
	path = strings.Trim(path, "/")
	var parts []string
	if path != "" {
		parts = strings.Split(path, "/")
	}
	params := map[string]string{}
	for i, s := range r.Segments {
		if s.CatchAll {
			rest := strings.Join(parts[min(i, len(parts)):], "/")
			v, err := url.PathUnescape(rest)
			if err != nil {
				return nil, false
			}
			if rest != "" && !s.matches(v) {
				return nil, false
			}
			params[s.Param] = v
			return params, true
		}
		if i >= len(parts) {
			if s.Optional {
				return params, true
			}
			return nil, false
		}
		v, err := url.PathUnescape(parts[i])
		if err != nil {
			return nil, false
		}
		if s.Literal != "" {
			if !strings.EqualFold(v, s.Literal) {
				return nil, false
			}
			continue
		}
		if !s.matches(v) {
			return nil, false
		}
		params[s.Param] = v
	}
	if len(parts) != len(r.Segments) {
		return nil, false
	}
	return params, true
}

func (s Segment) matches(v string) bool {
	for _, c := range s.Constraints {
		if !c.Match(v) {
			return false
		}
	}
	return true
}

// Precedence orders routes for matching: higher wins. Literal segments beat parameters, constrained
// parameters beat plain ones, and catch-alls come last, segment by segment from the left; a longer
// route beats a shorter one with the same prefix.
func (r *Route) Precedence() []int {
	p := make([]int, 0, len(r.Segments)+1)
	for _, s := range r.Segments {
		switch {
		case s.Literal != "":
			p = append(p, 4)
		case s.CatchAll:
			p = append(p, 1)
		case len(s.Constraints) > 0:
			p = append(p, 3)
		default:
			p = append(p, 2)
		}
	}
	return p
}
