package bot

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/leapchange/m365/handler/internal/botframework"
	"github.com/leapchange/m365/handler/internal/cards"
	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/outbound"
)

// invoke response types.
const (
	typeError   = "application/vnd.microsoft.error"
	typeMessage = "application/vnd.microsoft.activity.message"
)

func invokeError(status int, code, msg string) botframework.InvokeResponse {
	return botframework.InvokeResponse{StatusCode: status, Type: typeError, Value: map[string]string{"code": code, "message": msg}}
}

// execute answers an Action.Execute (adaptiveCard/action invoke) with the updated card.
func (t turn) execute(ctx context.Context) botframework.InvokeResponse {
	var v struct {
		Action struct {
			Type string          `json:"type"`
			Verb string          `json:"verb"`
			Data json.RawMessage `json:"data"`
		} `json:"action"`
	}
	if err := json.Unmarshal(t.a.Value, &v); err != nil {
		return invokeError(http.StatusBadRequest, "BadRequest", "The card action could not be read.")
	}
	if v.Action.Type != "Action.Execute" {
		return invokeError(http.StatusBadRequest, "NotSupported", "Only Action.Execute is supported here.")
	}
	var d cards.Data
	if err := json.Unmarshal(v.Action.Data, &d); err != nil || d.Kind != cards.DataKind || d.Verb != v.Action.Verb {
		return invokeError(http.StatusBadRequest, "BadRequest", "This card action is not one of Leap Change's.")
	}
	card, err := t.record(ctx, d)
	switch {
	case err == nil:
		return botframework.InvokeResponse{StatusCode: http.StatusOK, Type: botframework.ContentTypeAdaptiveCard, Value: card}
	case errors.Is(err, outbound.ErrNotYours):
		return invokeError(http.StatusForbidden, "Forbidden", "This card was sent to someone else: only they can answer it.")
	case errkind.Of(err) == errkind.Invalid:
		return invokeError(http.StatusBadRequest, "BadRequest", "That answer is not one of the survey's choices.")
	case errkind.Of(err) == errkind.NotFound:
		return botframework.InvokeResponse{StatusCode: http.StatusOK, Type: typeMessage, Value: "This message is no longer available in Leap Change."}
	}
	t.log.ErrorContext(ctx, "bot: recording a card action", "error", err.Error())
	return invokeError(http.StatusInternalServerError, "InternalError", "Leap Change could not record your answer; try again.")
}

// submit handles an Action.Submit (a message whose value is the card's data): the answer is
// recorded and the card updated in place.
func (t turn) submit(ctx context.Context) error {
	var d cards.Data
	if err := json.Unmarshal(t.a.Value, &d); err != nil || d.Kind != cards.DataKind {
		return nil // someone else's card data: nothing of ours to record
	}
	card, err := t.record(ctx, d)
	switch {
	case err == nil:
	case errors.Is(err, outbound.ErrNotYours), errkind.Of(err) == errkind.Invalid, errkind.Of(err) == errkind.NotFound:
		return nil // nothing to record; the card stays as it is
	default:
		return err
	}
	if t.a.ReplyToID == "" || !t.cfg.Replier.Trusted(t.a.ServiceURL) {
		return nil
	}
	if err := t.cfg.Replier.UpdateCard(ctx, t.a.ServiceURL, t.a.Conversation.ID, t.a.ReplyToID, "Thanks", card); err != nil {
		t.log.WarnContext(ctx, "bot: updating the answered card", "error", err.Error())
	}
	return nil
}

// record stores the answer a card action carries, in the org whose batch it names (the
// clicker must be the delivery's recipient), and returns the card that replaces the old one.
func (t turn) record(ctx context.Context, d cards.Data) (cards.Card, error) {
	response := outbound.Acknowledged
	switch d.Verb {
	case cards.VerbSurveyAnswer:
		response = d.Choice
	case cards.VerbAcknowledge:
	default:
		return nil, errkind.Invalid
	}
	err := error(errkind.NotFound)
	for _, org := range t.orgs {
		b, del, rerr := t.cfg.Responses.Respond(ctx, org, d.Batch, d.Index, t.a.From.AADObjectID, response)
		if rerr == nil {
			return cards.Answered(outbound.CardMessage(b, del), del.FirstName, response), nil
		}
		if errkind.Of(rerr) != errkind.NotFound {
			return nil, rerr
		}
		err = rerr
	}
	return nil, err
}
