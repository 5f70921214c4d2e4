package stakeholder

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/leapchange/m365/handler/internal/tablestore"
)

// Group is a stakeholder group. Synced groups mirror an Entra group (ExternalID) and their
// membership is kept exact by sync; manual groups are never touched by sync.
type Group struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Type        string    `json:"type"`   // functional, geographic, hierarchical, custom
	Source      string    `json:"source"` // Manual or Entra
	ExternalID  string    `json:"externalId,omitempty"`
	Active      bool      `json:"active"` // false once the Entra group is deleted or no longer synced
	Members     int       `json:"members"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Tables of groups and memberships.
const (
	GroupsTable      = "groups"
	MembershipsTable = "memberships"
)

// SyncedGroupID is the id of the stakeholder group mirroring an Entra group.
func SyncedGroupID(entraGroupID string) string {
	return "e" + strings.ReplaceAll(strings.ToLower(entraGroupID), "-", "")
}

// membershipKey orders a group's members together: "<group>|<stakeholder>".
func membershipKey(groupID, stakeholderID string) string { return groupID + "|" + stakeholderID }

// Membership is one member row.
type Membership struct {
	GroupID       string    `json:"groupId"`
	StakeholderID string    `json:"stakeholderId"`
	Source        string    `json:"source"` // Manual or Entra
	AddedAt       time.Time `json:"addedAt"`
}

// Groups reads and writes stakeholder groups and memberships.
type Groups struct{ groups, members *tablestore.Table }

// NewGroups returns Groups over s.
func NewGroups(s *tablestore.Store) *Groups {
	return &Groups{groups: s.Table(GroupsTable), members: s.Table(MembershipsTable)}
}

// Get returns one group.
func (g *Groups) Get(ctx context.Context, org tablestore.Org, id string) (Group, tablestore.ETag, error) {
	if id == "" || tablestore.CheckKey(id) != nil {
		return Group{}, "", ErrNotFound
	}
	v, etag, err := tablestore.Get[Group](ctx, g.groups, org, id)
	if errors.Is(err, tablestore.ErrNotFound) {
		return Group{}, "", ErrNotFound
	}
	return v, etag, err
}

// List returns every group of org.
func (g *Groups) List(ctx context.Context, org tablestore.Org) ([]Group, error) {
	var out []Group
	for row, err := range tablestore.Query[Group](ctx, g.groups, org, tablestore.QueryOptions{}) {
		if err != nil {
			return nil, err
		}
		out = append(out, row.Value)
	}
	return out, nil
}

// Put writes a group (upsert, replace).
func (g *Groups) Put(ctx context.Context, org tablestore.Org, grp Group) error {
	_, err := g.groups.Upsert(ctx, org, grp.ID, grp, tablestore.Replace)
	return err
}

// MemberIDs returns the stakeholder ids in a group.
func (g *Groups) MemberIDs(ctx context.Context, org tablestore.Org, groupID string) ([]Membership, error) {
	var out []Membership
	for row, err := range tablestore.Query[Membership](ctx, g.members, org, tablestore.QueryOptions{KeyPrefix: groupID + "|"}) {
		if err != nil {
			return nil, err
		}
		out = append(out, row.Value)
	}
	return out, nil
}

// SetMembers makes the group's members exactly ids (for synced groups), in ≤100-row
// transactions, and returns how many were added and removed.
func (g *Groups) SetMembers(ctx context.Context, org tablestore.Org, groupID string, ids []string, source string, now time.Time) (added, removed int, err error) {
	current, err := g.MemberIDs(ctx, org, groupID)
	if err != nil {
		return 0, 0, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var ops []tablestore.Op
	for _, m := range current {
		if !want[m.StakeholderID] {
			ops = append(ops, tablestore.DeleteOp(membershipKey(groupID, m.StakeholderID), tablestore.ETagAny))
			removed++
		}
		delete(want, m.StakeholderID)
	}
	for _, id := range ids {
		if want[id] {
			ops = append(ops, tablestore.UpsertOp(membershipKey(groupID, id), Membership{GroupID: groupID, StakeholderID: id, Source: source, AddedAt: now}, tablestore.Replace))
			delete(want, id)
			added++
		}
	}
	return added, removed, g.members.Batch(ctx, org, ops)
}

// IsMember reports whether the stakeholder is a member of the group (one point read).
func (g *Groups) IsMember(ctx context.Context, org tablestore.Org, groupID, stakeholderID string) (bool, error) {
	key := membershipKey(groupID, stakeholderID)
	if tablestore.CheckKey(key) != nil {
		return false, nil
	}
	_, _, err := tablestore.Get[Membership](ctx, g.members, org, key)
	if errors.Is(err, tablestore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
