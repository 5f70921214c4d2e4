package entra

import "strings"

// RedactURLs strips the query string and fragment from every http(s) URL in s. Graph paging links
// carry $skiptoken and $deltatoken, which are replayable state of a tenant's directory; an error
// text that reaches a run's lastError, an API answer or a log must not carry them.
func RedactURLs(s string) string {
	var b strings.Builder
	for {
		i := urlStart(s)
		if i < 0 {
			if b.Len() == 0 {
				return s
			}
			b.WriteString(s)
			return b.String()
		}
		end := i + strings.IndexFunc(s[i:]+" ", isURLEnd)
		u := s[i:end]
		if q := strings.IndexAny(u, "?#"); q >= 0 {
			u = u[:q]
		}
		b.WriteString(s[:i])
		b.WriteString(u)
		s = s[end:]
	}
}

func urlStart(s string) int {
	l := strings.ToLower(s)
	i, j := strings.Index(l, "http://"), strings.Index(l, "https://")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}

func isURLEnd(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '"', '\'', '<', '>', '`':
		return true
	}
	return false
}

// Redacted returns err with RedactURLs applied to its text, for errors that leave through a log
// or an answer; errors.Is and errors.As still see the cause. nil stays nil.
func Redacted(err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); RedactURLs(msg) != msg {
		return &redacted{err}
	}
	return err
}

type redacted struct{ err error }

func (r *redacted) Error() string { return RedactURLs(r.err.Error()) }
func (r *redacted) Unwrap() error { return r.err }
