package keywords

import (
	"strings"
	"unicode/utf8"
)

// Excerpt returns a short excerpt of text for an insight: at most max characters (runes),
// whitespace collapsed to single spaces, around the first mention of any of matches (the
// keywords Match returned), with about a third of the room before the mention and the rest
// after, cut at spaces where it can, "…" marking each cut; invalid UTF-8 becomes U+FFFD. When no mention is found (matches
// empty or invalid), it is the start of the text. A text that fits is returned whole.
func Excerpt(text string, matches []string, max int) string {
	if max <= 0 {
		return ""
	}
	flat := strings.Join(strings.Fields(strings.ToValidUTF8(text, "\uFFFD")), " ")
	runes := []rune(flat)
	n := len(runes)
	if n <= max {
		return flat
	}
	ms, me := mention(flat, matches)
	if me-ms >= max-2 { // no room for context: the mention's start, cut
		end := min(n, ms+max)
		if end < n && max > 1 {
			return strings.TrimSpace(string(runes[ms:end-1])) + "…"
		}
		return string(runes[ms:end])
	}
	start := max0(ms - (max-(me-ms))/3)
	end := min(n, start+max)
	start = max0(end - max)
	if start > 0 {
		start++ // room for the leading "…"
		if i := indexSpace(runes[start:ms]); i >= 0 {
			start += i + 1
		}
	}
	if end < n {
		end-- // room for the trailing "…"
		if i := lastSpace(runes[me:end]); i >= 0 {
			end = me + i
		}
	}
	out := strings.TrimSpace(string(runes[start:end]))
	if start > 0 {
		out = "…" + out
	}
	if end < n {
		out += "…"
	}
	return out
}

// mention returns the rune span in flat of the earliest whole-word mention of one of
// keywords, or 0, 0.
func mention(flat string, keywords []string) (start, end int) {
	var valid []string
	for _, k := range keywords {
		if utf8.ValidString(k) && utf8.RuneCountInString(k) <= MaxKeywordRunes {
			if f, _ := matchForm(k, false); f != "" {
				valid = append(valid, k)
			}
		}
	}
	if len(valid) == 0 || len(valid) > MaxKeywords {
		return 0, 0
	}
	m, err := Compile(valid)
	if err != nil {
		return 0, 0
	}
	form, offs := matchForm(flat, true)
	fs, fe := -1, -1
	m.find(form, func(_, s, e int) bool {
		if fs < 0 || s < fs {
			fs, fe = s, e
		}
		return true
	})
	if fs < 0 {
		return 0, 0
	}
	bs, be := offs[fs], len(flat)
	if fe < len(offs) {
		be = offs[fe]
	}
	start = utf8.RuneCountInString(flat[:bs])
	return start, start + utf8.RuneCountInString(strings.TrimRight(flat[bs:be], " "))
}

func max0(i int) int { return max(i, 0) }

func indexSpace(rs []rune) int {
	for i, r := range rs {
		if r == ' ' {
			return i
		}
	}
	return -1
}

func lastSpace(rs []rune) int {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i] == ' ' {
			return i
		}
	}
	return -1
}
