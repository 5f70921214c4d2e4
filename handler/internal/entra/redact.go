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

// urlStart is the byte offset of the first "http://" or "https://" in s, any case, or -1. It
// compares in place: lower-casing s first would move offsets wherever s holds non-ASCII or
// invalid UTF-8 bytes.
func urlStart(s string) int {
	for k := 0; k+len("http://") <= len(s); k++ {
		if (s[k] == 'h' || s[k] == 'H') && (hasPrefixFold(s[k:], "http://") || hasPrefixFold(s[k:], "https://")) {
			return k
		}
	}
	return -1
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
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
