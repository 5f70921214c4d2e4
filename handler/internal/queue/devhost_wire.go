package queue

import "time"

// DevHostMessage is the JSON body of POST <devhost>/_devhost/queues/{queue}/messages, the way the
// handler publishes to the local host stand-in's in-process queue. Production never sees it.
type DevHostMessage struct {
	MessageID             string            `json:"messageId"`                       // duplicate detection key; required
	Body                  []byte            `json:"body"`                            // raw message body (base64 in JSON)
	ContentType           string            `json:"contentType,omitempty"`           // e.g. application/json
	Subject               string            `json:"subject,omitempty"`               // optional label
	ApplicationProperties map[string]string `json:"applicationProperties,omitempty"` // custom properties
	ScheduledEnqueueTime  *time.Time        `json:"scheduledEnqueueTime,omitempty"`  // deliver not before this
}

// DevHostPath is the path, on the stand-in's base URL, where messages for queue q are published.
func DevHostPath(q string) string { return "/_devhost/queues/" + q + "/messages" }
