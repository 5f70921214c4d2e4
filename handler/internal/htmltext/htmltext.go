// Package htmltext turns the HTML of a Teams message into plain text for keyword matching
// and excerpts.
//
// Teams message bodies are small HTML fragments: <p> and <div> paragraphs, <br>, lists,
// <a href> links, <at id="0">Ada Lovelace</at> mentions, <emoji alt="😀"> and
// <img itemtype="http://schema.skype.com/Emoji" alt="😀"> emoji, <attachment id="…">
// placeholders, <codeblock> and tables. Text keeps what a reader sees:
//
//   - tags are removed and their text kept: a mention is the name, "Ada Lovelace";
//   - entities are decoded (&amp; &lt; &nbsp; &#233; &#x1F600;);
//   - <br>, and the start and end of block elements (p, div, li, ul, ol, tr, table, headings,
//     blockquote, pre, hr, attachment…), break lines; table cells are separated by spaces;
//   - <img> and <emoji> are their alt text (an emoji's character, an image's description);
//   - a link is its text, or its href when it has no text;
//   - <script>, <style> and the other raw-text elements (title, textarea, noscript, iframe,
//     xmp, noembed, noframes, plaintext, template) are dropped with their content;
//   - within a line, whitespace (including &nbsp;) collapses to single spaces, lines are
//     trimmed and empty lines dropped; in <pre> the source's line breaks are kept.
//
// Malformed HTML is tolerated as browsers would (the golang.org/x/net/html tokenizer), and
// invalid UTF-8 becomes U+FFFD. Only the first MaxInput bytes of the HTML are read: Teams
// caps a message at about 28 KB, so anything longer is not a Teams message and its tail is
// not worth the time.
package htmltext

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// MaxInput is how many bytes of HTML Text reads (256 KiB).
const MaxInput = 256 << 10

// Text returns the plain text of a Teams message's HTML.
func Text(s string) string {
	if len(s) > MaxInput {
		cut := MaxInput
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	w := writer{}
	z := html.NewTokenizer(strings.NewReader(s))
	skip := 0        // depth inside dropped elements
	pre := 0         // depth inside <pre>
	var links []link // open <a> elements
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return w.String()
		case html.TextToken:
			if skip > 0 {
				continue
			}
			w.text(string(z.Text()), pre > 0)
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			end := tt == html.EndTagToken
			if dropped[a] {
				if tt == html.StartTagToken {
					skip++
				} else if end && skip > 0 {
					skip--
				}
				continue
			}
			if skip > 0 {
				continue
			}
			var attrs map[string]string
			if hasAttr && !end {
				attrs = attributes(z)
			}
			switch {
			case a == atom.Br:
				w.newline()
			case block[a] || string(name) == "attachment" || string(name) == "codeblock":
				w.newline()
				if a == atom.Pre {
					if end {
						pre = max(pre-1, 0)
					} else if tt == html.StartTagToken {
						pre++
					}
				}
			case a == atom.Td || a == atom.Th:
				w.space()
			case a == atom.Img || string(name) == "emoji":
				if !end {
					w.text(attrs["alt"], false)
				}
			case a == atom.A:
				switch {
				case tt == html.StartTagToken:
					links = append(links, link{href: attrs["href"], at: w.written()})
				case end && len(links) > 0:
					l := links[len(links)-1]
					links = links[:len(links)-1]
					if w.written() == l.at && l.href != "" {
						w.text(" "+l.href+" ", false)
					}
				}
			}
		}
	}
}

// link is an open <a>: its href and how much text had been written when it opened.
type link struct {
	href string
	at   int
}

// attributes returns the tag's attributes by lower-case name (the first of duplicates).
func attributes(z *html.Tokenizer) map[string]string {
	m := make(map[string]string)
	for {
		k, v, more := z.TagAttr()
		if _, ok := m[string(k)]; !ok {
			m[string(k)] = string(v)
		}
		if !more {
			return m
		}
	}
}

// dropped are the elements whose content is not shown as text.
var dropped = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Title: true, atom.Textarea: true, atom.Noscript: true,
	atom.Iframe: true, atom.Xmp: true, atom.Noembed: true, atom.Noframes: true, atom.Plaintext: true,
	atom.Template: true,
}

// block are the elements that start and end lines.
var block = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Li: true, atom.Ul: true, atom.Ol: true, atom.Dl: true, atom.Dt: true,
	atom.Dd: true, atom.Tr: true, atom.Table: true, atom.Thead: true, atom.Tbody: true, atom.Tfoot: true,
	atom.Caption: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true,
	atom.Blockquote: true, atom.Pre: true, atom.Hr: true, atom.Section: true, atom.Article: true,
	atom.Header: true, atom.Footer: true, atom.Figure: true, atom.Figcaption: true, atom.Address: true,
	atom.Body: true, atom.Html: true,
}

// writer builds the text: whitespace collapsed within a line, lines trimmed, empty lines
// dropped.
type writer struct {
	b       strings.Builder
	pending byte // ' ' or '\n' owed before the next visible character, or 0
}

func (w *writer) text(s string, keepNewlines bool) {
	for _, r := range s {
		switch {
		case r == '\n' && keepNewlines:
			w.newline()
		case unicode.IsSpace(r):
			w.space()
		case r == utf8.RuneError || r == 0:
			w.visible('\uFFFD')
		default:
			w.visible(r)
		}
	}
}

func (w *writer) visible(r rune) {
	if w.pending != 0 && w.b.Len() > 0 {
		w.b.WriteByte(w.pending)
	}
	w.pending = 0
	w.b.WriteRune(r)
}

func (w *writer) space() {
	if w.pending == 0 {
		w.pending = ' '
	}
}

func (w *writer) newline() { w.pending = '\n' }

// written is how many bytes of text have been written so far.
func (w *writer) written() int { return w.b.Len() }

func (w *writer) String() string { return w.b.String() }
