package stakeholder

import (
	"context"
	"errors"
	"fmt"
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

// MemberRef names one membership row: a group and a stakeholder.
type MemberRef struct{ GroupID, StakeholderID string }

// stamped is a synced membership row with the mirror pass that last confirmed it (see
// MirrorOps): a merge property, so the row's other fields stay as written.
type stamped struct {
	Membership
	Mirror string `json:"mirror,omitempty"`
}

// Stamps reads the rows refs name, a point read each (a few at a time): the present ones map
// to the mirror pass that last confirmed them ("" when none did).
func (g *Groups) Stamps(ctx context.Context, org tablestore.Org, refs []MemberRef) (map[MemberRef]string, error) {
	return readEach(refs, func(r MemberRef) (*string, error) {
		row, _, err := tablestore.Get[stamped](ctx, g.members, org, membershipKey(r.GroupID, r.StakeholderID))
		switch {
		case err == nil:
			return &row.Mirror, nil
		case errors.Is(err, tablestore.ErrNotFound):
			return nil, nil
		}
		return nil, fmt.Errorf("read membership %s|%s: %w", r.GroupID, r.StakeholderID, err)
	})
}

// MirrorOps are a chunk's writes to synced memberships: rows to add, present rows to stamp with
// the current mirror pass, rows to delete.
type MirrorOps struct{ Add, Confirm, Remove []MemberRef }

// Empty reports whether there is nothing to write.
func (m MirrorOps) Empty() bool { return len(m.Add)+len(m.Confirm)+len(m.Remove) == 0 }

// ApplyMirror writes m in ≤100-row transactions: added and confirmed rows carry stamp (a run id;
// "" leaves confirmed rows as they are), so a later sweep tells them from rows the pass did not
// see.
func (g *Groups) ApplyMirror(ctx context.Context, org tablestore.Org, m MirrorOps, stamp string, now time.Time) error {
	ops := make([]tablestore.Op, 0, len(m.Add)+len(m.Confirm)+len(m.Remove))
	for _, r := range m.Add {
		row := stamped{Membership{GroupID: r.GroupID, StakeholderID: r.StakeholderID, Source: Entra, AddedAt: now}, stamp}
		ops = append(ops, tablestore.UpsertOp(membershipKey(r.GroupID, r.StakeholderID), row, tablestore.Replace))
	}
	if stamp != "" {
		for _, r := range m.Confirm {
			ops = append(ops, tablestore.UpsertOp(membershipKey(r.GroupID, r.StakeholderID), map[string]any{"mirror": stamp}, tablestore.Merge))
		}
	}
	for _, r := range m.Remove {
		ops = append(ops, tablestore.DeleteOp(membershipKey(r.GroupID, r.StakeholderID), tablestore.ETagAny))
	}
	if err := g.members.Batch(ctx, org, ops); err != nil {
		return fmt.Errorf("write memberships: %w", err)
	}
	return nil
}

// StampedMember is a membership row as a sweep sees it.
type StampedMember struct {
	StakeholderID string `json:"stakeholderId"`
	Mirror        string `json:"mirror"`
}

// MemberPage returns up to limit (≤1000) of a group's rows after stakeholder id after ("" from
// the start), in id order: one query page, so a sweep holds a page, never the group.
func (g *Groups) MemberPage(ctx context.Context, org tablestore.Org, groupID, after string, limit int) ([]StampedMember, error) {
	q := tablestore.QueryOptions{KeyPrefix: groupID + "|", Select: []string{"stakeholderId", "mirror"}, PageSize: limit}
	if after != "" {
		q.From = membershipKey(groupID, after) + " " // after it: no key character sorts below a space
	}
	var out []StampedMember
	for row, err := range tablestore.Query[StampedMember](ctx, g.members, org, q) {
		if err != nil {
			return nil, fmt.Errorf("read members of %s: %w", groupID, err)
		}
		out = append(out, row.Value)
		if len(out) == limit {
			break
		}
	}
	return out, nil
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
