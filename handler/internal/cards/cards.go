// Package cards builds the Adaptive Cards (schema 1.5) the bot sends: notifications and survey
// invitations with their response actions, the answers to card actions, and the bot's replies
// (help, changes, stakeholders). Cards are plain JSON values; Teams renders them.
//
// Response actions are Action.Execute (Universal Actions: the bot answers the invoke with an
// updated card) with an Action.Submit fallback for clients that do not support it; both carry
// the same data, so the bot handles either the same way.
package cards

import (
	"fmt"
	"strings"
)

// Card is an Adaptive Card.
type Card map[string]any

// Element is a card element or action.
type Element map[string]any

const schema = "http://adaptivecards.io/schemas/adaptive-card.json"

// New returns a card of body elements and actions.
func New(body []Element, actions ...Element) Card {
	c := Card{"type": "AdaptiveCard", "$schema": schema, "version": "1.5", "body": body}
	if len(actions) > 0 {
		c["actions"] = actions
	}
	return c
}

// Title is a large bold text block.
func Title(text string) Element {
	return Element{"type": "TextBlock", "text": text, "size": "Large", "weight": "Bolder", "wrap": true}
}

// Text is a wrapped text block. Adaptive Cards read a subset of Markdown; text from the web app
// is escaped so that its characters show as typed.
func Text(text string) Element { return Element{"type": "TextBlock", "text": text, "wrap": true} }

// Subtle is a small, muted text block.
func Subtle(text string) Element {
	return Element{"type": "TextBlock", "text": text, "wrap": true, "isSubtle": true, "size": "Small"}
}

// Facts is a fact set (label: value), empty values left out.
func Facts(pairs ...string) Element {
	var facts []Element
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			facts = append(facts, Element{"title": pairs[i], "value": pairs[i+1]})
		}
	}
	return Element{"type": "FactSet", "facts": facts}
}

// OpenURL is a link button.
func OpenURL(title, url string) Element {
	return Element{"type": "Action.OpenUrl", "title": title, "url": url}
}

// Verbs of the bot's response actions.
const (
	VerbSurveyAnswer = "surveyAnswer"
	VerbAcknowledge  = "acknowledge"
)

// Data is what a response action carries back: which delivery it answers, and the choice.
// Kind tells the bot's Action.Submit handler (a plain message with a value) it is ours.
type Data struct {
	Kind   string `json:"kind"` // always "leapResponse"
	Verb   string `json:"verb"`
	Batch  string `json:"batch"`
	Index  int    `json:"index"`
	Choice string `json:"choice,omitempty"`
}

// DataKind marks Data.
const DataKind = "leapResponse"

// Execute is an Action.Execute for verb, falling back to an Action.Submit with the same data.
func Execute(title string, d Data) Element {
	d.Kind = DataKind
	return Element{
		"type": "Action.Execute", "title": title, "verb": d.Verb, "data": d,
		"fallback": Element{"type": "Action.Submit", "title": title, "data": d},
	}
}

// Message is what a delivery carries.
type Message struct {
	Batch, Subject, Text string
	Index                int
	Kind                 string
	// Survey, when set, makes it a survey invitation.
	SurveyURL      string
	SurveyQuestion string
	SurveyChoices  []string
}

// Delivery is the card a recipient gets: the subject and text; for a survey invitation the
// question with a button per choice and a link to the full survey; otherwise an Acknowledge
// button, so the sender sees who read it.
func Delivery(m Message) Card {
	body := []Element{Title(m.Subject)}
	if m.Text != "" {
		body = append(body, Text(m.Text))
	}
	var actions []Element
	if m.SurveyURL != "" || len(m.SurveyChoices) > 0 {
		if m.SurveyQuestion != "" {
			body = append(body, Element{"type": "TextBlock", "text": m.SurveyQuestion, "wrap": true, "weight": "Bolder"})
		}
		for _, c := range m.SurveyChoices {
			actions = append(actions, Execute(c, Data{Verb: VerbSurveyAnswer, Batch: m.Batch, Index: m.Index, Choice: c}))
		}
		if m.SurveyURL != "" {
			actions = append(actions, OpenURL("Open the survey", m.SurveyURL))
		}
	} else {
		actions = append(actions, Execute("Acknowledge", Data{Verb: VerbAcknowledge, Batch: m.Batch, Index: m.Index}))
	}
	return New(body, actions...)
}

// Answered is the card that replaces a delivery's once the person answered: the message as
// sent, and what they answered, without the buttons (the survey link stays).
func Answered(m Message, firstName, response string) Card {
	body := []Element{Title(m.Subject)}
	if m.Text != "" {
		body = append(body, Text(m.Text))
	}
	who := "You"
	if firstName != "" {
		who = "Thanks " + firstName + ": you"
	}
	if response == "acknowledged" {
		body = append(body, Subtle("✅ "+who+" acknowledged this message."))
	} else {
		body = append(body, Subtle(fmt.Sprintf("✅ %s answered “%s”. You can change your answer by answering again.", who, response)))
	}
	var actions []Element
	if len(m.SurveyChoices) > 0 {
		for _, c := range m.SurveyChoices {
			actions = append(actions, Execute(c, Data{Verb: VerbSurveyAnswer, Batch: m.Batch, Index: m.Index, Choice: c}))
		}
	}
	if m.SurveyURL != "" {
		actions = append(actions, OpenURL("Open the survey", m.SurveyURL))
	}
	return New(body, actions...)
}

// Notice is a one-line card (errors, "not found").
func Notice(text string) Card { return New([]Element{Text(text)}) }

// Escape keeps Markdown in text from the web app or the directory from being interpreted.
func Escape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "`", "\\`", "#", `\#`)
	return r.Replace(s)
}
