package outbound

import (
	"fmt"
	"github.com/leapchange/m365/handler/internal/fielderr"
	"html"
	"net/url"
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
	Survey  *Survey
}

// Survey makes a message a survey invitation: the survey's link and, answered on the Teams
// card itself, a question with its choices.
type Survey struct {
	URL      string
	Question string
	Choices  []string
}

// Survey limits (an Adaptive Card shows at most a handful of buttons in a row; Teams caps a
// card's actions).
const (
	MaxSurveyChoices  = 6
	MaxSurveyChoice   = 60
	MaxSurveyQuestion = 500
	MaxSurveyURL      = 2000
)

func validateSurvey(s *Survey, kind string, add func(f, m string)) {
	if s == nil {
		if kind == "survey_invitation" {
			add("survey", "a survey invitation needs a survey: its url, or a question with choices")
		}
		return
	}
	s.URL, s.Question = strings.TrimSpace(s.URL), strings.TrimSpace(s.Question)
	if s.URL == "" && len(s.Choices) == 0 {
		add("survey", "give the survey's url, or a question with choices, or both")
	}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || len(s.URL) > MaxSurveyURL {
			add("survey.url", fmt.Sprintf("an absolute https link of at most %d characters", MaxSurveyURL))
		}
	}
	if utf8.RuneCountInString(s.Question) > MaxSurveyQuestion || !utf8.ValidString(s.Question) {
		add("survey.question", fmt.Sprintf("at most %d characters of valid UTF-8", MaxSurveyQuestion))
	}
	if len(s.Choices) > 0 && s.Question == "" {
		add("survey.question", "choices need a question")
	}
	if len(s.Choices) > MaxSurveyChoices {
		add("survey.choices", fmt.Sprintf("at most %d", MaxSurveyChoices))
	}
	seen := map[string]bool{}
	for i, c := range s.Choices {
		c = strings.TrimSpace(c)
		s.Choices[i] = c
		f := fmt.Sprintf("survey.choices[%d]", i)
		switch {
		case c == "" || utf8.RuneCountInString(c) > MaxSurveyChoice || !utf8.ValidString(c) || strings.ContainsAny(c, "\r\n"):
			add(f, fmt.Sprintf("one line of 1 to %d characters", MaxSurveyChoice))
		case seen[strings.ToLower(c)]:
			add(f, "listed twice")
		case strings.EqualFold(c, Acknowledged):
			add(f, `"acknowledged" is what the Acknowledge button records: choose another word`)
		}
		seen[strings.ToLower(c)] = true
	}
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
