package queue

import "time"

// The wire of the local host stand-in's queue endpoints (handler/internal/devhost), shared by
// both sides. Production never sees it. Every endpoint answers loopback callers only.
//
//	POST /_devhost/queues/{queue}/messages  DevHostMessage            → 201 (200 if a duplicate) DevHostSendResult
//	POST /_devhost/queues/{queue}/batch     []DevHostMessage          → 201 (200 if all duplicates) []DevHostSendResult, in order
//	POST /_devhost/queues/{queue}/cancel    DevHostCancelRequest      → 200 DevHostCancelResult
//
// An unknown queue is 404; a bad body or message is 400 (a batch is all or nothing: one bad
// message and none is enqueued); errors are RFC 9457 problems.

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

// DevHostSendResult is the stand-in's answer to a message it was sent. A duplicate (a message id
// already sent within the duplicate detection window) is dropped and answered with the first
// send's result, Duplicate set.
type DevHostSendResult struct {
	Queue          string    `json:"queue"`
	MessageID      string    `json:"messageId"`
	SequenceNumber int64     `json:"sequenceNumber"` // for POST …/cancel while the message is scheduled
	EnqueuedTime   time.Time `json:"enqueuedTime"`
	ScheduledTime  time.Time `json:"scheduledEnqueueTime,omitzero"` // set when the message was scheduled for later
	Duplicate      bool      `json:"duplicate"`
}

// DevHostCancelRequest is the JSON body of POST …/cancel.
type DevHostCancelRequest struct {
	SequenceNumbers []int64 `json:"sequenceNumbers"`
}

// DevHostCancelResult is the answer to POST …/cancel: how many of the sequence numbers were still
// scheduled and are now removed. The others (already enqueued, delivered, cancelled, or never
// sent) are ignored, not an error.
type DevHostCancelResult struct {
	Cancelled int `json:"cancelled"`
}

// DevHostMaxBatchBytes bounds the body of POST …/batch; the publisher splits a larger batch into
// several requests.
const DevHostMaxBatchBytes = 4 << 20

// DevHostPath is the path, on the stand-in's base URL, where messages for queue q are published.
func DevHostPath(q string) string { return "/_devhost/queues/" + q + "/messages" }

// DevHostBatchPath is the path where a batch of messages for queue q is published.
func DevHostBatchPath(q string) string { return "/_devhost/queues/" + q + "/batch" }

// DevHostCancelPath is the path where scheduled messages of queue q are cancelled.
func DevHostCancelPath(q string) string { return "/_devhost/queues/" + q + "/cancel" }
