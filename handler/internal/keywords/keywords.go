// Package keywords finds which of an organisation's watched keywords a channel message
// mentions: case- and accent-insensitive, whole words and phrases, Unicode-aware, in one
// pass over the text for hundreds of keywords.
//
// # Rules
//
// Text and keywords are brought to one matching form (fold.Pieces): Unicode case folding
// ("STRASSE" and "Straße" agree), compatibility normalisation (fullwidth "ＯＵＴＡＧＥ" is
// "outage"), accents dropped ("cafe" matches "Café", "Zoë" matches "zoe"), the Turkish
// dotless ı read as i ("IĞDIR" matches "ığdır"), invisible format characters ignored (a soft
// hyphen inside a word does not split it). Then every run of characters that are not letters,
// numbers or combining marks (spaces, punctuation, symbols, emoji) becomes one space.
//
//   - Whole words: a keyword matches only between word boundaries: "train" matches "Train!",
//     "#train" and "train-station", not "training" or "retrain". There is no stemming and no
//     plural folding: "train" does not match "trains"; add "trains" as its own keyword.
//   - Phrases: the words of a keyword match with any spaces, punctuation or emoji between
//     them: "new york" matches "New   York", "new-york", "NEW, YORK" and "New 🗽 York". A
//     keyword's own punctuation counts as a separator the same way: "e-mail" matches
//     "e mail" and "E.MAIL", and "3.5" matches "3,5".
//   - Numbers are words: "100" does not match "1000" or "100k", it matches "$100" and "100%".
//   - Scripts written without spaces between words are matched as substrings: Han, Hiragana,
//     Katakana (and its prolonged sound mark ー), Bopomofo, Thai, Lao, Khmer, Myanmar, and
//     Hangul: Korean separates phrases with spaces but glues particles to nouns, so "서울"
//     matches "서울에서" (in Seoul). A boundary is also assumed between a character of these
//     scripts and any other letter: "東京" matches "東京都", and "tokyo" matches "東京tokyo大学".
//   - Emoji are separators, never words: a keyword made only of emoji or punctuation is
//     invalid ("blank").
//   - Overlapping keywords are all reported: "new york" and "york" both match "New York".
//
// Match reports the keywords as given (original spelling), each once, in the order of the
// list. Two keywords that differ only in case or accents ("Café", "cafe") are both reported.
package keywords

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/fold"
)

// Limits of a keyword list.
const (
	MaxKeywords     = 500 // keywords in one list
	MaxKeywordRunes = 100 // characters in one keyword, as given
)

// Matcher finds a fixed list of keywords in texts. It is safe for concurrent use.
type Matcher struct {
	keywords []string
	pats     []pattern // distinct matching forms, by automaton pattern id
	ac       *automaton
}

// pattern is one distinct matching form of one or more keywords.
type pattern struct {
	keywords   []int // indices into Matcher.keywords, ascending
	openStart  bool  // starts with a character of a script without spaces: no boundary needed before
	openEnd    bool  // ends with one: no boundary needed after
	byteLength int
}

// Compile validates keywords and builds their matcher. The list must have 1 to MaxKeywords
// keywords, each valid UTF-8, at most MaxKeywordRunes characters, and not blank in matching
// form (not only spaces, punctuation or emoji). An invalid list is a fielderr.List naming
// every bad keyword by index ("keywords[3]"), or "keywords" for the count.
func Compile(keywords []string) (*Matcher, error) {
	var bad fielderr.List
	switch {
	case len(keywords) == 0:
		bad.Add("keywords", "at least one keyword is required")
	case len(keywords) > MaxKeywords:
		bad.Add("keywords", fmt.Sprintf("at most %d keywords, got %d", MaxKeywords, len(keywords)))
	}
	m := &Matcher{keywords: append([]string(nil), keywords...)}
	byForm := make(map[string]int) // matching form → index in m.pats
	var forms []string
	exact := make(map[string]bool)
	for i, k := range keywords {
		field := fmt.Sprintf("keywords[%d]", i)
		switch {
		case !utf8.ValidString(k):
			bad.Add(field, "is not valid UTF-8")
			continue
		case utf8.RuneCountInString(k) > MaxKeywordRunes:
			bad.Add(field, fmt.Sprintf("is %d characters long, at most %d allowed", utf8.RuneCountInString(k), MaxKeywordRunes))
			continue
		}
		form, _ := matchForm(k, false)
		if form == "" {
			bad.Add(field, "is blank: it has no letter or digit")
			continue
		}
		p, ok := byForm[form]
		if !ok {
			p = len(m.pats)
			byForm[form] = p
			forms = append(forms, form)
			first, _ := utf8.DecodeRuneInString(form)
			last, _ := utf8.DecodeLastRuneInString(form)
			m.pats = append(m.pats, pattern{openStart: noSpaces(first), openEnd: noSpaces(last), byteLength: len(form)})
		}
		if !exact[k] { // a keyword given twice is reported once
			exact[k] = true
			m.pats[p].keywords = append(m.pats[p].keywords, i)
		}
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	m.ac = newAutomaton(forms)
	return m, nil
}

// Keywords returns the keywords as given to Compile.
func (m *Matcher) Keywords() []string { return append([]string(nil), m.keywords...) }

// Match returns the keywords text mentions, as given to Compile, each once, in list order;
// nil when none.
func (m *Matcher) Match(text string) []string {
	t, _ := matchForm(text, false)
	hit := make([]bool, len(m.keywords))
	left := len(m.pats)
	seen := make([]bool, len(m.pats))
	m.find(t, func(p, _, _ int) bool {
		if !seen[p] {
			seen[p] = true
			for _, k := range m.pats[p].keywords {
				hit[k] = true
			}
			left--
		}
		return left > 0
	})
	var out []string
	for i, h := range hit {
		if h {
			out = append(out, m.keywords[i])
		}
	}
	return out
}

// find calls found for each whole-word occurrence of a pattern in t (a matching form), in
// order of end, with its byte span in t, until found returns false.
func (m *Matcher) find(t string, found func(p, start, end int) bool) {
	m.ac.scan(t, func(p, start, end int) bool {
		pat := m.pats[p]
		if !pat.openStart && start > 0 && t[start-1] != ' ' {
			if r, _ := utf8.DecodeLastRuneInString(t[:start]); !noSpaces(r) {
				return true
			}
		}
		if !pat.openEnd && end < len(t) && t[end] != ' ' {
			if r, _ := utf8.DecodeRuneInString(t[end:]); !noSpaces(r) {
				return true
			}
		}
		return found(p, start, end)
	})
}

// matchForm returns s in matching form: fold.Pieces, with every run of non-word characters
// as one space and none at either end. With offsets, it also returns, for each byte of the
// form, the offset in s of the piece it came from.
func matchForm(s string, offsets bool) (string, []int) {
	var b strings.Builder
	b.Grow(len(s))
	var offs []int
	space := true // no space at the start
	for off, piece := range fold.Pieces(s) {
		for _, r := range piece {
			if isWord(r) {
				n := b.Len()
				b.WriteRune(r)
				space = false
				if offsets {
					for range b.Len() - n {
						offs = append(offs, off)
					}
				}
			} else if !space {
				b.WriteByte(' ')
				space = true
				if offsets {
					offs = append(offs, off)
				}
			}
		}
	}
	t := b.String()
	if strings.HasSuffix(t, " ") {
		t = t[:len(t)-1]
		if offsets {
			offs = offs[:len(offs)-1]
		}
	}
	return t, offs
}

// isWord reports whether r belongs to a word: a letter, a number or a combining mark.
func isWord(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r)
}

// noSpaceScripts are the scripts written without spaces between words.
var noSpaceScripts = []*unicode.RangeTable{
	unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Bopomofo, unicode.Hangul,
	unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar,
}

// noSpaces reports whether r belongs to a script written without spaces between words.
func noSpaces(r rune) bool {
	return r >= 0x0E00 && (r == 'ー' || unicode.In(r, noSpaceScripts...))
}
