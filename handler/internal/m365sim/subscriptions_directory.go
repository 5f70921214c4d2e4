package m365sim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Change-notification subscriptions to the directory: resource /users or /groups (tenant-wide).
// Graph's rules for them differ from channel messages': changeType updated and/or deleted only
// ("updated" covers created, updated and soft-deleted; "deleted" is a permanent delete), no
// resource data on v1.0, up to 41 760 minutes without a lifecycle URL, and several
// subscriptions per app allowed. Notifications are sent when a directory mutation releases the
// state lock (dirChangedLocked), so every change path (the state API, the admin API,
// MutateRandom) notifies without each one having to remember it.

// MaxDirectorySubscription is the longest lifetime of a /users or /groups subscription
// (41 760 minutes, just under 29 days, the subscription resource's table).
const MaxDirectorySubscription = 41760 * time.Minute

// subKind is what a subscription watches.
type subKind uint8

const (
	subChannel subKind = iota // /teams/{t}/channels/{c}/messages
	subUsers                  // /users
	subGroups                 // /groups
)

// maxLifetime is the longest expirationDateTime Graph accepts for the kind.
func (k subKind) maxLifetime() time.Duration {
	if k == subChannel {
		return MaxChannelMessageSubscription
	}
	return MaxDirectorySubscription
}

// lifecycleRequiredAfter: an expirationDateTime further out needs a lifecycleNotificationUrl
// (0: never; Graph requires it for Teams resources only).
func (k subKind) lifecycleRequiredAfter() time.Duration {
	if k == subChannel {
		return lifecycleRequiredAfter
	}
	return 0
}

// directoryResource recognises /users and /groups (leading slash optional, any case, as Graph
// accepts them).
func directoryResource(res string) (subKind, bool) {
	switch strings.ToLower(strings.TrimPrefix(res, "/")) {
	case "users":
		return subUsers, true
	case "groups":
		return subGroups, true
	}
	return subChannel, false
}

// dirPerms are the application roles that allow a subscription of the kind (any one).
func dirPerms(k subKind) []string {
	if k == subUsers {
		return permUsersRead
	}
	return permMembersRead
}

// checkDirSubscription applies the /users and /groups rules to a new subscription (s.mu
// held); sub.kind is set.
func checkDirSubscription(sub *subRec, g *gctx, exp time.Time) *gresp {
	name := strings.ToLower(strings.TrimPrefix(sub.Resource, "/"))
	switch {
	case sub.wants("created"):
		return new(invalidSub(fmt.Sprintf("The changeType 'created' is not supported for resource '%s': use 'updated' (created, updated and soft-deleted objects) and/or 'deleted'.", name)))
	case sub.IncludeResourceData:
		return new(invalidSub(fmt.Sprintf("Rich notifications (includeResourceData) are not supported for resource '%s'.", name)))
	}
	if e := checkExpiration(sub.kind, exp, g.now, sub.LifecycleNotificationURL); e != nil {
		return e
	}
	if !hasAnyRole(g.roles, dirPerms(sub.kind)) {
		return new(rolesDenied(dirPerms(sub.kind), g.roles))
	}
	return nil
}

func hasAnyRole(have, perms []string) bool {
	return slices.ContainsFunc(perms, func(p string) bool { return slices.Contains(have, p) })
}

// rolesDenied is the subscription service's 403 for a missing application role.
func rolesDenied(perms, have []string) gresp {
	return extensionError(http.StatusForbidden, "Forbidden", fmt.Sprintf("Missing role permissions on the request. API requires one of '%s'. Roles on the request '%s'.",
		strings.Join(perms, ", "), strings.Join(have, ", ")))
}

// mayKeep reports whether the caller still holds the permission sub needs (PATCH and
// reauthorize recheck it).
func (s *Server) mayKeep(g *gctx, sub *subRec) bool {
	if sub.kind == subChannel {
		return s.mayReadMessages(g, sub.TeamID)
	}
	return hasAnyRole(g.roles, dirPerms(sub.kind))
}

// --- notifications -----------------------------------------------------------------------------

// memberDeltaJSON is one entry of a group notification's members@delta.
type memberDeltaJSON struct {
	ID      string    `json:"id"`
	Removed *struct{} `json:"@removed,omitempty"`
}

// dirChangedLocked notifies the tenant's /users and /groups subscriptions of the change-log
// entries logged since the last call (s.mu held; it only queues the deliveries, which run
// asynchronously). t.notified is the log position already notified.
func (s *Server) dirChangedLocked(t *tenant) {
	from := t.notified
	if from >= len(t.log) {
		return
	}
	t.notified = len(t.log)
	n := s.notify()
	if len(n.subs) == 0 {
		return
	}
	s.expireLocked()
	var users, groups []*subRec
	for _, sub := range n.subs {
		if sub.tenant != t.id {
			continue
		}
		switch sub.kind {
		case subUsers:
			users = append(users, sub)
		case subGroups:
			groups = append(groups, sub)
		}
	}
	if len(users)+len(groups) == 0 {
		return
	}
	// Oldest subscription first, so deliveries are queued in a stable order.
	for _, l := range [][]*subRec{users, groups} {
		slices.SortFunc(l, func(a, b *subRec) int { return a.Created.Compare(b.Created) })
	}
	for _, c := range t.log[from:] {
		subs, rd, changeType := users, (*resourceDataJSON)(nil), "updated"
		if c.group {
			g := t.groups[c.idx]
			subs = groups
			rd = &resourceDataJSON{ID: g.ID, ODataType: "#Microsoft.Graph.Group", ODataID: "Groups/" + g.ID, OrganizationID: t.id}
			if g.state == stateGone {
				changeType = "deleted"
			} else if c.mask == gMembers { // a membership change (a new group has every bit)
				md := memberDeltaJSON{ID: t.memberID(c.member)}
				if c.removed {
					md.Removed = &struct{}{}
				}
				rd.MembersDelta = []memberDeltaJSON{md}
			}
		} else {
			u := t.users[c.idx]
			rd = &resourceDataJSON{ID: u.ID, ODataType: "#Microsoft.Graph.User", ODataID: "Users/" + u.ID, OrganizationID: t.id}
			if u.state == stateGone {
				changeType = "deleted"
			}
		}
		for _, sub := range subs {
			if !sub.wants(changeType) {
				continue
			}
			nj := notificationJSON{SubscriptionID: sub.ID, SubscriptionExpirationDateTime: notificationTime(sub.ExpirationDateTime),
				ChangeType: changeType, ClientState: orNull(sub.ClientState), TenantID: t.id, Resource: rd.ODataID, ResourceData: rd}
			for range 1 + n.dups {
				s.deliverNotification(sub.NotificationURL, nj, nil, false)
			}
		}
	}
}
