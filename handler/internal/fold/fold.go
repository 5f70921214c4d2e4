// Package fold is the matching form of text for searches people type: accents removed (NFD,
// then combining marks dropped) and case folded (Unicode full folding: "Straße" and "STRASSE"
// agree, "Zoë" matches "zoe").
package fold

import (
	"iter"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// String returns s in its matching form.
func String(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC, cases.Fold())
	out, _, err := transform.String(t, s)
	if err != nil {
		return strings.ToLower(s)
	}
	return out
}

// Pieces yields the matching form of s piece by piece, each with the byte offset in s where
// the piece starts, for matchers that must tell where in s a match lies (keywords). Its form
// is String's, tightened for matching words in messages:
//   - compatibility forms agree (NFKD): fullwidth "ＡＢＣ" is "abc", the ligature "ﬁ" is "fi",
//     "²" is "2", halfwidth "ｶﾞ" is "ガ";
//   - combining marks are dropped only where they are accents: after a letter of the Latin,
//     Greek, Cyrillic, Armenian, Georgian, Hebrew or Arabic scripts, or after a non-letter.
//     Elsewhere they are part of the letter and kept: "ガ" is not "カ", Thai tone marks and
//     Indic vowel signs stay;
//   - the Turkish dotless ı is i, so "IĞDIR", "Iğdır" and "ığdır" agree (İ already folds to i);
//   - invisible format characters (soft hyphen, zero-width joiners, word joiner, bidi
//     controls, variation selectors) are dropped, so "con\u00adtract" is "contract"; the
//     zero-width space (U+200B, a word separator in Thai and Khmer) becomes a space.
//
// Pieces are NFC and their concatenation does not depend on how s was split into calls
// (normalisation segments never straddle pieces). Spaces and punctuation are kept as they
// are: collapsing them is the caller's business.
func Pieces(s string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		p := piecer{caser: cases.Fold(), yield: yield}
		for i := 0; i < len(s); {
			if s[i] < utf8.RuneSelf && (i+1 == len(s) || s[i+1] < utf8.RuneSelf) {
				// An ASCII character not followed by a mark: its own piece, without the
				// normaliser (most messages are mostly ASCII).
				p.base = rune(s[i])
				if !yield(i, asciiFold[s[i]]) {
					return
				}
				i++
				continue
			}
			// A run of non-ASCII text, with the ASCII character before it (the base of any
			// leading combining mark); the run ends before an ASCII character, always a
			// segment boundary of NFKD.
			j := i + 1
			for j < len(s) && s[j] >= utf8.RuneSelf {
				j++
			}
			if !p.run(s, i, j) {
				return
			}
			i = j
		}
	}
}

// piecer folds non-ASCII runs for Pieces, keeping its buffers and the current base letter.
type piecer struct {
	caser       cases.Caser
	yield       func(int, string) bool
	base        rune // the last non-mark rune seen, whose script decides whether marks are accents
	buf, folded []byte
	it          norm.Iter
}

// run yields the pieces of s[i:j]; false when the consumer stopped.
func (p *piecer) run(s string, i, j int) bool {
	it := &p.it
	it.InitString(norm.NFKD, s[i:j])
	for !it.Done() {
		start := i + it.Pos()
		seg := it.Next()
		end := i + it.Pos()
		if len(seg) == 1 && seg[0] < utf8.RuneSelf {
			p.base = rune(seg[0])
			if !p.yield(start, asciiFold[seg[0]]) {
				return false
			}
			continue
		}
		if src := s[start:end]; string(seg) == src && plain(src) {
			r, _ := utf8.DecodeLastRuneInString(src)
			p.base = r
			if !p.yield(start, src) { // already in matching form: no copy
				return false
			}
			continue
		}
		p.folded = foldBytes(p.caser, p.folded[:0], seg)
		folded := p.folded
		if norm.NFKD.QuickSpan(folded) < len(folded) {
			folded = norm.NFKD.Append(nil, folded...)
		}
		buf := p.buf[:0]
		for len(folded) > 0 {
			r, n := utf8.DecodeRune(folded)
			folded = folded[n:]
			switch {
			case r == 'ı':
				r = 'i'
			case r == '\u200b':
				r = ' '
			case ignorable(r):
				continue
			case unicode.Is(unicode.Mn, r) && !keepsMarks(p.base):
				continue
			}
			if !unicode.IsMark(r) {
				p.base = r
			}
			buf = utf8.AppendRune(buf, r)
		}
		p.buf = buf
		if len(buf) == 0 {
			continue
		}
		if norm.NFC.QuickSpan(buf) < len(buf) {
			buf = norm.NFC.Append(nil, buf...)
		}
		if !p.yield(start, string(buf)) {
			return false
		}
	}
	return true
}

// asciiFold is the matching form of each ASCII byte, as strings so that Pieces allocates
// nothing for ASCII text.
var asciiFold = func() (t [utf8.RuneSelf]string) {
	for b := range t {
		c := byte(b)
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		t[b] = string([]byte{c})
	}
	return t
}()

// plain reports whether s (NFKD already) is its own matching form: no case to fold, no mark,
// nothing invisible, and NFC as it is (conjoining Hangul jamo are not).
func plain(s string) bool {
	for _, r := range s {
		if 0x3400 <= r && r <= 0x9fff || 0x3041 <= r && r <= 0x3096 || 0x30a1 <= r && r <= 0x30fa {
			continue // CJK ideographs and kana: no case, no mark, nothing invisible
		}
		if r == utf8.RuneError || r == 'ı' || r == '\u200b' || unicode.SimpleFold(r) != r ||
			unicode.IsMark(r) || ignorable(r) {
			return false
		}
	}
	return norm.NFC.QuickSpanString(s) == len(s)
}

// foldBytes appends the case folding of src to dst.
func foldBytes(c cases.Caser, dst, src []byte) []byte {
	c.Reset()
	for {
		buf := dst[len(dst):cap(dst)]
		n, m, err := c.Transform(buf, src, true)
		dst = dst[:len(dst)+n]
		src = src[m:]
		if err != transform.ErrShortDst {
			if err != nil { // not expected from a caser: keep the rest as it is
				dst = append(dst, src...)
			}
			return dst
		}
		dst = slices.Grow(dst, 2*len(src)+8)
	}
}

// ignorable reports whether r is an invisible format character dropped from the matching
// form: format controls (Cf) but for the zero-width space, variation selectors, and the
// combining grapheme joiner.
func ignorable(r rune) bool {
	return r != '\u200b' && (unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r) || r == '\u034f')
}

// accentScripts are the scripts whose combining marks are accents, dropped for matching.
var accentScripts = []*unicode.RangeTable{
	unicode.Latin, unicode.Greek, unicode.Cyrillic, unicode.Armenian, unicode.Georgian, unicode.Hebrew, unicode.Arabic,
}

// keepsMarks reports whether combining marks after base are part of the letter.
func keepsMarks(base rune) bool {
	return unicode.IsLetter(base) && !unicode.In(base, accentScripts...)
}
