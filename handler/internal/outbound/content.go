package outbound

import (
	"fmt"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"html"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/microcosm-cc/bluemonday"
)

// Limits of a message's content. Table Storage keeps a string property up to 64 KiB (32 K
// UTF-16 units); the text and HTML bodies each stay under that.
const (
	MaxSubject = 255
	MaxBody    = 30_000
)

// placeholders are the per-recipient fields a subject or body may name, e.g. "Hello {{firstName}}".
var placeholders = map[string]func(Delivery) string{
	"firstName":   func(d Delivery) string { return d.FirstName },
	"lastName":    func(d Delivery) string { return d.LastName },
	"displayName": func(d Delivery) string { return strings.TrimSpace(d.FirstName + " " + d.LastName) },
	"email":       func(d Delivery) string { return d.Address },
}

var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z]+)\s*\}\}`)

// unknownPlaceholders lists the {{names}} in s that are not placeholders.
func unknownPlaceholders(s string) []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		if _, ok := placeholders[m[1]]; !ok {
			out = append(out, m[0])
		}
	}
	return out
}

func personalised(ss ...string) bool {
	for _, s := range ss {
		if placeholder.MatchString(s) {
			return true
		}
	}
	return false
}

// fill replaces the placeholders of s with d's values, escaped for HTML when escape is set.
func fill(s string, d Delivery, escape bool) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		v := placeholders[name](d)
		if escape {
			v = html.EscapeString(v)
		}
		return v
	})
}

// policy is the HTML a message body may keep: text formatting, lists, headings, quotes, tables
// and links (http, https, mailto) that open safely. Scripts, styles, forms, images from
// anywhere, event handlers and every other attribute are dropped.
var policy = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "hr", "b", "strong", "i", "em", "u", "s", "small", "sub", "sup", "blockquote", "pre", "code",
		"ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "span", "div", "table", "thead", "tbody", "tr", "th", "td")
	p.AllowAttrs("href").OnElements("a")
	p.AllowURLSchemes("http", "https", "mailto")
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
}()

// Sanitize returns the safe subset of an HTML body.
func Sanitize(body string) string { return policy.Sanitize(body) }

// Content is what a message says.
type Content struct {
	Subject string
	Text    string // plain text; derived from HTML when only HTML is given
	HTML    string // sanitised
}

// FieldError names one bad input field.
type FieldError = fielderr.Field

// Invalid is every problem of a request.
type Invalid = fielderr.List

// validateContent checks and normalises c for the channels, appending problems to bad.
func validateContent(c *Content, channels []string, bad *Invalid) {
	add := func(f, m string) { *bad = append(*bad, FieldError{Field: f, Message: m}) }
	c.Subject = strings.TrimSpace(c.Subject)
	for field, v := range map[string]string{"subject": c.Subject, "text": c.Text, "html": c.HTML} {
		if !utf8.ValidString(v) {
			add(field, "not valid UTF-8")
		}
		if u := unknownPlaceholders(v); len(u) > 0 {
			add(field, fmt.Sprintf("unknown placeholder %s (use {{firstName}}, {{lastName}}, {{displayName}} or {{email}})", strings.Join(u, ", ")))
		}
	}
	if strings.ContainsAny(c.Subject, "\r\n") {
		add("subject", "one line: no line breaks")
	}
	if utf8.RuneCountInString(c.Subject) > MaxSubject {
		add("subject", fmt.Sprintf("at most %d characters", MaxSubject))
	}
	if slices.Contains(channels, Mail) && c.Subject == "" {
		add("subject", "a mail needs a subject")
	}
	if strings.TrimSpace(c.Text) == "" && strings.TrimSpace(c.HTML) == "" {
		add("text", "send a text or an html body")
	}
	if utf16Len(c.Text) > MaxBody {
		add("text", fmt.Sprintf("at most %d characters", MaxBody))
	}
	if utf16Len(c.HTML) > MaxBody {
		add("html", fmt.Sprintf("at most %d characters", MaxBody))
	}
	if c.HTML != "" {
		c.HTML = Sanitize(c.HTML)
		if strings.TrimSpace(c.Text) == "" {
			c.Text = textOf(c.HTML)
			if strings.TrimSpace(c.Text) == "" {
				add("html", "nothing is left to send once sanitised (scripts, styles, images and unknown tags are removed)")
			}
		}
		if utf16Len(c.HTML) > MaxBody {
			add("html", fmt.Sprintf("at most %d characters once sanitised", MaxBody))
		}
	}
}

// textOf is a plain-text rendering of sanitised HTML for channels that show text only.
func textOf(h string) string {
	block := regexp.MustCompile(`(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr)\s*/?>`)
	s := block.ReplaceAllString(h, "\n")
	s = bluemonday.StrictPolicy().Sanitize(s)
	return strings.TrimSpace(html.UnescapeString(s))
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
