// Package subscriptionstest is Microsoft Graph's change-notification subscriptions endpoint in
// memory, for the tests of what reconciles subscriptions (channel monitoring, real-time sync). It
// creates, renews, reauthorizes and deletes as Graph does, one subscription per resource, and
// lets a test check each creation as Graph would for its resources, refuse or lose
// subscriptions, fail renewals, and see what is live.
package subscriptionstest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/leapchange/m365/handler/internal/errkind"
	"github.com/leapchange/m365/handler/internal/subscriptions"
)

// Graph is the subscriptions endpoint of one simulated Graph. Its zero value is ready and accepts
// every creation. It is safe for concurrent use.
type Graph struct {
	// Check validates a creation for the test's resources (tenant, URLs, change type, lifetime,
	// certificate); its error is Graph's answer. Nil accepts every request.
	Check func(tenantID string, s subscriptions.Request) error

	mu       sync.Mutex
	n        int
	subs     map[string]subscriptions.Request // live, by id
	refuse   map[string]error                 // creation's answer, by resource ("": every resource)
	renewErr error
	reauths  int
}

// Invalid is Graph's 400 for a request it cannot accept.
func Invalid(msg string) error {
	return &errkind.Error{Kind: errkind.Invalid, Status: http.StatusBadRequest, Code: "InvalidRequest", Message: msg}
}

func notFound() error { return &errkind.Error{Kind: errkind.NotFound, Status: http.StatusNotFound} }

// Refuse makes creations for resource ("" for every resource) answer err; a nil err lifts it.
func (g *Graph) Refuse(resource string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refuse == nil {
		g.refuse = map[string]error{}
	}
	if err == nil {
		delete(g.refuse, resource)
		return
	}
	g.refuse[resource] = err
}

// FailRenewals makes renewals answer err; a nil err lifts it.
func (g *Graph) FailRenewals(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.renewErr = err
}

// Heal lifts every refusal and renewal failure.
func (g *Graph) Heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse, g.renewErr = nil, nil
}

// Lose drops the subscriptions for resource ("" for all) without telling anyone, as when they
// expired unseen or Graph removed them.
func (g *Graph) Lose(resource string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.subs {
		if resource == "" || s.Resource == resource {
			delete(g.subs, id)
		}
	}
}

// Live lists the resources of the live subscriptions, sorted.
func (g *Graph) Live() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, s := range g.subs {
		out = append(out, s.Resource)
	}
	slices.Sort(out)
	return out
}

// Reauthorizations counts the reauthorize requests Graph accepted.
func (g *Graph) Reauthorizations() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reauths
}

// CreateSubscription creates s after the test's refusals and Check, one per resource.
func (g *Graph) CreateSubscription(_ context.Context, tenantID string, s subscriptions.Request) (subscriptions.Request, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.refuse[s.Resource]; err != nil {
		return s, err
	}
	if err := g.refuse[""]; err != nil {
		return s, err
	}
	if g.Check != nil {
		if err := g.Check(tenantID, s); err != nil {
			return s, err
		}
	}
	for _, other := range g.subs {
		if other.Resource == s.Resource {
			return s, &errkind.Error{Kind: errkind.Conflict, Status: http.StatusConflict, Message: "a subscription exists for " + s.Resource}
		}
	}
	g.n++
	s.ID = fmt.Sprintf("5b1c0000-0000-4000-8000-%012d", g.n)
	if g.subs == nil {
		g.subs = map[string]subscriptions.Request{}
	}
	g.subs[s.ID] = s
	return s, nil
}

// RenewSubscription moves a live subscription's expiry to exp.
func (g *Graph) RenewSubscription(_ context.Context, _, id string, exp time.Time) (time.Time, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.subs[id]
	switch {
	case !ok:
		return time.Time{}, notFound()
	case g.renewErr != nil:
		return time.Time{}, g.renewErr
	}
	s.Expires = exp
	g.subs[id] = s
	return exp, nil
}

// ReauthorizeSubscription accepts a reauthorization of a live subscription.
func (g *Graph) ReauthorizeSubscription(_ context.Context, _, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.subs[id]; !ok {
		return notFound()
	}
	g.reauths++
	return nil
}

// DeleteSubscription deletes a live subscription; an unknown one is 404, as at Graph.
func (g *Graph) DeleteSubscription(_ context.Context, _, id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.subs[id]; !ok {
		return notFound()
	}
	delete(g.subs, id)
	return nil
}
