package changes

import (
	"strings"
	"unicode"

	"github.com/leapchange/m365/handler/internal/fold"
)

// maxWordRunes truncates long words in the index and in queries alike.
const maxWordRunes = 32

// stopWords are left out of the index and of queries: they would match nearly every change.
var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an and are as at be by for from has have in is it its of on or
		that the this to was were will with our we you your their they all not no`) {
		stopWords[w] = true
	}
}

// words returns the distinct folded words of s, in order of first appearance: runs of letters
// and digits, at least two characters long (one for a number), not stop words, truncated to
// maxWordRunes.
func words(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(fold.String(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) }) {
		r := []rune(w)
		if len(r) > maxWordRunes {
			w = string(r[:maxWordRunes])
		}
		if (len(r) < 2 && !unicode.IsNumber(r[0])) || stopWords[w] || seen[w] {
			continue
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

// indexWords are the words a change is found by: the title's, then the description's, at most
// MaxIndexWords; inTitle tells which came from the title.
func indexWords(c Change) (ws []string, inTitle map[string]bool) {
	inTitle = map[string]bool{}
	for _, w := range words(c.Title) {
		if len(ws) == MaxIndexWords {
			break
		}
		ws = append(ws, w)
		inTitle[w] = true
	}
	for _, w := range words(c.Description) {
		if len(ws) == MaxIndexWords {
			break
		}
		if !inTitle[w] {
			ws = append(ws, w)
		}
	}
	return ws, inTitle
}
