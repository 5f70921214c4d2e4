// Package outmail is a mail as the outbound pipeline hands it to Microsoft Graph's sendMail:
// plain data shared by the pipeline (which builds it) and the Graph adapter (which sends it),
// so neither depends on the other.
package outmail

// Address is one mail address with an optional display name.
type Address struct {
	Address string
	Name    string
}

// Message is one mail sent from one mailbox.
type Message struct {
	From    string // the sending mailbox (UPN or address); Graph sends as this user
	To      []Address
	Bcc     []Address
	ReplyTo []Address
	Subject string
	HTML    bool // Body is HTML (already sanitised) rather than plain text
	Body    string
	// InternetMessageID is set by us ("<…@…>") so that a send whose outcome was lost can be
	// found in the mailbox's Sent Items afterwards (see the README's "Mail" section).
	InternetMessageID string
	// Headers are custom x- headers (Graph allows only names starting with x-).
	Headers map[string]string
}

// Recipients is the number of recipients the message counts against a mailbox's daily cap.
func (m Message) Recipients() int { return len(m.To) + len(m.Bcc) }
